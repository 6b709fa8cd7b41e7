"""Where the change data comes from: a PostgreSQL server, over the `database` relation or a user secret.

The `database` relation speaks `postgresql_client` as Canonical's postgresql-k8s provides it (the
data_interfaces protocol, v0). Unlike our own interfaces, every value is a plain string, except
`requested-secrets`, a JSON list. Both application databags are typed (`DatabaseRequestData`,
`DatabaseOfferData`), loaded and saved with ops' `Relation.load` / `Relation.save` as strings.

Requirer application data (`DatabaseRequestData`), written by our leader:
- `database`: the database to create (config `database-name`)
- `extra-user-roles`: `SUPERUSER`. Debezium opens a walsender, which needs the superuser or
  the replication attribute, and postgresql-k8s grants no REPLICATION alone.
- `requested-secrets`: JSON list of the secret fields we read: username, password, tls, tls-ca, uris

Provider application data (`DatabaseOfferData`), written by postgresql-k8s's leader:
- `endpoints`: `host:port` of the primary (comma-separated if more; we use the first)
- `read-only-endpoints`, `version`, `database`
- `secret-user`: id of a Juju secret with `username`, `password` (and `uris`); the user is
  `relation_id_<relation id>`. A password rotation is a new revision: `secret-changed`.
- `secret-tls`: id of a Juju secret with `tls` ("True"/"False") and `tls-ca`, when TLS is on

Not every PostgreSQL is a Juju application: config `postgresql-credentials` names a user secret
(`juju add-secret` with host, port, database, user, password, optional ca; `juju grant-secret`
to this application) used instead of the relation.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import ops

from managers.postgres import NoSource, PostgresConnection, SourceProblem, from_user_secret

logger = logging.getLogger(__name__)

REQUESTED_SECRETS = ["username", "password", "tls", "tls-ca", "uris"]
EXTRA_USER_ROLES = "SUPERUSER"


@dataclass
class DatabaseRequestData:
    """Our application databag in the `database` relation (see the module docstring)."""

    database: str = ""
    extra_user_roles: str = field(default="", metadata={"alias": "extra-user-roles"})
    requested_secrets: str = field(default="", metadata={"alias": "requested-secrets"})  # JSON list


@dataclass
class DatabaseOfferData:
    """postgresql-k8s's application databag in the `database` relation (see the module docstring)."""

    endpoints: str = ""
    read_only_endpoints: str = field(default="", metadata={"alias": "read-only-endpoints"})
    version: str = ""
    database: str = ""
    secret_user: str = field(default="", metadata={"alias": "secret-user"})
    secret_tls: str = field(default="", metadata={"alias": "secret-tls"})


def _as_is(value: str) -> str:
    return value


class DatabaseSource:
    """The database as one event sees it: from the user secret if configured, else the relation."""

    def __init__(self, charm: ops.CharmBase, relation_name: str, database: str, credentials_secret: str) -> None:
        self.model = charm.model
        self.database = database
        self.app = charm.app
        self.leader = charm.unit.is_leader()
        self.relation = charm.model.get_relation(relation_name)
        self.credentials_secret = credentials_secret

    @property
    def kind(self) -> str:
        """What the status names as the source: `secret` (config) or `relation`."""
        return "secret" if self.credentials_secret else "relation"

    def publish_request(self) -> None:
        """Leader: ask postgresql-k8s for the database and a superuser (no-op without the relation)."""
        if not self.leader or self.relation is None:
            return
        wanted = DatabaseRequestData(self.database, EXTRA_USER_ROLES, json.dumps(REQUESTED_SECRETS))
        if self.relation.load(DatabaseRequestData, self.app, decoder=_as_is) != wanted:
            self.relation.save(wanted, self.app, encoder=str)

    def connection(self) -> PostgresConnection | NoSource:
        """The server and credentials to capture from, or why there are none yet."""
        if self.credentials_secret:
            return self._from_user_secret()
        if self.relation is None or self.relation.app is None:
            return NoSource(SourceProblem.NO_SOURCE)
        offer = self.relation.load(DatabaseOfferData, self.relation.app, decoder=_as_is)
        if not offer.endpoints or not offer.secret_user:
            return NoSource(SourceProblem.WAITING_FOR_CREDENTIALS)
        user = self._secret(offer.secret_user)
        if user is None or not user.get("username") or not user.get("password"):
            return NoSource(SourceProblem.WAITING_FOR_CREDENTIALS)
        tls = self._secret(offer.secret_tls) if offer.secret_tls else None
        host, _, port = offer.endpoints.split(",")[0].strip().rpartition(":")
        return PostgresConnection(
            host=host,
            port=int(port) if port.isdigit() else 5432,
            database=offer.database or self.database,
            user=user["username"],
            password=user["password"],
            tls=bool(tls) and tls.get("tls", "").lower() == "true",
            tls_ca=(tls or {}).get("tls-ca") or None,
            source="relation",
        )

    def _from_user_secret(self) -> PostgresConnection | NoSource:
        content = self._secret(self.credentials_secret)
        if content is None:
            return NoSource(SourceProblem.SECRET_NOT_GRANTED)
        return from_user_secret(content)

    def _secret(self, secret_id: str) -> dict[str, str] | None:
        """A secret's latest content (we follow rotations), or None if we cannot see it."""
        try:
            return self.model.get_secret(id=secret_id).get_content(refresh=True)
        except (ops.SecretNotFoundError, ops.ModelError) as error:
            logger.debug("secret %s is not readable: %s", secret_id, error)
            return None
