"""TLS through the certificates integration: the broker's ports and files, the clients' URLs and CA.

The provider's side is played by a CA made here, signing the request the charm makes; the
library's handshake over the relation is exercised in the sandbox, against a real provider.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from charmlibs.interfaces.tls_certificates import (
    Certificate,
    CertificateRequestAttributes,
    CertificateSigningRequest,
    PrivateKey,
    ProviderCertificate,
    TLSCertificatesRequiresV4,
)
from helpers.pulsar_k8s_builders import (
    FQDN0,
    FQDN1,
    Probes,
    Unit,
    decoded,
    encoded,
    initialized_app_data,
    ready_bookies,
    record_admin_calls,
    signing_key_secret,
)
from ops import pebble, testing

from pulsar_k8s.literals import Status
from pulsar_k8s.workload import PulsarWorkload


@dataclasses.dataclass
class Issued:
    """What the provider signed for this unit; `None` before it has."""

    certificate: ProviderCertificate | None = None
    key: PrivateKey | None = None

    @property
    def ca(self) -> str:
        assert self.certificate is not None
        return str(self.certificate.ca)


def _sign(request: CertificateRequestAttributes) -> tuple[ProviderCertificate, PrivateKey]:
    ca_key = PrivateKey.generate()
    ca = Certificate.generate_self_signed_ca(CertificateRequestAttributes(common_name="test-ca"), ca_key, timedelta(1))
    key = PrivateKey.generate()
    csr = CertificateSigningRequest.generate(request, key)
    certificate = csr.sign(ca, ca_key, timedelta(hours=1))
    return ProviderCertificate(1, certificate, csr, ca, [certificate, ca]), key


@pytest.fixture
def issued(monkeypatch: pytest.MonkeyPatch) -> Issued:
    """The library's answer to the charm's request: a certificate once `sign()` ran, else nothing."""
    answer = Issued()

    def assigned(self: TLSCertificatesRequiresV4, request: CertificateRequestAttributes) -> tuple[object, object]:
        if answer.certificate is None:
            answer.certificate, answer.key = _sign(request)
        return answer.certificate, answer.key

    monkeypatch.setattr(TLSCertificatesRequiresV4, "get_assigned_certificate", assigned)
    return answer


def _certificates() -> testing.Relation:
    return testing.Relation("certificates", remote_app_name="self-signed-certificates")


def _running(unit: Unit, probes: Probes, *relations: testing.Relation, **kwargs: object) -> testing.State:
    """An initialized single-unit cluster with three ready bookies, its broker ready."""
    probes.zookeeper_mode = "standalone"
    probes.broker_ready = True
    secret = signing_key_secret()
    app_data = initialized_app_data(secret)
    return unit.state(
        app_data=app_data,
        secrets=(secret,),
        relations=(ready_bookies(3, 3), *relations),
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_certificate_adds_the_tls_ports_to_the_broker(
    ctx: testing.Context, unit: Unit, probes: Probes, issued: Issued
) -> None:
    # Given a running broker, integrated with a certificates provider that signed its request
    state = _running(unit, probes, _certificates())

    # When the certificate is there
    out = ctx.run(ctx.on.update_status(), state)

    # Then the broker serves TLS on 6651 and 8443 besides the plaintext ports
    conf = (unit.conf / "broker.conf").read_text().splitlines()
    for line in (
        "brokerServicePort=6650",
        "webServicePort=8080",
        "brokerServicePortTls=6651",
        "webServicePortTls=8443",
        "tlsCertificateFilePath=/pulsar/conf/tls/broker-chain.pem",
        "tlsKeyFilePath=/pulsar/conf/tls/broker-key.pem",
        "tlsTrustCertsFilePath=/pulsar/conf/tls/ca.pem",
    ):
        assert line in conf
    assert "brokerClientTlsEnabled=true" not in conf
    # And the files hold the chain (leaf first), the key as PKCS#8 (only the workload reads it), and the CA
    tls = unit.conf / "tls"
    assert (tls / "broker-chain.pem").read_text().startswith(str(issued.certificate.certificate))  # type: ignore[union-attr]
    assert (tls / "broker-key.pem").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert (tls / "broker-key.pem").stat().st_mode & 0o777 == 0o600
    assert (tls / "ca.pem").read_text() == issued.ca + "\n"
    assert out.opened_ports == {testing.TCPPort(p) for p in (6650, 8080, 6651, 8443)}
    # And the unit says its broker serves TLS, for the leader to hand clients TLS URLs
    assert decoded(out.get_relations("cluster")[0].local_unit_data)["tls"] is True


def test_the_request_names_the_unit_and_the_services(
    ctx: testing.Context, unit: Unit, probes: Probes, issued: Issued
) -> None:
    # When the unit asks for its certificate
    ctx.run(ctx.on.update_status(), _running(unit, probes, _certificates()))

    # Then its SANs are its FQDN and the application's services; its common name is short
    assert issued.certificate is not None
    sans = set(issued.certificate.certificate.sans_dns or ())
    assert sans == {FQDN0, "pulsar-k8s-endpoints.test.svc.cluster.local", "pulsar-k8s.test.svc.cluster.local"}
    assert issued.certificate.certificate.common_name == "pulsar-k8s-0"


def test_tls_required_closes_the_plaintext_ports(
    ctx: testing.Context, unit: Unit, probes: Probes, issued: Issued
) -> None:
    # Given a running broker with its certificate
    state = _running(unit, probes, _certificates(), config={"tls-required": True})

    # When the user requires TLS
    out = ctx.run(ctx.on.config_changed(), state)

    # Then the plaintext ports are closed, the broker's own client uses TLS with the CA
    conf = (unit.conf / "broker.conf").read_text().splitlines()
    for line in ("brokerServicePort=", "webServicePort=", "brokerClientTlsEnabled=true"):
        assert line in conf
    assert "brokerClientTrustCertsFilePath=/pulsar/conf/tls/ca.pem" in conf
    assert out.opened_ports == {testing.TCPPort(6651), testing.TCPPort(8443)}
    # And Pebble's readiness check fetches the status page over HTTPS, trusting the CA
    check = out.get_container("pulsar").plan.checks["broker-ready"]
    assert check.exec is not None
    assert "https://localhost:8443/status.html" in check.exec["command"]
    assert 'cafile="/pulsar/conf/tls/ca.pem"' in check.exec["command"]
    assert check.http is None


def test_tls_required_without_certificates_blocks_and_leaves_the_broker_alone(
    ctx: testing.Context, unit: Unit, probes: Probes
) -> None:
    # Given a running broker, and no certificates provider
    broker = {"override": "replace", "command": "/pulsar/bin/pulsar broker", "startup": "enabled"}
    layers = {"pulsar": pebble.Layer({"services": {"broker": broker}})}
    state = _running(unit, probes, config={"tls-required": True}, layers=layers)

    # When the user requires TLS
    out = ctx.run(ctx.on.config_changed(), state)

    # Then the unit says what to integrate with, and the broker keeps running as it was
    assert out.unit_status == Status.TLS_NOT_RELATED()
    assert out.get_container("pulsar").plan.services["broker"].to_dict() == broker
    assert not (unit.conf / "broker.conf").exists()


def test_tls_required_waits_for_the_unit_certificate(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    # Given the certificates integration, and no certificate signed yet
    state = _running(unit, probes, _certificates(), config={"tls-required": True}, leader=False)

    # When the unit reconciles
    out = ctx.run(ctx.on.config_changed(), state)

    # Then it waits for its certificate, starting no broker without it
    assert out.unit_status == Status.WAITING_FOR_CERTIFICATE()
    assert "broker" not in out.get_container("pulsar").plan.services


def test_clients_get_tls_urls_and_the_ca_once_every_broker_serves_tls(
    ctx: testing.Context, unit: Unit, probes: Probes, issued: Issued, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two members, a client, and this unit's broker serving TLS
    record_admin_calls(monkeypatch)
    probes.brokers_ready[FQDN1] = True
    probes.zookeeper_modes[FQDN1] = "follower"
    client = testing.Relation(
        "pulsar", remote_app_name="client", remote_app_data=encoded({"namespace": "client/default"})
    )
    secret = signing_key_secret()
    app_data = {**initialized_app_data(secret), "zk-members": [{"id": 1, "host": FQDN0}, {"id": 2, "host": FQDN1}]}

    state = unit.state(
        app_data=app_data,
        secrets=(secret,),
        peers={1: {"host": FQDN1, "tls": False}},
        relations=(ready_bookies(3, 3), client, _certificates()),
        planned_units=2,
    )
    probes.zookeeper_mode = "leader"
    probes.broker_ready = True

    # When the other broker does not serve TLS yet
    out = ctx.run(ctx.on.update_status(), state)

    # Then the client keeps the plaintext URLs
    granted = decoded(out.get_relation(client.id).local_app_data)
    assert granted["service-url"] == f"pulsar://{FQDN0}:6650,{FQDN1}:6650"
    assert "tls-ca" not in granted

    # When every broker serves TLS
    peer = out.get_relations("cluster")[0]
    peer = dataclasses.replace(peer, peers_data={1: encoded({"host": FQDN1, "tls": True})})
    out = ctx.run(
        ctx.on.update_status(),
        dataclasses.replace(out, relations={*(r for r in out.relations if r.id != peer.id), peer}),
    )

    # Then the client gets the TLS URLs and the CA to verify them with
    granted = decoded(out.get_relation(client.id).local_app_data)
    assert granted["service-url"] == f"pulsar+ssl://{FQDN0}:6651,{FQDN1}:6651"
    assert granted["web-service-url"] == f"https://{FQDN0}:8443,{FQDN1}:8443"
    assert granted["tls-ca"] == issued.ca + "\n"


def test_admin_credentials_carry_the_tls_urls_and_the_ca(
    ctx: testing.Context, unit: Unit, probes: Probes, issued: Issued
) -> None:
    # Given a single unit whose broker serves TLS
    state = _running(unit, probes, _certificates())
    out = ctx.run(ctx.on.update_status(), state)

    # When the user asks for the admin credentials
    ctx.run(ctx.on.action("get-admin-credentials"), out)

    # Then the URLs are TLS ones, with the CA
    results = ctx.action_results or {}
    assert results["service-url"] == f"pulsar+ssl://{FQDN0}:6651"
    assert results["web-service-url"] == f"https://{FQDN0}:8443"
    assert results["tls-ca"] == issued.ca + "\n"


def test_a_renewed_certificate_restarts_the_broker_under_the_lock(
    ctx: testing.Context, unit: Unit, probes: Probes, issued: Issued
) -> None:
    # Given a broker serving the first certificate, with another unit holding the restart lock
    state = _running(unit, probes, _certificates())
    out = ctx.run(ctx.on.update_status(), state)
    peer = out.get_relations("cluster")[0]
    held = dataclasses.replace(peer, local_app_data={**peer.local_app_data, "restart-holder": '"pulsar-k8s/1"'})
    out = dataclasses.replace(out, relations={*(r for r in out.relations if r.id != peer.id), held}, leader=False)
    first = (unit.conf / "tls" / "broker-chain.pem").read_text()

    # When the provider renews it
    issued.certificate = None
    renewed = ctx.run(ctx.on.update_status(), out)

    # Then the unit asks for the lock to restart its broker, and keeps the old files meanwhile
    assert renewed.unit_status == Status.RESTART_HELD(services="broker", holder="pulsar-k8s/1")
    assert (unit.conf / "tls" / "broker-chain.pem").read_text() == first


def test_probes_go_to_https_with_the_ca_while_plaintext_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the workload told to verify brokers with a CA
    asked: list[tuple[str, object]] = []
    monkeypatch.setattr(
        "pulsar_k8s.workload.http_ready", lambda url, context=None: asked.append((url, context)) or True
    )
    workload = PulsarWorkload.__new__(PulsarWorkload)
    workload.web_tls = None
    workload.broker_ready(FQDN0)
    context = object()
    workload.web_tls = context  # type: ignore[assignment]

    # When it probes a broker
    workload.broker_ready(FQDN1)

    # Then the status page is asked over HTTP before, and over HTTPS with the CA after
    assert asked == [(f"http://{FQDN0}:8080/status.html", None), (f"https://{FQDN1}:8443/status.html", context)]


def test_the_private_key_is_converted_to_pkcs8() -> None:
    from pulsar_k8s.managers.tls import pkcs8

    key = PrivateKey.generate()
    assert str(key).startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert pkcs8(str(key)).startswith("-----BEGIN PRIVATE KEY-----")
