#!/usr/bin/env python3
"""postgresql-k8s (test charm): PostgreSQL providing `database` over postgresql_client.

On the wire it behaves as Canonical's postgresql-k8s 14 does, for one unit without TLS:

- The requirer's application data asks: `database`, optionally `extra-user-roles`
  (comma-separated: `superuser`, `createdb`, `createrole`, any case) and `requested-secrets`
  (a JSON list of the fields it wants in Juju secrets).
- The leader answers in its application data: `endpoints` and `read-only-endpoints`
  (`<host>:5432`, the primary for both), `version`, `database`, and the credentials. Requested
  fields go into application-owned secrets granted to the relation, one per group, whose ids
  are published as `secret-user` (username, password, uris, read-only-uris) and `secret-tls`
  (tls, tls-ca); fields not requested go into the databag as they are.
- The user is `relation_id_<relation id>`, with a random password; it may log in to its own
  database only. An unknown extra role blocks the relation, as postgresql-k8s does.
- When the relation goes, so do its user and secrets. The database and its data stay.

Everything is reconciled on every event: files, Pebble layer, then (leader) each relation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import socket
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass

import ops

logger = logging.getLogger(__name__)

CONTAINER = "postgresql"
SERVICE = "postgresql"
PGDATA = "/var/lib/postgresql/data/pgdata"  # a directory of the mount, so that postgres owns it
SOCKET_DIR = "/tmp"  # the container's own /tmp: no other server shares the socket's name
PORT = 5432
ADMIN = "postgres"  # the superuser; the charm reaches it through the socket (peer auth) only
SETTINGS = {
    "listen_addresses": "*",  # the pod's addresses
    "port": str(PORT),
    "unix_socket_directories": SOCKET_DIR,
    "password_encryption": "scram-sha-256",
    # Logical decoding for change data capture; postgresql-k8s runs with these values.
    "wal_level": "logical",
    "max_replication_slots": "25",
    "max_wal_senders": "25",
}
# psql as the superuser through the socket: unaligned rows, no psqlrc, stop at the first error
# and say only what failed (a failing statement is not echoed).
PSQL_OPTIONS = ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=terse"]
PSQL_OPTIONS += ["-h", SOCKET_DIR, "-p", str(PORT), "-U", ADMIN, "-d", ADMIN]
# As the superuser through the socket, so that probes pass peer authentication (and log nothing).
PG_ISREADY = ["pg_isready", "-q", "-h", SOCKET_DIR, "-p", str(PORT), "-U", ADMIN, "-d", ADMIN]
VERSION_QUERY = "SHOW server_version"
USERS_QUERY = "SELECT rolname FROM pg_roles WHERE rolname ~ '^relation_id_[0-9]+$'"
DATABASES_QUERY = "SELECT datname FROM pg_database WHERE datallowconn"
RELATION = "database"
USER_PREFIX = "relation_id_"
PRIVILEGES = ("superuser", "createdb", "createrole")  # the extra user roles granted as role attributes
IGNORED_ROLES = ("relation_access", "internal_access", "identity_access")  # postgresql-k8s's own groups
INVALID_ROLES = "invalid role(s) for extra user roles"
DATABASE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$")
# Which secret each credential field goes into, when the requirer asks for it in a secret.
SECRET_GROUPS = {
    "username": "user",
    "password": "user",
    "uris": "user",
    "read-only-uris": "user",
    "tls": "tls",
    "tls-ca": "tls",
}


class WorkloadError(Exception):
    """PostgreSQL did not do what the charm asked; the message says what and why."""


@dataclass(frozen=True)
class Request:
    """What a requirer asked for on one relation."""

    database: str
    privileges: frozenset[str]
    requested_secrets: frozenset[str]


def parse_request(data: Mapping[str, str]) -> Request | str | None:
    """The request in the requirer's application data; None before it asks, a reason if refused."""
    database = data.get("database")
    if not database:
        return None
    if not DATABASE_NAME.match(database):
        return f"invalid database name {database!r}"
    roles = {role.strip().lower() for role in data.get("extra-user-roles", "").split(",") if role.strip()}
    roles -= set(IGNORED_ROLES)
    if roles - set(PRIVILEGES):
        return INVALID_ROLES
    try:
        requested = json.loads(data.get("requested-secrets", "[]"))
    except ValueError:
        requested = []
    if not isinstance(requested, list):
        requested = []
    return Request(database, frozenset(roles), frozenset(str(field) for field in requested))


def new_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(16))


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """What PostgreSQL stores for a scram-sha-256 password (RFC 5802), so the password never reaches it."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def pg_hba(grants: dict[str, str]) -> str:
    """Who may connect: the charm through the socket, each relation's user to its database only."""
    lines = [f"local all {ADMIN} peer"]
    # Quoted, so that a database named `all` or `replication` is only that database.
    lines += [f'host "{database}" "{user}" all scram-sha-256' for user, database in sorted(grants.items())]
    return "\n".join(lines) + "\n"


def user_script(user: str, password: str, request: Request) -> str:
    """Create or update the user, create its database if missing, and give it the database.

    Names and values are quoted with ident() and literal(); `\\gexec` runs a statement only
    when the query returns it (CREATE DATABASE cannot run inside a DO block).
    """
    attributes = " ".join(p.upper() if p in request.privileges else f"NO{p.upper()}" for p in PRIVILEGES)
    db = request.database
    role_missing = f"NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {literal(user)})"
    database_missing = f"NOT EXISTS (SELECT FROM pg_database WHERE datname = {literal(db)})"
    return "\n".join(
        [
            f"SELECT {literal(f'CREATE ROLE {ident(user)}')} WHERE {role_missing}\\gexec",
            f"ALTER ROLE {ident(user)} WITH LOGIN {attributes} PASSWORD {literal(scram_verifier(password))};",
            f"SELECT {literal(f'CREATE DATABASE {ident(db)}')} WHERE {database_missing}\\gexec",
            f"REVOKE ALL PRIVILEGES ON DATABASE {ident(db)} FROM PUBLIC;",
            f"GRANT ALL PRIVILEGES ON DATABASE {ident(db)} TO {ident(user)};",
            f"\\connect {ident(db)}",
            f"GRANT ALL ON SCHEMA public TO {ident(user)};",
            f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {ident(user)};",
            f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {ident(user)};",
        ]
    )


def drop_script(user: str, databases: list[str]) -> str:
    """Drop a user; what it owns in each database goes to the superuser first, so the data stays."""
    lines = []
    for database in databases:
        lines += [
            f"\\connect {ident(database)}",
            f"REASSIGN OWNED BY {ident(user)} TO {ident(ADMIN)};",
            f"DROP OWNED BY {ident(user)};",
        ]
    lines += [f"\\connect {ident(ADMIN)}", f"DROP ROLE IF EXISTS {ident(user)};"]
    return "\n".join(lines)


def unit_host() -> str:
    """The pod's stable name (Kubernetes writes it into the pod's hosts file)."""
    return socket.getfqdn()


class PostgreSQLCharm(ops.CharmBase):
    _stored = ops.StoredState()

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self._stored.set_default(dying=False)
        self.container = self.unit.get_container(CONTAINER)
        for event in (
            self.on.postgresql_pebble_ready,
            self.on.config_changed,
            self.on.upgrade_charm,
            self.on.leader_elected,
            self.on.update_status,
            self.on[RELATION].relation_changed,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(self.on[RELATION].relation_departed, self._on_departed)
        framework.observe(self.on[RELATION].relation_broken, self._on_broken)

    # ------------------------------------------------------------------ events

    def _on_departed(self, event: ops.RelationDepartedEvent) -> None:
        if event.departing_unit == self.unit:
            self._stored.dying = True  # this unit goes, the relations stay: keep their users

    def _on_broken(self, event: ops.RelationBrokenEvent) -> None:
        if self.unit.is_leader() and not self._stored.dying:
            for group in ("user", "tls"):
                try:
                    self.model.get_secret(label=secret_label(event.relation.id, group)).remove_all_revisions()
                except ops.SecretNotFoundError:
                    pass
        self._reconcile(event)  # the broken relation is gone from the model: its user is dropped

    def _reconcile(self, _: ops.EventBase) -> None:
        if not self.container.can_connect():
            self.unit.status = ops.WaitingStatus("waiting for Pebble")
            return
        try:
            self._run_server()
            version = self._version()
            refused = self._serve_relations(version) if self.unit.is_leader() else {}
        except WorkloadError as error:
            logger.error("%s", error)
            self.unit.status = ops.BlockedStatus(str(error))
            return
        self.unit.set_workload_version(version)
        if refused:
            for relation_id, reason in sorted(refused.items()):
                logger.warning("relation %d refused: %s", relation_id, reason)
            self.unit.status = ops.BlockedStatus(sorted(refused.values())[0])
        else:
            self.unit.status = ops.ActiveStatus()

    # ------------------------------------------------------------------ the server

    def _run_server(self) -> None:
        if not self.container.exists(f"{PGDATA}/PG_VERSION"):
            self.container.make_dir(PGDATA, make_parents=True, permissions=0o700, user=ADMIN, group=ADMIN)
            initdb = ["initdb", "-D", PGDATA, "-U", ADMIN, "--auth-local=peer", "--auth-host=scram-sha-256"]
            self._exec([*initdb, "--encoding=UTF8", "--locale=C.UTF-8"], "initdb")
        hba_changed = self._push_if_changed(f"{PGDATA}/pg_hba.conf", pg_hba(self._grants()))
        options = " ".join(f"-c {key}={value}" for key, value in SETTINGS.items())
        layer = ops.pebble.Layer(
            {
                "summary": "postgresql",
                "services": {
                    SERVICE: {
                        "override": "replace",
                        "summary": "PostgreSQL",
                        "command": f"postgres -D {PGDATA} {options}",
                        "startup": "enabled",
                        "user": ADMIN,
                        "group": ADMIN,
                    }
                },
                "checks": {
                    "postgresql-ready": {
                        "override": "replace",
                        "level": "ready",
                        "period": "5s",
                        "threshold": 3,
                        "exec": {"command": " ".join(PG_ISREADY), "user": ADMIN, "group": ADMIN},
                    }
                },
            }
        )
        running = self._running()
        self.container.add_layer("postgresql", layer, combine=True)
        try:
            self.container.replan()
            if running and hba_changed and self._running():
                self.container.send_signal("SIGHUP", SERVICE)  # re-read pg_hba.conf
        except (ops.pebble.ChangeError, ops.pebble.APIError) as error:
            raise WorkloadError(f"PostgreSQL did not start: {error}") from None
        self._wait_ready()

    def _running(self) -> bool:
        services = self.container.get_services(SERVICE)
        return SERVICE in services and services[SERVICE].is_running()

    def _push_if_changed(self, path: str, content: str) -> bool:
        try:
            if self.container.pull(path).read() == content:
                return False
        except ops.pebble.PathError:
            pass
        self.container.push(path, content, permissions=0o600, user=ADMIN, group=ADMIN)
        return True

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.container.exec(PG_ISREADY, user=ADMIN, group=ADMIN, working_dir=SOCKET_DIR).wait_output()
                return
            except ops.pebble.ExecError as error:
                if time.monotonic() > deadline:
                    message = f"PostgreSQL not ready after {timeout:.0f}s (pg_isready {error.exit_code})"
                    raise WorkloadError(message) from None
            time.sleep(0.5)

    def _version(self) -> str:
        return self._query(VERSION_QUERY).split()[0]  # "15.18 (Debian 15.18-1.pgdg120+1)"

    def _exec(self, argv: list[str], what: str, stdin: str | None = None) -> str:
        try:
            process = self.container.exec(
                argv, user=ADMIN, group=ADMIN, working_dir=SOCKET_DIR, stdin=stdin, timeout=120
            )
            stdout, _ = process.wait_output()
        except ops.pebble.ExecError as error:
            stderr = str(error.stderr or "").strip().splitlines()
            raise WorkloadError(f"{what} failed (exit {error.exit_code}): {stderr[-1] if stderr else ''}") from None
        return str(stdout)

    def _query(self, sql: str) -> str:
        """One statement without secrets, as the superuser; rows on stdout, one a line."""
        return self._exec(["psql", "-c", sql, *PSQL_OPTIONS], "psql")

    def _script(self, script: str, what: str) -> str:
        """SQL and psql commands as the superuser, on stdin, so that no password is on a command line."""
        return self._exec(["psql", "-f", "-", *PSQL_OPTIONS], what, stdin=script)

    # ------------------------------------------------------------------ relations (leader)

    def _requests(self) -> dict[int, Request | str]:
        requests: dict[int, Request | str] = {}
        for relation in self.model.relations[RELATION]:
            if relation.app is not None and (request := parse_request(relation.data[relation.app])) is not None:
                requests[relation.id] = request
        return requests

    def _grants(self) -> dict[str, str]:
        """user -> database, for the relations whose request is valid."""
        return {
            f"{USER_PREFIX}{relation_id}": request.database
            for relation_id, request in self._requests().items()
            if isinstance(request, Request)
        }

    def _serve_relations(self, version: str) -> dict[int, str]:
        """Give each relation its user and database, drop the users of gone relations; returns refusals."""
        refused: dict[int, str] = {}
        for relation_id, request in self._requests().items():
            if isinstance(request, str):
                refused[relation_id] = request
                continue
            relation = self.model.get_relation(RELATION, relation_id)
            assert relation is not None
            self._serve(relation, request, version)
        if not self._stored.dying:
            live = {relation.id for relation in self.model.relations[RELATION]}
            for user in self._query(USERS_QUERY).split():
                if int(user.removeprefix(USER_PREFIX)) not in live:
                    databases = self._query(DATABASES_QUERY).split()
                    self._script(drop_script(user, databases), f"dropping {user}")
                    logger.info("dropped %s: its relation is gone", user)
        return refused

    def _serve(self, relation: ops.Relation, request: Request, version: str) -> None:
        user = f"{USER_PREFIX}{relation.id}"
        password = self._shared_password(relation) or new_password()
        self._script(user_script(user, password, request), f"creating {user}")
        host = unit_host()
        if self.config.get("endpoint-address") == "ip":  # another name of the same server (network-get)
            binding = self.model.get_binding(relation)
            host = str(binding.network.ingress_address) if binding else host
        endpoint = f"{host}:{PORT}"
        uri = f"postgresql://{user}:{password}@{endpoint}/{request.database}"
        credentials = {"username": user, "password": password, "uris": uri, "tls": "False"}
        if "read-only-uris" in request.requested_secrets:  # postgresql-k8s sends it only in a secret
            credentials["read-only-uris"] = uri
        self._share(relation, credentials, request.requested_secrets)
        relation.data[self.app].update(
            {
                "endpoints": endpoint,
                "read-only-endpoints": endpoint,  # no replicas: the primary, as postgresql-k8s does
                "version": version,
                "database": request.database,
            }
        )

    def _shared_password(self, relation: ops.Relation) -> str | None:
        try:
            return self.model.get_secret(label=secret_label(relation.id, "user")).get_content().get("password")
        except ops.SecretNotFoundError:
            return relation.data[self.app].get("password")

    def _share(self, relation: ops.Relation, credentials: dict[str, str], requested: frozenset[str]) -> None:
        """Requested fields into one secret per group (`secret-<group>` holds its id), the rest in the databag."""
        grouped: dict[str, dict[str, str]] = {}
        for key, value in credentials.items():
            if key in requested:
                grouped.setdefault(SECRET_GROUPS[key], {})[key] = value
            else:
                relation.data[self.app][key] = value
        for group, content in grouped.items():
            label = secret_label(relation.id, group)
            try:
                secret = self.model.get_secret(label=label)
                if secret.get_content() != content:
                    secret.set_content(content)
            except ops.SecretNotFoundError:
                secret = self.app.add_secret(content, label=label)
                secret.grant(relation)
                relation.data[self.app][f"secret-{group}"] = secret.id or ""


def secret_label(relation_id: int, group: str) -> str:
    return f"{RELATION}.{relation_id}.{group}.secret"  # the label postgresql-k8s gives it


if __name__ == "__main__":  # pragma: nocover
    ops.main(PostgreSQLCharm)
