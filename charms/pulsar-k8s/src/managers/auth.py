"""The cluster's credentials: JWT tokens for clients, passwords for ZooKeeper and BookKeeper.

Tokens are RS256 JWTs signed with the cluster's signing key (`SigningKey`). Brokers verify
them with Pulsar's OpenID provider (`AuthenticationProviderOpenID`), which finds the public key
by the token's `kid` in a key set (JWKS) that each broker pod serves itself on localhost
(`TOKEN_KEYS_PORT`). A key set may hold several keys, so the cluster can move to a new key
while tokens signed with the old one still work: see `SigningKeys` for the rotation.

The provider requires `iss` (one of the allowed issuers), `aud` (one of the allowed
audiences), `sub` (the role), `iat`, `nbf` and `exp`, and refuses a token past its `exp`, at
connect time and on live connections (it asks the client for its current token then).
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from charms.pulsar_k8s.v0.bookkeeper import BookieCredentials
from literals import BOOKIE_ZOOKEEPER_USER, BOOKKEEPER_CLIENT_USER, TOKEN_KEYS_PORT

PASSWORD_BYTES = 24
RSA_KEY_BITS = 2048
ALGORITHM = "RS256"
# The issuer every token names: the key set served in each broker's own pod.
ISSUER = f"http://127.0.0.1:{TOKEN_KEYS_PORT}"
# The broker's own token (kept only in its 0600 token file) lives as long as its key.
BROKER_TOKEN_LIFETIME = 10 * 365 * 86400
# Tokens say they were issued this much earlier than they were: a broker whose clock is
# behind the leader's still accepts them (the verifier refuses an `iat` or `nbf` ahead of it).
CLOCK_SKEW = 60


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    """An RSA key that signs tokens: `kid` names it in tokens and in the key set.

    `since` (epoch seconds) is when it was made; the broker's own token is issued at that
    time, so that rendering it again gives the same token (RS256 signatures are deterministic).
    """

    kid: str
    private_pem: str
    since: int

    @classmethod
    def generate(cls, now: int) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return cls(secrets.token_hex(8), pem, now)

    @cached_property
    def public_key(self) -> rsa.RSAPublicKey:
        """The public half, parsed once per key (every render and every token check uses it)."""
        private = serialization.load_pem_private_key(self.private_pem.encode(), password=None)
        assert isinstance(private, rsa.RSAPrivateKey)
        return private.public_key()

    def public_jwk(self) -> dict[str, str]:
        """The public half, as a JSON Web Key (RFC 7517) for the key set."""
        numbers = self.public_key.public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": ALGORITHM,
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }


@dataclass(frozen=True)
class SigningKeys:
    """The content of the `token-signing-key` secret: the key that signs, and those verified beside it.

    - `active`: signs every token handed out
    - `next`: a new key, in every broker's key set but signing nothing yet
    - `retiring`: the key `active` replaced, still verified until every holder of a token
      it signed has a new one

    A rotation goes: `begin_rotation` (next is published), then once every broker serves it,
    `promote` (next signs, the old active retires: every token is issued again), then once
    every broker and client holds a token of the new key, `retire` (the old key leaves the
    key sets, and its tokens are refused). No broker restarts on the way.
    """

    active: SigningKey
    next: SigningKey | None = None
    retiring: SigningKey | None = None

    @property
    def rotating(self) -> bool:
        return self.next is not None or self.retiring is not None

    @property
    def verified(self) -> list[SigningKey]:
        """Every key a broker should accept tokens of."""
        return [key for key in (self.active, self.next, self.retiring) if key is not None]

    @property
    def kids(self) -> list[str]:
        return sorted(key.kid for key in self.verified)

    def begin_rotation(self, new: SigningKey) -> SigningKeys:
        return replace(self, next=new)

    def promote(self) -> SigningKeys:
        assert self.next is not None
        return SigningKeys(active=self.next, retiring=self.active)

    def retire(self) -> SigningKeys:
        return SigningKeys(active=self.active)

    def key_set(self) -> str:
        """The JSON Web Key Set the brokers verify with."""
        return json.dumps({"keys": [key.public_jwk() for key in self.verified]}, indent=2, sort_keys=True) + "\n"

    def to_content(self) -> dict[str, str]:
        content: dict[str, str] = {}
        for name, key in (("active", self.active), ("next", self.next), ("retiring", self.retiring)):
            if key is not None:
                content |= {f"{name}-kid": key.kid, f"{name}-key": key.private_pem, f"{name}-since": str(key.since)}
        return content

    @classmethod
    def from_content(cls, content: dict[str, str]) -> SigningKeys | None:
        """The keys, or None when the secret holds none (or only an older charm's HS256 key)."""

        def key(name: str) -> SigningKey | None:
            kid, pem, since = (content.get(f"{name}-{field}") for field in ("kid", "key", "since"))
            return SigningKey(kid, pem, int(since)) if kid and pem and since and since.isdigit() else None

        active = key("active")
        return cls(active, key("next"), key("retiring")) if active else None


def openid_configuration() -> str:
    """The discovery document the brokers read first: it names the key set's URL."""
    document = {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks.json"}
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class TokenIssuer:
    """Issues and checks tokens of one key, for one audience (the application's name)."""

    key: SigningKey
    audience: str

    def token(self, role: str, issued_at: int, expires_at: int) -> str:
        claims = {
            "sub": role,
            "iss": ISSUER,
            "aud": self.audience,
            "iat": issued_at - CLOCK_SKEW,
            "nbf": issued_at - CLOCK_SKEW,
            "exp": expires_at,
        }
        return jwt.encode(claims, self.key.private_pem, algorithm=ALGORITHM, headers={"kid": self.key.kid})

    def broker_token(self, role: str) -> str:
        """The broker's own token: the same on every render of this key (it is in a file the broker reads)."""
        return self.token(role, self.key.since, self.key.since + BROKER_TOKEN_LIFETIME)

    def claims(self, token: str) -> dict[str, Any] | None:
        """The token's claims if this key signed it for this audience (expired or not)."""
        try:
            if jwt.get_unverified_header(token).get("kid") != self.key.kid:
                return None
            return jwt.decode(
                token,
                self.key.public_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=ISSUER,
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError:
            return None

    def role_of(self, token: str) -> str | None:
        """The role a token carries, if this key signed it."""
        claims = self.claims(token)
        return claims.get("sub") if claims else None

    def reusable(self, token: str | None, role: str, now: int, lifetime: int) -> bool:
        """Whether a token issued before may still be handed out, rather than a new one.

        It must be this key's, for this role, and expire within `lifetime` (a shorter lifetime
        configured since replaces it), with more than a third of the lifetime left: renewal
        comes well before expiry, whenever the leader next reconciles. A token of another key
        (a rotation) is replaced.
        """
        claims = self.claims(token) if token else None
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


def rotation_step(
    keys: SigningKeys, verifying: dict[str, list[str]], signing: dict[str, str], clients_waiting: int
) -> tuple[SigningKeys | None, str | None]:
    """The next step of a rotation: the keys to move to (or None), and what it waits for (or None).

    `verifying`: each broker unit -> the key ids its key set serves; `signing`: each broker
    unit -> the key id of its own token; `clients_waiting`: clients not yet holding a token of
    the active key.
    """
    if keys.next is not None:
        behind = sorted(unit for unit, kids in verifying.items() if keys.next.kid not in kids)
        if behind:
            return None, f"publishing the new key: {', '.join(behind)}"
        return keys.promote(), None
    if keys.retiring is not None:
        behind = sorted(unit for unit, kid in signing.items() if kid != keys.active.kid)
        if behind:
            return None, f"waiting for {', '.join(behind)} to use the new key"
        if clients_waiting:
            return None, f"waiting for {clients_waiting} client(s) to take their new token"
        return keys.retire(), None
    return None, None
