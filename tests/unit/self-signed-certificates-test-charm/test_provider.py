"""The self-signed-certificates test charm: a CA that signs every CSR sent over tls-certificates v4.

Requirers ask in their unit (or, in APP mode, application) databag under
`certificate_signing_requests`; the leader answers in its application databag under
`certificates` (certificate, CA, chain per CSR), with its CA in an application secret `ca`.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from charmlibs.interfaces.tls_certificates import CertificateRequestAttributes, CertificateSigningRequest, PrivateKey
from cryptography import x509
from helpers.charm_modules import load_charm_module
from ops import testing

CHARM_DIR = Path(__file__).resolve().parents[2] / "sandbox" / "charms" / "self-signed-certificates"
FQDN = "pulsar-k8s-{n}.pulsar-k8s-endpoints.test.svc.cluster.local"
SECOND = timedelta(seconds=2)  # x509 times are whole seconds


charm = load_charm_module(CHARM_DIR, "self_signed_certificates_test_charm")


@pytest.fixture
def ctx() -> testing.Context:
    return testing.Context(charm.SelfSignedCertificatesCharm)


@pytest.fixture(scope="module")
def csrs() -> list[CertificateSigningRequest]:
    """What pulsar-k8s/0 and /1 ask for (their FQDN and pod address), and the application (APP mode)."""
    requests = [
        CertificateRequestAttributes(f"pulsar-k8s-{n}", sans_dns=[FQDN.format(n=n)], sans_ip=[f"10.1.0.{n}"])
        for n in (0, 1)
    ]
    requests.append(CertificateRequestAttributes(common_name="pulsar-k8s", sans_dns=["pulsar-k8s.test.svc"]))
    return [request.generate_csr(PrivateKey.generate()) for request in requests]  # RSA keys: once per module


def asking(*csrs: CertificateSigningRequest) -> dict[str, str]:
    """A requirer's databag on the wire (v4): its CSRs, JSON-encoded."""
    requests = [{"certificate_signing_request": csr.raw, "ca": False} for csr in csrs]
    return {"certificate_signing_requests": json.dumps(requests)}


def requirer(csrs: list[CertificateSigningRequest]) -> testing.Relation:
    """pulsar-k8s/0 and /1 each asking for their certificate, the application for its own."""
    return testing.Relation(
        "certificates",
        remote_app_name="pulsar-k8s",
        remote_units_data={0: asking(csrs[0]), 1: asking(csrs[1])},
        remote_app_data=asking(csrs[2]),
    )


def answers(out: testing.State, relation: testing.RelationBase) -> dict[str, dict[str, Any]]:
    """The provider's answers (its application databag), by CSR."""
    data = out.get_relation(relation.id).local_app_data
    return {a["certificate_signing_request"]: a for a in json.loads(data.get("certificates", "[]"))}


def issued(out: testing.State, relation: testing.RelationBase) -> dict[str, x509.Certificate]:
    return {csr: pem(answer["certificate"]) for csr, answer in answers(out, relation).items()}


def pem(text: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(text.encode())


def stored_ca(out: testing.State) -> x509.Certificate:
    return pem(out.get_secret(label="ca").latest_content["certificate"])


def common_name(certificate: x509.Certificate) -> str:
    return str(certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def span(certificate: x509.Certificate) -> timedelta:
    return certificate.not_valid_after_utc - certificate.not_valid_before_utc


def configured(state: testing.State, **config: str) -> testing.State:
    return dataclasses.replace(state, config={**state.config, **config})


@pytest.fixture
def serving(ctx: testing.Context, csrs: list[CertificateSigningRequest]) -> tuple[testing.State, testing.Relation]:
    """A leader that has answered every request of the relation."""
    relation = requirer(csrs)
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=1), testing.State(leader=True, relations={relation}))
    assert len(answers(out, relation)) == 3
    return out, relation


# ---------------------------------------------------------------- the CA


def test_the_leader_makes_a_ca_once_and_keeps_it_in_an_application_secret(ctx: testing.Context) -> None:
    # Given the leader of a new deployment
    state = testing.State(leader=True)

    # When config-changed runs, then update-status
    first = ctx.run(ctx.on.config_changed(), state)
    out = ctx.run(ctx.on.update_status(), first)

    # Then an application secret `ca` holds a self-signed CA named by ca-common-name, valid root-ca-validity
    secret = out.get_secret(label="ca")
    assert secret.owner == "app"
    assert set(secret.latest_content) == {"private-key", "certificate"}
    ca = stored_ca(out)
    assert common_name(ca) == "self-signed-certificates-operator"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca.verify_directly_issued_by(ca)
    assert abs(span(ca) - timedelta(days=365)) <= SECOND
    # And the next event keeps it
    assert secret.latest_content == first.get_secret(label="ca").latest_content
    assert out.unit_status == testing.ActiveStatus("issuing certificates")


@pytest.mark.parametrize("leader", [True, False])
def test_get_ca_certificate_returns_the_ca_on_any_unit(ctx: testing.Context, leader: bool) -> None:
    # Given a leader that made its CA
    state = ctx.run(ctx.on.config_changed(), testing.State(leader=True))

    # When the action runs on the leader, or on another unit (units of the application may read its secret)
    ctx.run(ctx.on.action("get-ca-certificate"), dataclasses.replace(state, leader=leader))

    # Then it returns the CA's certificate
    assert ctx.action_results is not None
    assert pem(ctx.action_results["ca-certificate"]) == stored_ca(state)


def test_get_ca_certificate_fails_before_there_is_a_ca(ctx: testing.Context) -> None:
    with pytest.raises(testing.ActionFailed, match="no CA yet"):
        ctx.run(ctx.on.action("get-ca-certificate"), testing.State(leader=False))


# ---------------------------------------------------------------- signing


def test_every_csr_gets_a_certificate_signed_by_the_ca_for_its_key_and_sans(
    ctx: testing.Context, csrs: list[CertificateSigningRequest]
) -> None:
    # Given two requirer units, each asking for a certificate for its FQDN and address, and their application
    relation = requirer(csrs)

    # When the leader sees the relation change
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=1), testing.State(leader=True, relations={relation}))

    # Then each CSR is answered with a certificate the CA signed, for the CSR's key, subject and SANs
    ca = stored_ca(out)
    answered = answers(out, relation)
    assert set(answered) == {csr.raw for csr in csrs}
    for csr in csrs:
        answer = answered[csr.raw]
        certificate = pem(answer["certificate"])
        certificate.verify_directly_issued_by(ca)
        assert pem(answer["ca"]) == ca
        assert [pem(c) for c in answer["chain"]] == [certificate, ca]  # leaf first
        request = x509.load_pem_x509_csr(csr.raw.encode())
        assert certificate.public_key() == request.public_key()
        assert certificate.subject == request.subject
        requested_sans = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == set(
            requested_sans
        )
        assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert abs(span(certificate) - timedelta(days=90)) <= SECOND
    sans = issued(out, relation)[csrs[1].raw].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [FQDN.format(n=1)]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.1.0.1"]
    assert out.unit_status == testing.ActiveStatus("issuing certificates")


def test_answered_requests_are_not_signed_again(
    ctx: testing.Context, serving: tuple[testing.State, testing.Relation]
) -> None:
    # Given a leader that answered every request
    state, relation = serving

    # When later events come
    again = ctx.run(ctx.on.relation_changed(state.get_relation(relation.id), remote_unit=0), state)
    out = ctx.run(ctx.on.update_status(), again)

    # Then the answers are the same certificates
    assert answers(out, relation) == answers(state, relation)


def test_a_requirer_s_new_csr_is_signed_and_the_one_it_dropped_is_unpublished(
    ctx: testing.Context, serving: tuple[testing.State, testing.Relation], csrs: list[CertificateSigningRequest]
) -> None:
    # Given a leader that answered every request
    state, relation = serving
    before = issued(state, relation)

    # When unit 1 renews the way the requirer library does: its CSR replaced by a new one (same key)
    renewal = CertificateRequestAttributes(
        common_name="pulsar-k8s-1", sans_dns=[FQDN.format(n=1)], sans_ip=["10.1.0.1"]
    ).generate_csr(PrivateKey.generate())
    units = {**relation.remote_units_data, 1: asking(renewal)}
    changed = dataclasses.replace(state.get_relation(relation.id), remote_units_data=units)
    out = ctx.run(ctx.on.relation_changed(changed, remote_unit=1), dataclasses.replace(state, relations={changed}))

    # Then the new CSR is answered, the old one no longer, and the others keep their certificates
    after = issued(out, changed)
    assert set(after) == {csrs[0].raw, csrs[2].raw, renewal.raw}
    assert after[csrs[0].raw] == before[csrs[0].raw]
    after[renewal.raw].verify_directly_issued_by(stored_ca(out))


def test_a_non_leader_signs_nothing(ctx: testing.Context, csrs: list[CertificateSigningRequest]) -> None:
    # Given a unit that does not lead, and a requirer asking
    relation = requirer(csrs)

    # When it sees the relation change
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), testing.State(leader=False, relations={relation}))

    # Then it makes no CA, answers nothing, and stands by
    assert not out.secrets
    assert out.get_relation(relation.id).local_app_data == {}
    assert out.unit_status == testing.ActiveStatus("standby")


# ---------------------------------------------------------------- renewals


def test_a_new_ca_common_name_makes_a_new_ca_and_reissues_every_certificate(
    ctx: testing.Context, serving: tuple[testing.State, testing.Relation]
) -> None:
    # Given a leader that answered every request
    state, relation = serving
    old_ca, before = stored_ca(state), issued(state, relation)

    # When ca-common-name changes
    out = ctx.run(ctx.on.config_changed(), configured(state, **{"ca-common-name": "pulsar-test-ca"}))

    # Then a new CA by that name replaces the old one in the same secret
    ca = stored_ca(out)
    assert common_name(ca) == "pulsar-test-ca"
    assert ca.public_key() != old_ca.public_key()
    assert out.get_secret(label="ca").id == state.get_secret(label="ca").id
    # And every CSR has a new certificate, signed by the new CA and sent with it
    for csr, certificate in issued(out, relation).items():
        assert certificate != before[csr]
        certificate.verify_directly_issued_by(ca)
        assert pem(answers(out, relation)[csr]["ca"]) == ca


def test_a_new_certificate_validity_reissues_every_certificate_with_the_same_ca(
    ctx: testing.Context, serving: tuple[testing.State, testing.Relation]
) -> None:
    # Given a leader that answered every request (90 days)
    state, relation = serving

    # When certificate-validity becomes ten minutes
    out = ctx.run(ctx.on.config_changed(), configured(state, **{"certificate-validity": "10m"}))

    # Then every certificate is issued again, for ten minutes, by the same CA
    assert stored_ca(out) == stored_ca(state)
    for certificate in issued(out, relation).values():
        assert abs(span(certificate) - timedelta(minutes=10)) <= SECOND
        certificate.verify_directly_issued_by(stored_ca(state))


def test_a_ca_with_less_left_than_a_certificate_s_validity_is_replaced(
    ctx: testing.Context, serving: tuple[testing.State, testing.Relation], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a leader that answered every request, 300 days later (the CA has 65 days left, certificates take 90)
    state, relation = serving
    later = charm.now() + timedelta(days=300)
    monkeypatch.setattr(charm, "now", lambda: later)

    # When update-status runs
    out = ctx.run(ctx.on.update_status(), state)

    # Then a new CA signs every certificate again
    ca = stored_ca(out)
    assert ca != stored_ca(state)
    for certificate in issued(out, relation).values():
        certificate.verify_directly_issued_by(ca)


def test_renew_certificates_reissues_every_certificate_with_the_same_ca(
    ctx: testing.Context, serving: tuple[testing.State, testing.Relation]
) -> None:
    # Given a leader that answered every request
    state, relation = serving
    before = issued(state, relation)

    # When renew-certificates runs without a holder
    out = ctx.run(ctx.on.action("renew-certificates"), state)

    # Then every CSR has a new certificate (new serial), signed by the same CA
    assert ctx.action_results == {"renewed": "3", "holders": "pulsar-k8s,pulsar-k8s/0,pulsar-k8s/1"}
    after = issued(out, relation)
    assert set(after) == set(before)
    for csr, certificate in after.items():
        assert certificate.serial_number != before[csr].serial_number
        certificate.verify_directly_issued_by(stored_ca(state))
    assert stored_ca(out) == stored_ca(state)


@pytest.mark.parametrize(("holder", "index"), [("pulsar-k8s/1", 1), ("pulsar-k8s", 2)])
def test_renew_certificates_for_one_holder_reissues_only_its_own(
    ctx: testing.Context,
    serving: tuple[testing.State, testing.Relation],
    csrs: list[CertificateSigningRequest],
    holder: str,
    index: int,
) -> None:
    # Given a leader that answered every request
    state, relation = serving
    before = issued(state, relation)

    # When renew-certificates runs for one unit, or for the application (its APP-mode certificate)
    out = ctx.run(ctx.on.action("renew-certificates", params={"holder": holder}), state)

    # Then only that holder's certificate is new
    assert ctx.action_results == {"renewed": "1", "holders": holder}
    after = issued(out, relation)
    changed = {csr for csr in after if after[csr] != before[csr]}
    assert changed == {csrs[index].raw}


def test_renew_certificates_refuses_a_holder_without_requests(
    ctx: testing.Context, serving: tuple[testing.State, testing.Relation]
) -> None:
    state, _ = serving
    with pytest.raises(testing.ActionFailed, match="pulsar-k8s/7 asks for no certificate"):
        ctx.run(ctx.on.action("renew-certificates", params={"holder": "pulsar-k8s/7"}), state)


def test_renew_certificates_runs_on_the_leader_only(
    ctx: testing.Context, serving: tuple[testing.State, testing.Relation]
) -> None:
    state, _ = serving
    with pytest.raises(testing.ActionFailed, match="only the leader issues certificates"):
        ctx.run(ctx.on.action("renew-certificates"), dataclasses.replace(state, leader=False))


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"certificate-validity": "ninety"},
            "invalid certificate-validity 'ninety': use a whole number with d, h, m or s (90d, 2h, 10m)",
        ),
        (
            {"certificate-validity": "0m"},
            "invalid certificate-validity '0m': use a whole number with d, h, m or s (90d, 2h, 10m)",
        ),
        (
            {"root-ca-validity": "1.5d"},
            "invalid root-ca-validity '1.5d': use a whole number with d, h, m or s (90d, 2h, 10m)",
        ),
        (
            {"root-ca-validity": "90d"},
            "root-ca-validity (90d) must be at least twice certificate-validity (90d)",
        ),
        (
            {"root-ca-validity": "99999999999999999999d"},
            "invalid root-ca-validity '99999999999999999999d': use a whole number with d, h, m or s (90d, 2h, 10m)",
        ),
        ({"ca-common-name": " "}, "invalid ca-common-name '': use 1 to 64 characters"),
    ],
)
def test_invalid_config_blocks_and_issues_nothing(
    ctx: testing.Context, csrs: list[CertificateSigningRequest], config: dict[str, str], message: str
) -> None:
    # Given a leader with a requirer asking, and an option it cannot use
    relation = requirer(csrs)
    state = testing.State(leader=True, relations={relation}, config=config)

    # When config-changed runs
    out = ctx.run(ctx.on.config_changed(), state)

    # Then it is blocked, naming the option, and neither makes a CA nor signs
    assert out.unit_status == testing.BlockedStatus(message)
    assert not out.secrets
    assert answers(out, relation) == {}


def test_invalid_config_keeps_what_was_issued(
    ctx: testing.Context, serving: tuple[testing.State, testing.Relation]
) -> None:
    # Given a leader that answered every request
    state, relation = serving

    # When certificate-validity becomes unreadable
    out = ctx.run(ctx.on.config_changed(), configured(state, **{"certificate-validity": "soon"}))

    # Then it is blocked, and the certificates stay as they were
    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert answers(out, relation) == answers(state, relation)


@pytest.mark.parametrize(
    ("raw", "duration"),
    [
        ("90d", timedelta(days=90)),
        ("2h", timedelta(hours=2)),
        ("10m", timedelta(minutes=10)),
        ("30s", timedelta(seconds=30)),
        ("7", timedelta(days=7)),  # days, as the real charm's integer option
        (" 5m ", timedelta(minutes=5)),
    ],
)
def test_durations(raw: str, duration: timedelta) -> None:
    assert charm.parse_duration("certificate-validity", raw) == duration
