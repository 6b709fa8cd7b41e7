"""The cluster's credentials: JWT tokens for clients, passwords for ZooKeeper and BookKeeper.

JWT (HS256) tokens for Pulsar's token authentication are signed with the cluster's secret key;
clients' tokens expire (`token-lifetime`) and are renewed by the leader before they do.

Pulsar's AuthenticationProviderToken takes the role from the `sub` claim, verifies the
signature with `tokenSecretKey`, and refuses a token past its `exp`, at connect time and on
live connections (it checks them every minute and asks the client for its current token).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import Any

import jwt

from charms.pulsar_k8s.v0.bookkeeper import BookieCredentials
from literals import BOOKIE_ZOOKEEPER_USER, BOOKKEEPER_CLIENT_USER

SECRET_KEY_BYTES = 32
PASSWORD_BYTES = 24


def new_secret_key() -> str:
    """A fresh signing key, base64-encoded (as kept in the Juju secret)."""
    return base64.b64encode(secrets.token_bytes(SECRET_KEY_BYTES)).decode()


def token_for(role: str, secret_key_b64: str, expires_at: int | None = None) -> str:
    """A token for `role`, signed with the key; with `expires_at` (epoch seconds) it expires then.

    Without it the token never expires, as `bin/pulsar tokens create --subject role` makes it:
    only the broker's own client uses one, from its 0600 config.
    """
    claims: dict[str, object] = {"sub": role}
    if expires_at is not None:
        claims["exp"] = expires_at
    return jwt.encode(claims, base64.b64decode(secret_key_b64), algorithm="HS256")


def _claims(token: str, secret_key_b64: str) -> dict[str, Any] | None:
    """The token's claims if its signature is valid for this key (expired or not)."""
    try:
        return jwt.decode(token, base64.b64decode(secret_key_b64), algorithms=["HS256"], options={"verify_exp": False})
    except jwt.InvalidTokenError:
        return None


def role_of(token: str, secret_key_b64: str) -> str | None:
    """The role a token carries, if its signature is valid for this key."""
    claims = _claims(token, secret_key_b64)
    return claims.get("sub") if claims else None


def reusable(token: str | None, role: str, secret_key_b64: str, now: int, lifetime: int) -> bool:
    """Whether a token issued before may still be handed out, rather than a new one.

    It must be this key's, for this role, and expire within `lifetime` (a shorter lifetime
    configured since replaces it), with more than a third of the lifetime left: renewal
    comes well before expiry, whenever the leader next reconciles.
    """
    claims = _claims(token, secret_key_b64) if token else None
    if not claims or claims.get("sub") != role or not isinstance(claims.get("exp"), int):
        return False
    left = claims["exp"] - now
    return lifetime / 3 < left <= lifetime


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
