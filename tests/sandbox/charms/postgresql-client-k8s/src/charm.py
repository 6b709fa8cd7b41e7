#!/usr/bin/env python3
"""postgresql-client-k8s: a test requirer of postgresql_client.

Its leader asks, in its application data, for `database`, `extra-user-roles` and
`requested-secrets` when the relation is created, as data-platform-libs' DatabaseRequires does;
the `query` action connects with what the provider shared (`secret-user`, `endpoints`).
"""

from __future__ import annotations

import json

import ops

RELATION = "database"
REQUESTED_SECRETS = ["username", "password", "tls", "tls-ca", "uris", "read-only-uris"]
QUERIES = ["select current_user, rolsuper from pg_roles where rolname = current_user", "show wal_level"]


class PostgreSQLClientCharm(ops.CharmBase):
    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.container = self.unit.get_container("client")
        framework.observe(self.on[RELATION].relation_created, self._on_created)
        for event in (
            self.on.config_changed,
            self.on[RELATION].relation_changed,
            self.on[RELATION].relation_broken,
            self.on.secret_changed,
        ):
            framework.observe(event, self._on_status)
        framework.observe(self.on.query_action, self._on_query)

    def _on_created(self, event: ops.RelationCreatedEvent) -> None:
        if self.unit.is_leader():
            event.relation.data[self.app].update(
                {
                    "database": str(self.config["database-name"]),
                    "extra-user-roles": str(self.config["extra-user-roles"]),
                    "requested-secrets": json.dumps(REQUESTED_SECRETS),
                }
            )
        self._on_status(event)

    def _on_status(self, _: ops.EventBase) -> None:
        relation = self.model.get_relation(RELATION)
        if relation is None or relation.app is None:
            self.unit.status = ops.BlockedStatus("integrate with postgresql-k8s")
        elif "secret-user" not in relation.data[relation.app] and "username" not in relation.data[relation.app]:
            self.unit.status = ops.WaitingStatus("waiting for credentials")
        else:
            database = relation.data[relation.app].get("database", "?")
            self.unit.status = ops.ActiveStatus(f"granted {database}")

    def _credentials(self, relation: ops.Relation) -> dict[str, str]:
        assert relation.app is not None
        data = relation.data[relation.app]
        if "secret-user" in data:
            return self.model.get_secret(id=data["secret-user"]).get_content(refresh=True)
        return {key: data[key] for key in ("username", "password") if key in data}

    def _on_query(self, event: ops.ActionEvent) -> None:
        relation = self.model.get_relation(RELATION)
        if relation is None or relation.app is None or "endpoints" not in relation.data[relation.app]:
            event.fail("no database shared yet")
            return
        data = relation.data[relation.app]
        credentials = self._credentials(relation)
        host, port = data["endpoints"].split(",")[0].rsplit(":", 1)
        username = event.params.get("username") or credentials["username"]
        database = event.params.get("database") or data["database"]
        argv = ["psql", "-X", "-A", "-t", "-F", " ", "-v", "ON_ERROR_STOP=1"]
        argv += ["-h", host, "-p", port, "-U", username, "-d", database]
        for query in QUERIES:
            argv += ["-c", query]
        # The password goes in the environment, not on the command line.
        environment = {"PGPASSWORD": credentials["password"], "PGCONNECT_TIMEOUT": "10"}
        try:
            stdout, _ = self.container.exec(argv, environment=environment, timeout=30).wait_output()
        except ops.pebble.ExecError as error:
            event.fail(f"psql exit {error.exit_code}: {str(error.stderr or '').strip()}")
            return
        (user, superuser), (wal_level,) = (line.split() for line in stdout.strip().splitlines())
        event.set_results({"user": user, "superuser": str(superuser == "t").lower(), "wal-level": wal_level})


if __name__ == "__main__":  # pragma: nocover
    ops.main(PostgreSQLClientCharm)
