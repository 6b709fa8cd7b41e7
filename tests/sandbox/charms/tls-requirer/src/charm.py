#!/usr/bin/env python3
"""TLS requirer: a sandbox test charm that asks for a certificate with charmlibs' requirer library."""

from __future__ import annotations

import hashlib
import logging

import ops
from charmlibs.interfaces.tls_certificates import (
    CertificateAvailableEvent,
    CertificateRequestAttributes,
    TLSCertificatesRequiresV4,
)

logger = logging.getLogger(__name__)

RELATION = "certificates"


class TLSRequirerCharm(ops.CharmBase):
    """Asks for a certificate for this unit; logs each one the library hands it.

    The library keeps the certificate in a unit secret that expires at 90% of the
    certificate's validity; on secret-expired it asks for a new one.
    """

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.request = CertificateRequestAttributes(common_name=self.unit.name.replace("/", "-"))
        self.certificates = TLSCertificatesRequiresV4(self, RELATION, [self.request])
        framework.observe(self.certificates.on.certificate_available, self._on_certificate_available)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)

    def _on_certificate_available(self, event: CertificateAvailableEvent) -> None:
        fingerprint = hashlib.sha256(str(event.certificate).encode()).hexdigest()[:16]
        logger.info("got certificate %s until %s", fingerprint, event.certificate.expiry_time.isoformat())

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        provided, _ = self.certificates.get_assigned_certificate(self.request)
        if provided is None:
            event.add_status(ops.WaitingStatus("waiting for a certificate"))
            return
        event.add_status(ops.ActiveStatus(f"certificate until {provided.certificate.expiry_time:%H:%M:%S}"))


if __name__ == "__main__":  # pragma: nocover
    ops.main(TLSRequirerCharm)
