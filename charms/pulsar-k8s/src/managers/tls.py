"""TLS for the brokers: what to ask the certificates provider for, and the files Pulsar reads.

Each unit asks for its own certificate (the tls-certificates interface, unit mode), with its
FQDN and the application's Kubernetes service names as SANs: clients reach a broker by its
FQDN (lookups answer with the advertised address) or through a service. Pulsar reads the
private key as PKCS#8 only; the provider's library hands it over as PKCS#1.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from charmlibs.interfaces.tls_certificates import CertificateRequestAttributes, PrivateKey, ProviderCertificate
from cryptography.hazmat.primitives import serialization


def certificate_request(unit_name: str, fqdn: str, app: str, model: str, domain: str) -> CertificateRequestAttributes:
    """The request of one unit; built the same way on every event (a changed request is re-asked)."""
    services = [f"{app}-endpoints.{model}.svc.{domain}", f"{app}.{model}.svc.{domain}"]
    # The common name is short (at most 64 characters): the FQDN goes in the SANs.
    return CertificateRequestAttributes(common_name=unit_name.replace("/", "-"), sans_dns=frozenset([fqdn, *services]))


@dataclass(frozen=True)
class BrokerTls:
    """A unit's certificate as the broker reads it: PEM chain (leaf first), PKCS#8 key, CA."""

    chain: str
    private_key: str
    ca: str

    @classmethod
    def of(cls, provided: ProviderCertificate, key: PrivateKey) -> BrokerTls:
        chain = [str(provided.certificate), *(str(c) for c in provided.chain if str(c) != str(provided.certificate))]
        return cls("\n".join(chain) + "\n", pkcs8(str(key)), str(provided.ca) + "\n")

    def client_context(self) -> ssl.SSLContext:
        """What the charm verifies the brokers with: this CA, and each broker's name."""
        return ssl.create_default_context(cadata=self.ca)


def pkcs8(private_key_pem: str) -> str:
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
