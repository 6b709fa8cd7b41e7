"""JWT (HS256) tokens for Pulsar's token authentication, signed with the cluster's secret key.

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

SECRET_KEY_BYTES = 32


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
