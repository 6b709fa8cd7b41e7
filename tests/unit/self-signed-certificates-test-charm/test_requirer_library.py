"""The test charm answers what charmlibs' own requirer (`TLSCertificatesRequiresV4`) sends.

A requirer charm as pulsar-k8s will be one (UNIT mode, one certificate per unit) runs the
library's requirer side; its databag goes to the provider and the provider's answer comes back,
as Juju would carry them. This pins the wire protocol both ways, renewals included.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ops
import pytest
from charmlibs.interfaces.tls_certificates import (
    CertificateAvailableEvent,
    CertificateRequestAttributes,
    TLSCertificatesRequiresV4,
)
from helpers.charm_modules import load_charm_module
from ops import testing

CHARM_DIR = Path(__file__).resolve().parents[2] / "sandbox" / "charms" / "self-signed-certificates"
FQDN = "pulsar-k8s-0.pulsar-k8s-endpoints.test.svc.cluster.local"
REQUIRER_META = {"name": "pulsar-k8s", "requires": {"certificates": {"interface": "tls-certificates", "limit": 1}}}


charm = load_charm_module(CHARM_DIR, "self_signed_certificates_test_charm")


class TLSRequirerCharm(ops.CharmBase):
    """Asks for a certificate for its FQDN; its status says what the library hands it."""

    REQUEST = CertificateRequestAttributes(common_name="pulsar-k8s-0", sans_dns=[FQDN])

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.certificates = TLSCertificatesRequiresV4(self, "certificates", [self.REQUEST])
        framework.observe(self.certificates.on.certificate_available, self._on_certificate_available)

    def _on_certificate_available(self, _: CertificateAvailableEvent) -> None:
        provided, private_key = self.certificates.get_assigned_certificate(self.REQUEST)
        assert provided is not None
        assert private_key is not None
        matches = provided.certificate.matches_private_key(private_key)
        self.unit.status = ops.ActiveStatus(f"certificate until {provided.certificate.expiry_time:%Y-%m-%d} {matches=}")


@pytest.fixture
def provider() -> testing.Context:
    return testing.Context(charm.SelfSignedCertificatesCharm)


@pytest.fixture
def requirer() -> testing.Context:
    return testing.Context(TLSRequirerCharm, meta=REQUIRER_META, app_name="pulsar-k8s", unit_id=0)


def available(ctx: testing.Context) -> list[CertificateAvailableEvent]:
    return [e for e in ctx.emitted_events if isinstance(e, CertificateAvailableEvent)]


def test_the_library_s_requirer_gets_its_certificate_and_each_renewal(
    provider: testing.Context, requirer: testing.Context
) -> None:
    # Given a requirer unit that joined the relation: the library made a key (a unit secret) and sent a CSR
    asked = testing.Relation("certificates", remote_app_name="self-signed-certificates")
    requirer_state = requirer.run(requirer.on.relation_created(asked), testing.State(leader=True, relations={asked}))
    (key_secret,) = requirer_state.secrets
    assert key_secret.owner == "unit"
    assert key_secret.label is not None
    assert key_secret.label.endswith("-private-key-0-certificates")
    csr_databag = requirer_state.get_relation(asked.id).local_unit_data
    assert "certificate_signing_requests" in csr_databag

    # When the provider's leader sees it, and the requirer sees the answer
    seen = testing.Relation("certificates", remote_app_name="pulsar-k8s", remote_units_data={0: csr_databag})
    provider_state = provider.run(
        provider.on.relation_changed(seen, remote_unit=0), testing.State(leader=True, relations={seen})
    )
    answered = dataclasses.replace(
        requirer_state.get_relation(asked.id), remote_app_data=provider_state.get_relation(seen.id).local_app_data
    )
    requirer_state = requirer.run(
        requirer.on.relation_changed(answered), dataclasses.replace(requirer_state, relations={answered})
    )

    # Then the library hands the requirer its certificate, signed by the CA, for its own key
    (first,) = available(requirer)
    assert first.certificate.common_name == "pulsar-k8s-0"
    assert first.certificate.sans_dns == {FQDN}
    assert first.ca.common_name == "self-signed-certificates-operator"
    assert [str(c) for c in first.chain] == [str(first.certificate), str(first.ca)]
    assert isinstance(requirer_state.unit_status, testing.ActiveStatus)
    assert requirer_state.unit_status.message.endswith("matches=True")
    # And keeps it in a unit secret that expires when the library renews (90% of the validity)
    (certificate_secret,) = [s for s in requirer_state.secrets if s.label and "-certificate-0-certificates-" in s.label]
    assert certificate_secret.tracked_content["certificate"] == str(first.certificate)
    assert certificate_secret.expire is not None
    assert first.certificate.validity_start_time < certificate_secret.expire < first.certificate.expiry_time

    # When the provider renews every certificate, and the requirer sees the new answer
    requirer.emitted_events.clear()
    renewed = provider.run(provider.on.action("renew-certificates"), provider_state)
    answered = dataclasses.replace(
        requirer_state.get_relation(asked.id), remote_app_data=renewed.get_relation(seen.id).local_app_data
    )
    requirer_state = requirer.run(
        requirer.on.relation_changed(answered), dataclasses.replace(requirer_state, relations={answered})
    )

    # Then the library hands it the new certificate for the same CSR, from the same CA
    (second,) = available(requirer)
    assert str(second.certificate_signing_request) == str(first.certificate_signing_request)
    assert str(second.certificate) != str(first.certificate)
    assert str(second.ca) == str(first.ca)
    (certificate_secret,) = [s for s in requirer_state.secrets if s.label and "-certificate-0-certificates-" in s.label]
    assert certificate_secret.latest_content["certificate"] == str(second.certificate)
