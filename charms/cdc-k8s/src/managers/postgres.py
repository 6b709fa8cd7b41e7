"""The PostgreSQL server the changes come from, whichever way the charm learned of it (pure logic)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

USER_SECRET_FIELDS = ("host", "port", "database", "user", "password")  # and optional `ca`


class SourceProblem(enum.Enum):
    """Why there is no database to capture from yet."""

    NO_SOURCE = "no source"  # neither the relation nor the config option
    WAITING_FOR_CREDENTIALS = "waiting for credentials"  # related; postgresql-k8s has not answered
    SECRET_NOT_GRANTED = "secret not granted"  # noqa: S105 - the configured secret is not visible to us
    SECRET_INVALID = "secret invalid"  # noqa: S105 - it is, but lacks a field or has a bad port


@dataclass(frozen=True)
class PostgresConnection:
    """Where and as whom Debezium connects. `source` is `relation` or `secret`."""

    host: str
    port: int
    database: str
    user: str
    password: str
    tls: bool = False
    tls_ca: str | None = None
    source: str = "relation"

    def __repr__(self) -> str:  # never the password, in a log or a traceback
        return f"PostgresConnection({self.user}@{self.host}:{self.port}/{self.database}, tls={self.tls})"


@dataclass(frozen=True)
class NoSource:
    """Why there is no database to capture from, and what exactly is wrong (for the status)."""

    problem: SourceProblem
    detail: str = ""


def from_user_secret(content: dict[str, str]) -> PostgresConnection | NoSource:
    """A user secret's content (`juju add-secret ... host= port= database= user= password= [ca=]`)."""
    missing = [key for key in USER_SECRET_FIELDS if not content.get(key, "").strip()]
    if missing:
        return NoSource(SourceProblem.SECRET_INVALID, f"it lacks {', '.join(missing)}")
    port = content["port"].strip()
    if not port.isdigit() or not 0 < int(port) < 65536:
        return NoSource(SourceProblem.SECRET_INVALID, f"port {port!r} is not a TCP port")
    ca = content.get("ca", "").strip()
    return PostgresConnection(
        host=content["host"].strip(),
        port=int(port),
        database=content["database"].strip(),
        user=content["user"].strip(),
        password=content["password"],
        tls=bool(ca),
        tls_ca=ca or None,
        source="secret",
    )
