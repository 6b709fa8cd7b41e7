#!/usr/bin/env python3
"""self-signed-certificates (test charm): a CA that signs every CSR sent over tls-certificates.

It speaks the v4 wire protocol through charmlibs' `TLSCertificatesProvidesV4`, as Canonical's
self-signed-certificates does:

- Requirers put their CSRs in their unit databag (or, in the library's APP mode, their
  application databag) under `certificate_signing_requests`.
- The leader answers in its application databag, under `certificates`: for each CSR the
  certificate, the CA and the chain (leaf first). A CSR it cannot sign gets an entry in
  `request_errors` instead.

The leader makes the CA (key and self-signed certificate, with the library's helpers) and keeps
it in an application secret labelled `ca`. Every event of the leader reconciles: a CA that no
longer matches the config (common name, validity) or has less left than one certificate's
validity is replaced, and each CSR whose certificate is missing, from another CA or of another
validity gets a new one. The `renew-certificates` action re-issues on demand. Other units stand
by. Statuses come from collect-status.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import ops
from charmlibs.interfaces.tls_certificates import (
    Certificate,
    CertificateError,
    CertificateRequestAttributes,
    CertificateRequestErrorCode,
    CertificateSigningRequest,
    PrivateKey,
    ProviderCapabilities,
    ProviderCertificate,
    ProviderCertificateError,
    RequirerCertificateRequest,
    TLSCertificatesError,
    TLSCertificatesProvidesV4,
)

logger = logging.getLogger(__name__)

RELATION = "certificates"
CA_SECRET_LABEL = "ca"
ACTIVE = "issuing certificates"
STANDBY = "standby"
DURATION = re.compile(r"^(\d+)([dhms]?)$")
SECONDS_PER_UNIT = {"d": 86400, "h": 3600, "m": 60, "s": 1, "": 86400}  # a bare number is days
LONGEST = timedelta(days=36500)  # far inside what x509 dates can hold
# x509 times are whole seconds, and the library reads the clock once for not-before and again
# for not-after: a certificate's span is its validity give or take a second.
TOLERANCE = timedelta(seconds=2)
CAPABILITIES = ProviderCapabilities(
    supports_ip_sans=True,
    supports_wildcard_dns=True,
    supports_subdomain=True,
    supports_ca_certificates=True,
    provider_type="self-signed",
)

Key = tuple[int, str]  # (relation id, CSR PEM): one certificate request


def now() -> datetime:
    return datetime.now(UTC)


class InvalidConfigError(Exception):
    """The config cannot be used; the message names the option and what it takes."""


def parse_duration(option: str, raw: str) -> timedelta:
    match = DURATION.match(raw.strip())
    seconds = int(match[1]) * SECONDS_PER_UNIT[match[2]] if match else 0
    if not 0 < seconds <= LONGEST.total_seconds():  # checked before timedelta, which overflows
        raise InvalidConfigError(f"invalid {option} {raw!r}: use a whole number with d, h, m or s (90d, 2h, 10m)")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class Settings:
    """The config, read and checked."""

    ca_common_name: str
    certificate_validity: timedelta
    root_ca_validity: timedelta

    @classmethod
    def parse(cls, config: Mapping[str, bool | int | float | str | ops.Secret]) -> Settings:
        common_name = str(config.get("ca-common-name", "")).strip()
        if not 1 <= len(common_name) <= 64:  # what x509 allows a common name
            raise InvalidConfigError(f"invalid ca-common-name {common_name!r}: use 1 to 64 characters")
        certificate = parse_duration("certificate-validity", str(config.get("certificate-validity", "")))
        root = parse_duration("root-ca-validity", str(config.get("root-ca-validity", "")))
        if root < 2 * certificate:
            raise InvalidConfigError(
                f"root-ca-validity ({config['root-ca-validity']}) must be at least twice "
                f"certificate-validity ({config['certificate-validity']})"
            )
        return cls(common_name, certificate, root)


def span(certificate: Certificate) -> timedelta:
    return certificate.expiry_time - certificate.validity_start_time


@dataclass(frozen=True)
class CA:
    """The CA's key and self-signed certificate, as the `ca` secret holds them (PEM)."""

    private_key: PrivateKey
    certificate: Certificate

    @classmethod
    def generate(cls, settings: Settings) -> CA:
        private_key = PrivateKey.generate()
        attributes = CertificateRequestAttributes(common_name=settings.ca_common_name, is_ca=True)
        certificate = Certificate.generate_self_signed_ca(attributes, private_key, settings.root_ca_validity)
        return cls(private_key, certificate)

    @classmethod
    def load(cls, content: Mapping[str, str]) -> CA | None:
        try:
            return cls(PrivateKey.from_string(content["private-key"]), Certificate.from_string(content["certificate"]))
        except (KeyError, ValueError, TLSCertificatesError):
            return None

    def dump(self) -> dict[str, str]:
        return {"private-key": self.private_key.raw, "certificate": self.certificate.raw}

    def fits(self, settings: Settings, at: datetime) -> bool:
        """Made for this config, and long enough left to sign one more certificate."""
        return (
            self.certificate.common_name == settings.ca_common_name
            and abs(span(self.certificate) - settings.root_ca_validity) <= TOLERANCE
            and self.certificate.expiry_time - at >= settings.certificate_validity
        )

    def issued(self, certificate: ProviderCertificate, settings: Settings) -> bool:
        """Whether a published certificate is this CA's answer to its CSR, with the configured validity."""
        return (
            certificate.ca == self.certificate
            and not certificate.revoked
            and certificate.certificate_signing_request.matches_certificate(certificate.certificate)
            and abs(span(certificate.certificate) - settings.certificate_validity) <= TOLERANCE
        )


@dataclass(frozen=True)
class RequirerDatabag:
    """The CSRs one certificate holder (a requirer unit, or an application in APP mode) asks for.

    Read only to tell whose a request is: the library lists requests without their holder.
    """

    csrs: frozenset[str]

    @classmethod
    def load(cls, data: Mapping[str, str]) -> RequirerDatabag:
        try:
            entries = json.loads(data.get("certificate_signing_requests", "[]"))
        except ValueError:
            return cls(frozenset())
        csrs = set()
        for entry in entries if isinstance(entries, list) else []:
            try:
                csrs.add(CertificateSigningRequest.from_string(str(entry["certificate_signing_request"])).raw)
            except (TypeError, KeyError, TLSCertificatesError):
                continue  # the library skips what it cannot read too
        return cls(frozenset(csrs))


def key(request: RequirerCertificateRequest) -> Key:
    return request.relation_id, request.certificate_signing_request.raw


class SelfSignedCertificatesCharm(ops.CharmBase):
    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        # First, so that the library drops certificates whose CSR is gone before the reconcile.
        self.tls = TLSCertificatesProvidesV4(self, RELATION, provider_capabilities=CAPABILITIES)
        for event in (
            self.on.config_changed,
            self.on.upgrade_charm,
            self.on.leader_elected,
            self.on.update_status,
            self.on[RELATION].relation_joined,
            self.on[RELATION].relation_changed,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(self.on.get_ca_certificate_action, self._on_get_ca_certificate)
        framework.observe(self.on.renew_certificates_action, self._on_renew_certificates)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)

    # ------------------------------------------------------------------ events

    def _reconcile(self, _: ops.EventBase) -> None:
        if not self.unit.is_leader():
            return
        try:
            settings = Settings.parse(self.config)
        except InvalidConfigError:
            return  # blocked (collect-status); what was issued stays as it is
        self._answer(settings)

    def _on_get_ca_certificate(self, event: ops.ActionEvent) -> None:
        ca = self._stored_ca()
        if ca is None:
            event.fail("no CA yet: the leader makes it")
            return
        event.set_results({"ca-certificate": ca.certificate.raw})

    def _on_renew_certificates(self, event: ops.ActionEvent) -> None:
        if not self.unit.is_leader():
            event.fail("only the leader issues certificates: run renew-certificates on the leader")
            return
        try:
            settings = Settings.parse(self.config)
        except InvalidConfigError as error:
            event.fail(str(error))
            return
        holder = str(event.params.get("holder") or "")
        holders = self._holders()
        chosen = {key(r) for r in self.tls.get_certificate_requests()}
        if holder:
            chosen = {k for k in chosen if holders.get(k) == holder}
            if not chosen:
                event.fail(f"{holder} asks for no certificate")
                return
        self._answer(settings, renew=chosen)
        renewed = sorted({holders.get(k, "?") for k in chosen})
        event.set_results({"renewed": str(len(chosen)), "holders": ",".join(renewed)})

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        try:
            Settings.parse(self.config)
        except InvalidConfigError as error:
            event.add_status(ops.BlockedStatus(str(error)))
        event.add_status(ops.ActiveStatus(ACTIVE if self.unit.is_leader() else STANDBY))

    # ------------------------------------------------------------------ the CA (leader)

    def _secret(self) -> ops.Secret | None:
        try:
            return self.model.get_secret(label=CA_SECRET_LABEL)
        except ops.SecretNotFoundError:
            return None

    def _stored_ca(self) -> CA | None:
        secret = self._secret()
        return CA.load(secret.get_content(refresh=True)) if secret else None

    def _ca(self, settings: Settings) -> CA:
        """The CA to sign with: the stored one while it fits the config, else a new one (stored)."""
        secret = self._secret()
        ca = CA.load(secret.get_content(refresh=True)) if secret else None
        if ca is not None and ca.fits(settings, now()):
            return ca
        ca = CA.generate(settings)
        if secret is None:
            self.app.add_secret(ca.dump(), label=CA_SECRET_LABEL, description="the CA's key and certificate")
        else:
            secret.set_content(ca.dump())
        logger.info("new CA %r, valid until %s", ca.certificate.common_name, ca.certificate.expiry_time)
        return ca

    # ------------------------------------------------------------------ certificates (leader)

    def _answered(self, request: RequirerCertificateRequest, ca: CA, settings: Settings) -> bool:
        published = self.tls.get_provider_certificates(relation_id=request.relation_id)
        return any(
            c.certificate_signing_request == request.certificate_signing_request and ca.issued(c, settings)
            for c in published
        )

    def _answer(self, settings: Settings, renew: Set[Key] = frozenset()) -> None:
        """Sign each request not yet answered by the current CA as configured, and those to renew."""
        ca = self._ca(settings)
        for request in self.tls.get_certificate_requests():
            if key(request) in renew or not self._answered(request, ca, settings):
                self._issue(ca, settings, request)

    def _issue(self, ca: CA, settings: Settings, request: RequirerCertificateRequest) -> None:
        """Sign the request anew and publish it (the library replaces the CSR's previous answer)."""
        csr = request.certificate_signing_request
        try:
            certificate = csr.sign(ca.certificate, ca.private_key, settings.certificate_validity, request.is_ca)
        except TLSCertificatesError as error:  # an extension the CSR asks for that cannot be added
            logger.warning("cannot sign a CSR of relation %d: %s", request.relation_id, error)
            code = CertificateRequestErrorCode.OTHER
            failure = CertificateError(code=code.value, name=code.name, message=str(error))
            refusal = ProviderCertificateError(request.relation_id, certificate_signing_request=csr, error=failure)
            self.tls.set_relation_error(refusal)
            return
        self.tls.set_relation_certificate(
            ProviderCertificate(
                relation_id=request.relation_id,
                certificate=certificate,
                certificate_signing_request=csr,
                ca=ca.certificate,
                chain=[certificate, ca.certificate],  # leaf first, as the library expects
            )
        )
        logger.info(
            "issued %r (relation %d), valid until %s",
            csr.common_name or sorted(csr.sans_dns),
            request.relation_id,
            certificate.expiry_time,
        )

    def _holders(self) -> dict[Key, str]:
        """Whose each request is: the requirer unit or application whose databag holds the CSR."""
        found: dict[Key, str] = {}
        for relation in self.model.relations[RELATION]:
            holders: list[ops.Unit | ops.Application] = [*relation.units]
            if relation.app is not None:
                holders.append(relation.app)
            for holder in holders:
                for csr in RequirerDatabag.load(relation.data[holder]).csrs:
                    found[relation.id, csr] = holder.name
        return found


if __name__ == "__main__":  # pragma: nocover
    ops.main(SelfSignedCertificatesCharm)
