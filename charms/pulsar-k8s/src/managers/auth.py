"""The cluster's credentials: JWT tokens for clients, passwords for ZooKeeper and BookKeeper.

JWT (HS256) tokens for Pulsar's token authentication are signed with the cluster's secret key.

Pulsar's AuthenticationProviderToken takes the role from the `sub` claim and verifies the
signature with `tokenSecretKey`. HS256 is HMAC-SHA256 over `header.payload`, so the
standard library is enough.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from charms.pulsar_k8s.v0.bookkeeper import BookieCredentials
from literals import BOOKIE_ZOOKEEPER_USER, BOOKKEEPER_CLIENT_USER

SECRET_KEY_BYTES = 32
PASSWORD_BYTES = 24


def new_secret_key() -> str:
    """A fresh signing key, base64-encoded (as kept in the Juju secret)."""
    return base64.b64encode(secrets.token_bytes(SECRET_KEY_BYTES)).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_for(role: str, secret_key_b64: str) -> str:
    """A non-expiring token for `role`, as `bin/pulsar tokens create --subject role` makes."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps({"sub": role}, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(base64.b64decode(secret_key_b64), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def role_of(token: str, secret_key_b64: str) -> str | None:
    """The role a token carries, if its signature is valid for this key."""
    try:
        header, payload, signature = token.split(".")
    except ValueError:
        return None
    expected = hmac.new(base64.b64decode(secret_key_b64), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(_b64url(expected), signature):
        return None
    padded = payload + "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(padded)).get("sub")


def new_password() -> str:
    """A generated password: URL-safe characters only, so it needs no quoting in a JAAS file."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


@dataclass(frozen=True)
class ZooKeeperCredentials:
    """The content of the `zookeeper-credentials` secret (the leader makes it once).

    - `quorum-password`: what ZooKeeper servers authenticate each other with (`QUORUM_USER`)
    - `pulsar-password`: the ZooKeeper user of the brokers and of the charm's own commands
    """

    quorum_password: str
    pulsar_password: str

    @classmethod
    def generate(cls) -> ZooKeeperCredentials:
        return cls(new_password(), new_password())

    def to_content(self) -> dict[str, str]:
        return {"quorum-password": self.quorum_password, "pulsar-password": self.pulsar_password}

    @classmethod
    def from_content(cls, content: dict[str, str]) -> ZooKeeperCredentials | None:
        quorum, pulsar = content.get("quorum-password"), content.get("pulsar-password")
        return cls(quorum, pulsar) if quorum and pulsar else None


def new_bookie_credentials() -> BookieCredentials:
    return BookieCredentials(BOOKIE_ZOOKEEPER_USER, new_password(), BOOKKEEPER_CLIENT_USER, new_password())


@dataclass(frozen=True)
class ClusterCredentials:
    """Every password the cluster's processes authenticate with (see the `jaas.conf` template)."""

    zookeeper: ZooKeeperCredentials
    bookies: BookieCredentials
