"""cdc-k8s with ops.testing: both handshakes, the pipeline's layer and files, TLS to Pulsar,
refusals, teardown, the peer state, resnapshot, a lost slot and a failing connector.

PostgreSQL itself is not here: `readiness` and the teardown's statements go to a recorder that
answers like a server would (the sandbox tests run against a real one).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import ops
import pytest
import yaml
from ops import testing

from cdc_k8s import replication
from cdc_k8s.charm import CdcCharm
from cdc_k8s.literals import Status

TOKEN = "eyJhbGciOiJIUzI1NiJ9.cdc"
PASSWORD = "pg-pass-1"
PASSWORD_FILE = "postgresql-password"  # in /var/lib/cdc
CONNECTOR = "pulsar-io-debezium-postgres-4.0.8.nar"


SYSTEM = "7313570912838149437"
TLS_SERVICE_URL = "pulsar+ssl://pulsar-k8s-0.pulsar-k8s-endpoints:6651,pulsar-k8s-1.pulsar-k8s-endpoints:6651"
PULSAR_CA = "-----BEGIN CERTIFICATE-----\nMIIBpulsarCA1\n-----END CERTIFICATE-----\n"
PULSAR_CA_FILE = "/var/lib/cdc/pulsar-ca.pem"
# LocalRunner's TLS options (each takes a value); it hands them to the Python instance as its own.
TLS_OPTIONS = {"--useTls": "true", "--tlsTrustCertFilePath": PULSAR_CA_FILE, "--tlsHostNameVerificationEnabled": "true"}


class Server:
    """Stands in for PostgreSQL: answers the charm's queries, records every statement."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []
        self.connected_as: list[str] = []
        self.passwords: list[str] = []  # the password of each connection, in order
        self.wal_level = "logical"
        self.superuser = True
        self.slot = True  # whether cdc_cdc_k8s exists (Debezium makes it as it starts streaming)
        self.slot_pid: int | None = 4242
        self.slot_lag = 2048
        self.timeline = 1  # of the WAL: a promoted standby starts a new one
        self.system = SYSTEM  # its system identifier: its standbys share it, another server's differs
        self.publication: list[tuple[str, ...]] | None = None  # the tables it publishes
        self.refuse: str | None = None
        self.refuse_drop: str | None = None
        self.at_drop: Callable[[], None] | None = None  # called as the slot is dropped

    def connect(self, **options: Any) -> Connection:
        if self.refuse:
            raise replication.psycopg.OperationalError(self.refuse)
        self.connected_as.append(f"{options['user']}@{options['host']}:{options['port']}/{options['dbname']}")
        self.passwords.append(options["password"])
        return Connection(self)


class Connection:
    def __init__(self, server: Server) -> None:
        self.server = server

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def execute(self, query: Any, params: tuple[Any, ...] = ()) -> Result:
        text = query if isinstance(query, str) else query.as_string(None)
        self.server.statements.append((text, params))
        if text == "SHOW wal_level":
            return Result([(self.server.wal_level,)])
        if text.startswith("SELECT rolsuper"):
            return Result([(self.server.superuser, False)])
        if text.startswith("SELECT active_pid"):
            return Result([(self.server.slot_pid,)] if self.server.slot else [])
        if text.startswith("SELECT 1 FROM pg_replication_slots"):
            return Result([(1,)] if self.server.slot else [])
        if text.startswith("SELECT system_identifier"):
            return Result([(self.server.system,)])
        if text.startswith("SELECT pg_walfile_name"):
            return Result([(f"{self.server.timeline:08X}0000000000000003",)])
        if text.startswith("SELECT pg_create_logical_replication_slot"):
            self.server.slot = True
        if text.startswith("SELECT pg_drop_replication_slot"):
            if self.server.at_drop:
                self.server.at_drop()
            if self.server.refuse_drop:
                raise replication.psycopg.errors.InsufficientPrivilege(self.server.refuse_drop)
            self.server.slot = False
        if text.startswith("SELECT 1 FROM pg_publication"):
            return Result([(1,)] if self.server.publication is not None else [])
        if text.startswith("SELECT schemaname, tablename FROM pg_publication_tables"):
            return Result(list(self.server.publication or []))
        if text.startswith(("CREATE PUBLICATION", "ALTER PUBLICATION")):
            self.server.publication = [
                tuple(t.strip('"') for t in n.split(".")) for n in text.split(" TABLE ")[1].split(", ")
            ]
        if text.startswith("DROP PUBLICATION"):
            self.server.publication = None
        if text.startswith("SELECT pg_wal_lsn_diff"):
            return Result([(self.server.slot_lag,)] if params == ("cdc_cdc_k8s",) else [])
        return Result([])


@dataclasses.dataclass
class Result:
    rows: list[tuple[Any, ...]]

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Server:
    fake = Server()
    monkeypatch.setattr(replication.psycopg, "connect", fake.connect)
    return fake


@pytest.fixture
def image(pulsar_image: Path) -> Path:
    """The pulsar-all image's tree: the Pulsar distribution and the Debezium connector."""
    (pulsar_image / "connectors").mkdir()
    (pulsar_image / "connectors" / CONNECTOR).write_bytes(b"PK")
    return pulsar_image


def _container(image: Path, tmp_path: Path, **changes: Any) -> testing.Container:
    (tmp_path / "cdc").mkdir(exist_ok=True)
    return testing.Container(
        "cdc",
        can_connect=True,
        mounts={
            "image": testing.Mount(location="/pulsar", source=image),
            "cdc": testing.Mount(location="/var/lib/cdc", source=tmp_path / "cdc"),
        },
        **changes,
    )


def _pulsar(token_secret: testing.Secret, tls_ca: str | None = None) -> testing.Relation:
    """pulsar-k8s's grant; with `tls_ca`, as once every broker serves TLS: TLS URLs and the CA."""
    grant = {
        "service-url": "pulsar://pulsar-k8s-0.pulsar-k8s-endpoints:6650",
        "web-service-url": "http://pulsar-k8s-0.pulsar-k8s-endpoints:8080",
        "namespace": "cdc-k8s/default",
        "role": "pulsar-k8s-client-4",
        "secret-credentials": token_secret.id,
    }
    if tls_ca is not None:
        grant["service-url"] = TLS_SERVICE_URL
        grant["web-service-url"] = (
            "https://pulsar-k8s-0.pulsar-k8s-endpoints:8443,pulsar-k8s-1.pulsar-k8s-endpoints:8443"
        )
        grant["tls-ca"] = tls_ca
    return testing.Relation(
        "pulsar", remote_app_name="pulsar-k8s", remote_app_data={k: json.dumps(v) for k, v in grant.items()}, id=4
    )


def _database(user_secret: testing.Secret | None, **offer: str) -> testing.Relation:
    data = {"endpoints": "10.1.2.3:5432", "database": "cdc", "version": "14.15"}
    if user_secret is not None:
        data["secret-user"] = user_secret.id
    return testing.Relation("database", remote_app_name="postgresql-k8s", remote_app_data={**data, **offer}, id=7)


def _peers(app_data: dict[str, Any]) -> testing.PeerRelation:
    return testing.PeerRelation("cdc-peers", local_app_data={k: json.dumps(v) for k, v in app_data.items()}, id=9)


PEER_DEFAULTS = {"generation": 0, "slot-seen": "", "slot-timeline": 0, "slot-lost": "", "source-database": ""}
SOURCE = f"{SYSTEM}/cdc"  # the database the offsets are about


def _peer_app_data(out: testing.State) -> dict[str, Any]:
    """The leader's peer application data, decoded; a key left out reads as its default."""
    relation = next(r for r in out.relations if r.endpoint == "cdc-peers")
    return {**PEER_DEFAULTS, **{key: json.loads(value) for key, value in relation.local_app_data.items()}}


@dataclasses.dataclass
class World:
    """A cdc unit with both relations granted; `state()` builds the ops.testing State."""

    image: Path
    tmp_path: Path
    token: testing.Secret = dataclasses.field(default_factory=lambda: testing.Secret({"token": TOKEN}))
    user: testing.Secret = dataclasses.field(
        default_factory=lambda: testing.Secret({"username": "relation_id_7", "password": PASSWORD})
    )

    def enrichment(self, module: str = "") -> testing.Resource:
        """The `enrichment` file resource; empty, as the charm's published placeholder revision is."""
        path = self.tmp_path / "resources" / "enrichment.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(module)
        return testing.Resource(name="enrichment", path=path)

    def state(
        self,
        *,
        leader: bool = True,
        database: bool = True,
        enrichment: str = "",
        peers: dict[str, Any] | None = None,
        config: dict[str, str] | None = None,
        pulsar_ca: str | None = None,
        database_ca: str | None = None,
    ) -> testing.State:
        """The unit; `peers` is the peer application data (None: no peer relation yet).

        `pulsar_ca`: pulsar-k8s serves TLS, signed by this CA; `database_ca`: so does PostgreSQL
        (None: plaintext).
        """
        relations: list[testing.RelationBase] = [_pulsar(self.token, pulsar_ca)]
        secrets = {self.token, self.user}
        if database:
            tls = {}
            if database_ca is not None:
                secret = testing.Secret({"tls": "True", "tls-ca": database_ca})
                secrets.add(secret)
                tls["secret-tls"] = secret.id
            relations.append(_database(self.user, **tls))
        if peers is not None:
            relations.append(_peers(peers))
        return testing.State(
            leader=leader,
            relations=relations,
            secrets=secrets,
            containers={_container(self.image, self.tmp_path)},
            config={"tables": "public.customers", **(config or {})},
            resources={self.enrichment(enrichment)},
        )


@pytest.fixture
def world(image: Path, tmp_path: Path) -> World:
    return World(image, tmp_path)


def _files(world: World) -> Path:
    return world.tmp_path / "cdc"


def _runner_options(service: dict[str, Any]) -> dict[str, str]:
    """The options a service's function-localrunner gets after its config; "" for a flag alone."""
    shell, dash_c, script = shlex.split(service["command"])
    words = shlex.split(script)
    runner = words.index("exec") + 1  # after what the shell does first (the source exports its password)
    assert [shell, dash_c, words[runner]] == ["/bin/sh", "-c", "/pulsar/bin/function-localrunner"]
    options = words[runner + 3 :]  # after the config flag and its "$(cat <config file>)"
    return {
        word: "" if following.startswith("--") else following
        for word, following in zip(options, [*options[1:], "--"], strict=True)
        if word.startswith("--")
    }


def _run_script(world: World, service: dict[str, Any]) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run a planned service's command in a real /bin/sh, as Pebble would, with nothing in its environment.

    The container's paths are the test's mounts, and its function-localrunner a stand-in that
    writes its PG_PASSWORD and its arguments to the returned directory (only if it runs).
    """
    record = world.tmp_path / "runner-record"
    record.mkdir(exist_ok=True)
    runner = world.image / "bin" / "function-localrunner"
    runner.write_text(
        '#!/bin/sh\nprintf %s "${PG_PASSWORD-unset}" > "$RECORD/password"\nprintf "%s\\n" "$@" > "$RECORD/args"\n'
    )
    runner.chmod(0o755)
    shell, dash_c, script = shlex.split(service["command"])
    script = script.replace("/pulsar/", f"{world.image}/").replace("/var/lib/cdc/", f"{_files(world)}/")
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RECORD": str(record)}
    ran = subprocess.run([shell, dash_c, script], env=environment, capture_output=True, text=True, timeout=30)
    return ran, record


def _with_grant(state: testing.State, grant: testing.Relation) -> tuple[testing.State, testing.Relation]:
    """`state` with pulsar-k8s's grant replaced (our side of the relation kept), and that relation."""
    pulsar = dataclasses.replace(state.get_relation(grant.id), remote_app_data=grant.remote_app_data)
    return dataclasses.replace(state, relations={pulsar, *(r for r in state.relations if r.id != grant.id)}), pulsar


def test_the_database_request_asks_for_a_superuser_and_the_secret_fields(world: World, server: Server) -> None:
    # When the leader sees the database relation
    out = testing.Context(CdcCharm).run(testing.Context(CdcCharm).on.config_changed(), world.state())

    # Then it asked postgresql-k8s for its database, SUPERUSER (a walsender needs it), and the secret fields
    request = out.get_relation(7).local_app_data
    assert request["database"] == "cdc"
    assert request["extra-user-roles"] == "SUPERUSER"
    assert json.loads(request["requested-secrets"]) == ["username", "password", "tls", "tls-ca", "uris"]
    # and pulsar-k8s for its own namespace
    assert json.loads(out.get_relation(4).local_app_data["namespace"]) == "cdc-k8s/default"


def test_the_leader_runs_source_and_function_as_the_image_user_with_no_secret_on_a_command_line(
    world: World, server: Server
) -> None:
    # Given both relations granted and a database that can replicate
    ctx = testing.Context(CdcCharm)

    # When the config is applied
    out = ctx.run(ctx.on.config_changed(), world.state())

    # Then both services are planned, as the image's non-root user
    plan = out.get_container("cdc").plan.to_dict()["services"]
    assert set(plan) == {"debezium-source", "enrichment-function"}
    for service in plan.values():
        assert (service["user-id"], service["group"]) == (10000, "root")
        assert PASSWORD not in service["command"]
        assert TOKEN not in service["command"]
        assert "--clientAuthParams file:///var/lib/cdc/pulsar-token" in service["command"]
        assert "PG_PASSWORD" not in service["environment"]
    # and the PostgreSQL password is nowhere in the plan
    assert PASSWORD not in str(out.get_container("cdc").plan.to_dict())
    # and the files are rendered: the token and the password private, the password in no other file
    files = _files(world)
    assert (files / "pulsar-token").read_text() == TOKEN  # as it is: no client may send a newline
    assert (files / "pulsar-token").stat().st_mode & 0o777 == 0o600
    assert (files / PASSWORD_FILE).read_text() == PASSWORD
    assert (files / PASSWORD_FILE).stat().st_mode & 0o777 == 0o600
    assert all(PASSWORD not in p.read_text() for p in files.rglob("*") if p.is_file() and p.name != PASSWORD_FILE)
    source = json.loads((files / "source.json").read_text())
    assert source["archive"] == f"/pulsar/connectors/{CONNECTOR}"
    assert source["configs"]["database.hostname"] == "10.1.2.3"
    assert source["configs"]["database.user"] == "relation_id_7"
    assert "class Enrichment" in (files / "function" / "enrichment.py").read_text()
    # and the charm checked the server (and looked for the slot) before starting: as the relation's user
    assert set(server.connected_as) == {"relation_id_7@10.1.2.3:5432/cdc"}
    assert out.unit_status == Status.CAPTURING(tables="public.customers", database="cdc", source="relation")


def test_a_rotated_password_restarts_only_the_source(world: World, server: Server) -> None:
    # Given a running pipeline
    ctx = testing.Context(CdcCharm)
    first = ctx.run(ctx.on.config_changed(), world.state())
    before = first.get_container("cdc").plan.to_dict()["services"]

    # When postgresql-k8s rotates the password (a new revision of its secret)
    rotated = dataclasses.replace(world.user, latest_content={"username": "relation_id_7", "password": "pg-pass-2"})
    state = dataclasses.replace(first, secrets={world.token, rotated})
    out = ctx.run(ctx.on.secret_changed(rotated), state)

    # Then the password file holds the new password, which is in the plan no more than the old one
    assert (_files(world) / PASSWORD_FILE).read_text() == "pg-pass-2"
    plan = out.get_container("cdc").plan.to_dict()
    assert "pg-pass-2" not in str(plan)
    assert PASSWORD not in str(plan)
    # and the source's digest changes (Pebble restarts it on replan, and its shell reads the new
    # file), its command stays; the function's service is as it was
    after = plan["services"]
    source_digest = after["debezium-source"]["environment"]["CDC_CONFIG_DIGEST"]
    assert source_digest != before["debezium-source"]["environment"]["CDC_CONFIG_DIGEST"]
    assert after["debezium-source"]["command"] == before["debezium-source"]["command"]
    assert after["enrichment-function"] == before["enrichment-function"]


def test_the_source_shell_exports_the_password_from_its_file_to_the_runner_only(world: World, server: Server) -> None:
    # Given the pipeline's plan and files
    ctx = testing.Context(CdcCharm)
    out = ctx.run(ctx.on.config_changed(), world.state())
    services = out.get_container("cdc").plan.to_dict()["services"]
    source = services["debezium-source"]

    # When the source's command runs in a shell
    ran, record = _run_script(world, source)

    # Then the runner has the password in its environment, and on no command line: neither the
    # shell's (the plan's command) nor the runner's
    assert ran.returncode == 0, ran.stderr
    assert (record / "password").read_text() == PASSWORD
    assert PASSWORD not in (record / "args").read_text()
    assert "--sourceConfig" in (record / "args").read_text().splitlines()
    assert PASSWORD not in source["command"]

    # When the function's command runs: Then its runner gets no password
    ran, record = _run_script(world, services["enrichment-function"])
    assert ran.returncode == 0, ran.stderr
    assert (record / "password").read_text() == "unset"


def test_a_source_whose_password_file_is_unreadable_fails_instead_of_starting_without_it(
    world: World, server: Server
) -> None:
    # Given the source's plan, and its password file gone
    ctx = testing.Context(CdcCharm)
    out = ctx.run(ctx.on.config_changed(), world.state())
    source = out.get_container("cdc").plan.to_dict()["services"]["debezium-source"]
    (_files(world) / PASSWORD_FILE).unlink()

    # When its command runs in a shell
    ran, record = _run_script(world, source)

    # Then the shell fails, saying which file, and the runner never starts
    assert ran.returncode != 0
    assert PASSWORD_FILE in ran.stderr
    assert not (record / "password").exists()


def test_a_tls_grant_makes_both_runners_verify_the_brokers_against_its_ca(world: World, server: Server) -> None:
    # Given pulsar-k8s serving TLS: it hands out pulsar+ssl:// URLs and the CA of its brokers
    ctx = testing.Context(CdcCharm)

    # When the config is applied
    out = ctx.run(ctx.on.config_changed(), world.state(pulsar_ca=PULSAR_CA))

    # Then the CA is in its own private file
    ca = _files(world) / "pulsar-ca.pem"
    assert ca.read_text() == PULSAR_CA
    assert ca.stat().st_mode & 0o777 == 0o600
    # and both runners connect to the TLS URL, trust that CA by path and check each broker's name
    plan = out.get_container("cdc").plan.to_dict()["services"]
    for service in plan.values():
        options = _runner_options(service)
        assert options["--brokerServiceUrl"] == TLS_SERVICE_URL
        assert {flag: options.get(flag) for flag in TLS_OPTIONS} == TLS_OPTIONS
        assert "--tlsAllowInsecureConnection" not in options
        # the token stays in its file; neither it nor the CA is in the plan
        assert options["--clientAuthParams"] == "file:///var/lib/cdc/pulsar-token"
        assert TOKEN not in json.dumps(service)
        assert "BEGIN CERTIFICATE" not in json.dumps(service)
    assert out.unit_status == Status.CAPTURING(tables="public.customers", database="cdc", source="relation")


def test_the_pulsar_ca_and_the_postgresql_ca_are_separate_files(world: World, server: Server) -> None:
    # Given TLS to both: pulsar-k8s's CA, and postgresql-k8s's, another one
    ctx = testing.Context(CdcCharm)
    database_ca = "-----BEGIN CERTIFICATE-----\nMIIBpostgresqlCA\n-----END CERTIFICATE-----\n"

    # When the config is applied
    out = ctx.run(ctx.on.config_changed(), world.state(pulsar_ca=PULSAR_CA, database_ca=database_ca))

    # Then each CA has its file: Debezium verifies PostgreSQL with one, the runners Pulsar with the other
    files = _files(world)
    assert (files / "pulsar-ca.pem").read_text() == PULSAR_CA
    assert (files / "postgresql-ca.pem").read_text() == database_ca
    configs = json.loads((files / "source.json").read_text())["configs"]
    assert (configs["database.sslmode"], configs["database.sslrootcert"]) == (
        "verify-full",
        "/var/lib/cdc/postgresql-ca.pem",
    )
    source = out.get_container("cdc").plan.to_dict()["services"]["debezium-source"]
    assert _runner_options(source)["--tlsTrustCertFilePath"] == PULSAR_CA_FILE


def test_a_plaintext_grant_removes_a_pulsar_ca_left_from_before(world: World, server: Server) -> None:
    # Given a Pulsar CA file left from before, and pulsar-k8s handing out plaintext URLs and no CA
    ctx = testing.Context(CdcCharm)
    leftover = _files(world) / "pulsar-ca.pem"
    leftover.parent.mkdir(exist_ok=True)
    leftover.write_text(PULSAR_CA)

    # When the config is applied
    out = ctx.run(ctx.on.config_changed(), world.state())

    # Then the file is gone, and neither runner is told of TLS
    assert not leftover.exists()
    for service in out.get_container("cdc").plan.to_dict()["services"].values():
        options = _runner_options(service)
        assert options["--brokerServiceUrl"] == "pulsar://pulsar-k8s-0.pulsar-k8s-endpoints:6650"
        assert not {"--useTls", "--tlsTrustCertFilePath", "--tlsHostNameVerificationEnabled"} & set(options)


def test_back_to_plaintext_the_runners_run_as_if_pulsar_never_had_tls(world: World, server: Server) -> None:
    # Given a pipeline that never saw TLS, then the same pipeline moved to pulsar-k8s over TLS
    ctx = testing.Context(CdcCharm)
    plaintext = ctx.run(ctx.on.config_changed(), world.state()).get_container("cdc").plan.to_dict()["services"]
    running = ctx.run(ctx.on.config_changed(), world.state(pulsar_ca=PULSAR_CA))
    assert running.get_container("cdc").plan.to_dict()["services"] != plaintext

    # When pulsar-k8s hands out plaintext URLs and no CA again (its TLS integration removed)
    state, pulsar = _with_grant(running, _pulsar(world.token))
    out = ctx.run(ctx.on.relation_changed(pulsar), state)

    # Then the CA file is gone and both services are exactly what they were before TLS (digests included)
    assert not (_files(world) / "pulsar-ca.pem").exists()
    assert out.get_container("cdc").plan.to_dict()["services"] == plaintext


def test_a_new_pulsar_ca_restarts_both_runners(world: World, server: Server) -> None:
    # Given a pipeline running against pulsar-k8s over TLS
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state(pulsar_ca=PULSAR_CA))
    before = running.get_container("cdc").plan.to_dict()["services"]

    # When pulsar-k8s hands out another CA (its brokers' certificates are signed by a new one)
    renewed_ca = "-----BEGIN CERTIFICATE-----\nMIIBpulsarCA2\n-----END CERTIFICATE-----\n"
    state, pulsar = _with_grant(running, _pulsar(world.token, renewed_ca))
    out = ctx.run(ctx.on.relation_changed(pulsar), state)

    # Then the file holds the new CA, and each service's digest changes (Pebble restarts it on
    # replan) while its command stays the same
    assert (_files(world) / "pulsar-ca.pem").read_text() == renewed_ca
    after = out.get_container("cdc").plan.to_dict()["services"]
    for name in ("debezium-source", "enrichment-function"):
        assert after[name]["environment"]["CDC_CONFIG_DIGEST"] != before[name]["environment"]["CDC_CONFIG_DIGEST"]
        assert after[name]["command"] == before[name]["command"]


def test_a_non_leader_stands_by(world: World, server: Server) -> None:
    ctx = testing.Context(CdcCharm)
    out = ctx.run(ctx.on.config_changed(), world.state(leader=False))
    assert out.unit_status == Status.STANDBY()
    assert out.get_container("cdc").plan.to_dict().get("services", {}) == {}
    assert server.connected_as == []


@pytest.mark.parametrize(
    ("wal_level", "superuser", "reason"),
    [
        ("replica", True, "the server runs wal_level=replica"),
        ("logical", False, "role relation_id_7 has neither SUPERUSER nor REPLICATION"),
    ],
)
def test_a_database_that_cannot_feed_debezium_blocks_with_the_reason(
    world: World, server: Server, wal_level: str, superuser: bool, reason: str
) -> None:
    # Given a server without logical decoding, or a role that may not replicate
    server.wal_level, server.superuser = wal_level, superuser

    # When the charm reconciles
    ctx = testing.Context(CdcCharm)
    out = ctx.run(ctx.on.config_changed(), world.state())

    # Then it blocks naming the cause and starts nothing
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert reason in out.unit_status.message
    assert out.get_container("cdc").plan.to_dict().get("services", {}) == {}


def test_bad_config_blocks_naming_the_option_and_leaves_the_pipeline_alone(world: World, server: Server) -> None:
    # Given a running pipeline
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state())
    plan = running.get_container("cdc").plan.to_dict()
    source = (_files(world) / "source.json").read_text()

    # When the user sets a snapshot mode Debezium does not have
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(running, config={"snapshot-mode": "sometimes"}))

    # Then the unit blocks naming the option, and nothing of the pipeline changed
    assert out.unit_status == ops.BlockedStatus(
        "invalid config snapshot-mode: 'sometimes' is not one of initial, initial_only, never, always, exported"
    )
    assert out.get_container("cdc").plan.to_dict() == plan
    assert (_files(world) / "source.json").read_text() == source


def test_without_credentials_yet_the_unit_waits(world: World, server: Server) -> None:
    ctx = testing.Context(CdcCharm)
    state = world.state(database=False)
    state = dataclasses.replace(state, relations={*state.relations, _database(None)})
    out = ctx.run(ctx.on.config_changed(), state)
    assert out.unit_status == Status.NO_DB_CREDENTIALS()


def test_without_either_relation_the_unit_says_what_to_integrate(world: World, server: Server) -> None:
    ctx = testing.Context(CdcCharm)
    state = testing.State(
        leader=True, containers={_container(world.image, world.tmp_path)}, resources={world.enrichment()}
    )
    out = ctx.run(ctx.on.config_changed(), state)
    assert out.unit_status == Status.NO_PULSAR_RELATION()


def test_removing_the_database_relation_drops_the_slot_and_the_publication(world: World, server: Server) -> None:
    # Given a running pipeline
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state())
    server.statements.clear()

    # When the database relation is removed
    out = ctx.run(ctx.on.relation_broken(running.get_relation(7)), running)

    # Then the walsender is stopped, the slot and the publication are dropped, as the pipeline's user
    statements = [text for text, _ in server.statements]
    assert "SELECT pg_terminate_backend(%s)" in statements
    assert ("SELECT pg_drop_replication_slot(%s)", ("cdc_cdc_k8s",)) in server.statements
    assert 'DROP PUBLICATION IF EXISTS "cdc_cdc_k8s_publication"' in statements
    assert server.connected_as[-1] == "relation_id_7@10.1.2.3:5432/cdc"
    # with the password of its file
    assert server.passwords[-1] == PASSWORD
    # and both services are stopped, the source config and the password file removed
    services = out.get_container("cdc").service_statuses
    assert all(status != ops.pebble.ServiceStatus.ACTIVE for status in services.values())
    assert not (_files(world) / "source.json").exists()
    assert not (_files(world) / PASSWORD_FILE).exists()


def test_a_teardown_the_server_refuses_is_said_in_the_status(world: World, server: Server) -> None:
    # Given a running pipeline, and a server that no longer lets its user in
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state())
    server.refuse = 'FATAL:  role "relation_id_7" does not exist'

    # When the database relation is removed
    out = ctx.run(ctx.on.relation_broken(running.get_relation(7)), running)

    # Then the status names the slot left behind and why
    assert out.unit_status == Status.TEARDOWN_FAILED(
        slot="cdc_cdc_k8s", reason='FATAL:  role "relation_id_7" does not exist'
    )
    # and the password file stays, for the next event to try again with
    assert (_files(world) / PASSWORD_FILE).read_text() == PASSWORD


def test_a_teardown_with_no_source_config_left_removes_the_password_file(world: World, server: Server) -> None:
    # Given a pipeline whose source config is gone: nothing says which slot to drop
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state())
    (_files(world) / "source.json").unlink()
    server.statements.clear()

    # When the database relation is removed
    ctx.run(ctx.on.relation_broken(running.get_relation(7)), running)

    # Then nothing is sent to the server, and the password is not kept
    assert server.statements == []
    assert not (_files(world) / PASSWORD_FILE).exists()


def _planned_by_an_earlier_revision(running: testing.State, world: World) -> testing.State:
    """`running` as an earlier revision of the charm left it: the password in the source's environment, no file."""
    container = running.get_container("cdc")
    layers = {}
    for label, layer in container.layers.items():
        content = layer.to_dict()
        if "debezium-source" in content.get("services", {}):
            content["services"]["debezium-source"]["environment"]["PG_PASSWORD"] = PASSWORD
        layers[label] = ops.pebble.Layer(content)
    (_files(world) / PASSWORD_FILE).unlink()
    return dataclasses.replace(running, containers={dataclasses.replace(container, layers=layers)})


def test_upgrading_from_a_plan_with_the_password_moves_it_to_its_file(world: World, server: Server) -> None:
    # Given a source an earlier revision planned with its password in its environment
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state())
    state = _planned_by_an_earlier_revision(running, world)
    assert PASSWORD in str(state.get_container("cdc").plan.to_dict())

    # When the charm is upgraded
    out = ctx.run(ctx.on.upgrade_charm(), state)

    # Then the password is out of the plan, in its file
    assert PASSWORD not in str(out.get_container("cdc").plan.to_dict())
    assert (_files(world) / PASSWORD_FILE).read_text() == PASSWORD


def test_a_source_planned_by_an_earlier_revision_is_torn_down_with_the_password_of_its_plan(
    world: World, server: Server
) -> None:
    # Given a source an earlier revision planned with its password in its environment, and no file yet
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state())
    state = _planned_by_an_earlier_revision(running, world)
    server.passwords.clear()

    # When the database relation is removed before any event rendered the file
    ctx.run(ctx.on.relation_broken(state.get_relation(7)), state)

    # Then the slot is dropped all the same, with the password the source ran with
    assert ("SELECT pg_drop_replication_slot(%s)", ("cdc_cdc_k8s",)) in server.statements
    assert server.passwords
    assert set(server.passwords) == {PASSWORD}


def test_a_user_dropped_after_the_slot_does_not_make_a_done_teardown_fail(world: World, server: Server) -> None:
    # Given a running pipeline, and a provider that drops the relation's user right after the
    # charm dropped the slot (it drops it as the relation ends)
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state())

    def provider_drops_the_user() -> None:
        server.refuse = 'FATAL:  role "relation_id_7" does not exist'

    server.at_drop = provider_drops_the_user

    # When the database relation is removed
    out = ctx.run(ctx.on.relation_broken(running.get_relation(7)), running)

    # Then the slot is gone and the teardown is done: the second look, refused, is no alarm
    assert not server.slot
    assert out.unit_status == Status.NO_DATABASE()
    assert not (_files(world) / "source.json").exists()


USER_MODULE = "class Enrichment:\n    def process(self, value, context):\n        return None\n"


def test_an_attached_enrichment_that_imports_replaces_the_builtin(world: World, server: Server) -> None:
    # Given the user's module, which imports in the workload's Python
    ctx = testing.Context(CdcCharm)
    state = world.state(enrichment=USER_MODULE)
    checked = testing.Exec(["python3", "-c"], return_code=0)
    state = dataclasses.replace(state, containers={_container(world.image, world.tmp_path, execs={checked})})

    # When the charm reconciles (upgrade-charm is what Juju sends for attach-resource)
    ctx.run(ctx.on.upgrade_charm(), state)

    # Then the function runs the user's module, checked as the workload user
    assert (_files(world) / "function" / "enrichment.py").read_text() == USER_MODULE
    check = next(e for e in ctx.exec_history["cdc"] if e.command[:2] == ["python3", "-c"])
    assert (check.user_id, check.group_id) == (10000, 0)


def test_an_enrichment_that_does_not_import_is_refused_and_the_function_keeps_running(
    world: World, server: Server
) -> None:
    # Given a pipeline running the built-in enrichment
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state())
    plan = running.get_container("cdc").plan.to_dict()
    builtin = (_files(world) / "function" / "enrichment.py").read_text()

    # When the user attaches a module whose imports fail in the workload's Python
    broken = "import pandas\nclass Enrichment:\n    def process(self, value, context): ...\n"
    refused = testing.Exec(
        ["python3", "-c"], return_code=1, stderr="it does not import: ModuleNotFoundError: No module named 'pandas'\n"
    )
    before = running.get_container("cdc")
    container = _container(
        world.image, world.tmp_path, execs={refused}, layers=before.layers, service_statuses=before.service_statuses
    )
    state = dataclasses.replace(running, resources={world.enrichment(broken)}, containers={container})
    out = ctx.run(ctx.on.upgrade_charm(), state)

    # Then the unit blocks with the reason, and the running function is untouched
    assert out.unit_status == Status.BAD_ENRICHMENT(
        reason="it does not import: ModuleNotFoundError: No module named 'pandas'"
    )
    assert (_files(world) / "function" / "enrichment.py").read_text() == builtin
    assert out.get_container("cdc").plan.to_dict() == plan
    services = out.get_container("cdc").service_statuses
    assert services["enrichment-function"] == ops.pebble.ServiceStatus.ACTIVE


def test_cdc_status_reports_the_slot_lag_from_the_database_and_the_services(world: World, server: Server) -> None:
    # Given a running pipeline
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state())

    # When the user asks the leader for the pipeline's status
    ctx.run(ctx.on.action("cdc-status"), running)

    # Then it reports the slot's lag as the database counts it, and both services' states
    results = ctx.action_results or {}
    assert results["slot"] == "cdc_cdc_k8s"
    assert results["slot-lag-bytes"] == "2048"
    assert results["source"] == "relation: relation_id_7@10.1.2.3:5432/cdc"
    assert (results["connector"], results["function"]) == ("active", "active")
    # and where the source keeps its offsets (generation 0: the connector's default topic)
    assert results["offset-topic"] == "persistent://cdc-k8s/default/cdc-k8s-source-debezium-offset-topic"


def test_cdc_status_on_a_standby_unit_points_to_the_leader(world: World, server: Server) -> None:
    ctx = testing.Context(CdcCharm)
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("cdc-status"), world.state(leader=False))
    assert failed.value.message == "the leader runs the pipeline: run cdc-status on cdc-k8s/leader"


def test_the_charm_keeps_the_publication_to_exactly_the_configured_tables(world: World, server: Server) -> None:
    # Given a pipeline capturing one table: the charm created the publication for it
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state())
    assert server.publication == [("public", "customers")]

    # When the user adds a table
    out = ctx.run(
        ctx.on.config_changed(), dataclasses.replace(running, config={"tables": "public.customers,sales.orders"})
    )

    # Then the publication publishes both (Debezium would never change it), and the source restarts with both
    assert server.publication == [("public", "customers"), ("sales", "orders")]
    source = json.loads((_files(world) / "source.json").read_text())
    assert source["configs"]["table.include.list"] == "public.customers,sales.orders"
    assert source["configs"]["publication.autocreate.mode"] == "disabled"
    assert out.unit_status == Status.CAPTURING(
        tables="public.customers, sales.orders", database="cdc", source="relation"
    )


def test_the_last_database_unit_departing_tears_down_before_the_relation_ends(world: World, server: Server) -> None:
    # Given a running pipeline
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state())
    server.statements.clear()
    # When the database's last unit departs (remove-relation: the provider drops our user when
    # the relation ends, so this is the last moment our credentials work)
    relation = dataclasses.replace(running.get_relation(7), remote_units_data={})
    state = dataclasses.replace(running, relations={running.get_relation(4), relation})
    out = ctx.run(ctx.on.relation_departed(relation, remote_unit=0, departing_unit="postgresql-k8s/0"), state)

    # Then the slot and the publication are dropped then, and the pipeline stopped
    assert ("SELECT pg_drop_replication_slot(%s)", ("cdc_cdc_k8s",)) in server.statements
    assert 'DROP PUBLICATION IF EXISTS "cdc_cdc_k8s_publication"' in [text for text, _ in server.statements]
    services = out.get_container("cdc").service_statuses
    assert all(status != ops.pebble.ServiceStatus.ACTIVE for status in services.values())


# ---------------------------------------------------------------- the peer state


def test_a_capturing_pipeline_keeps_its_slot_in_the_peer_app_data(world: World, server: Server) -> None:
    # Given a database on which Debezium's slot exists, on timeline 1
    ctx = testing.Context(CdcCharm)

    # When the leader runs the pipeline
    out = ctx.run(ctx.on.config_changed(), world.state(peers={}))

    # Then the peer app data names the slot the capturing pipeline saw, and nothing was lost
    assert out.unit_status == Status.CAPTURING(tables="public.customers", database="cdc", source="relation")
    assert _peer_app_data(out) == {
        **PEER_DEFAULTS,
        "slot-seen": "cdc_cdc_k8s",
        "slot-timeline": 1,
        "source-database": SOURCE,
    }
    # and generation 0 leaves the offset topic to the connector's default
    source = json.loads((_files(world) / "source.json").read_text())
    assert "offset.storage.topic" not in source["configs"]


def test_without_the_peer_relation_yet_the_pipeline_runs_on_the_defaults(world: World, server: Server) -> None:
    # Given a unit's first hooks: no peer relation yet
    ctx = testing.Context(CdcCharm)

    # When the leader runs the pipeline
    out = ctx.run(ctx.on.config_changed(), world.state(peers=None))

    # Then it runs as generation 0, and there is no peer data to write yet
    assert out.unit_status == Status.CAPTURING(tables="public.customers", database="cdc", source="relation")
    source = json.loads((_files(world) / "source.json").read_text())
    assert "offset.storage.topic" not in source["configs"]
    assert not [r for r in out.relations if r.endpoint == "cdc-peers"]


def test_unreadable_peer_data_blocks_and_leaves_the_pipeline_alone(world: World, server: Server) -> None:
    # Given a running pipeline
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state(peers={}))
    plan = running.get_container("cdc").plan.to_dict()
    source = (_files(world) / "source.json").read_text()

    # When its generation does not decode
    peers = dataclasses.replace(_peers({}), local_app_data={"generation": '"two"'})
    state = dataclasses.replace(running, relations={running.get_relation(4), running.get_relation(7), peers})
    out = ctx.run(ctx.on.update_status(), state)

    # Then the unit blocks saying so, and the source keeps its offsets and its config
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert out.unit_status.message.startswith("unreadable peer data, the pipeline is left as it is: ")
    assert "'generation'" in out.unit_status.message
    assert out.get_container("cdc").plan.to_dict() == plan
    assert (_files(world) / "source.json").read_text() == source


# ---------------------------------------------------------------- resnapshot


def _resnapshot(ctx: testing.Context[CdcCharm], confirm: bool = True) -> Any:
    return ctx.on.action("resnapshot", params={"confirm": confirm})


def test_resnapshot_without_confirm_says_what_it_would_do_and_does_nothing(world: World, server: Server) -> None:
    # Given a running pipeline
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state(peers={}))
    server.statements.clear()

    # When the user runs resnapshot without confirm
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("resnapshot"), running)

    # Then it fails saying what it would do, and how to go ahead
    assert "every row of every captured table again, as read events (op: r)" in failed.value.message
    assert "consumers see each row once more" in failed.value.message
    assert "juju run cdc-k8s/leader resnapshot confirm=true" in failed.value.message
    # and nothing was dropped, stopped, or moved to another generation
    assert not [text for text, _ in server.statements if "pg_drop_replication_slot" in text]
    out = failed.value.state
    assert isinstance(out, testing.State)
    assert _peer_app_data(out)["generation"] == 0
    assert set(out.get_container("cdc").service_statuses.values()) == {ops.pebble.ServiceStatus.ACTIVE}


def test_resnapshot_on_a_standby_unit_points_to_the_leader(world: World, server: Server) -> None:
    ctx = testing.Context(CdcCharm)
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(_resnapshot(ctx), world.state(leader=False, peers={}))
    assert failed.value.message == "the leader runs the pipeline: run resnapshot on cdc-k8s/leader"


@pytest.mark.parametrize(
    ("database", "config", "reason"),
    [
        (False, {}, "integrate with postgresql-k8s"),
        (True, {"snapshot-mode": "sometimes"}, "invalid config snapshot-mode"),
    ],
)
def test_resnapshot_without_a_pipeline_fails_saying_what_is_missing(
    world: World, server: Server, database: bool, config: dict[str, str], reason: str
) -> None:
    # Given no database to capture from, or a config the charm cannot read
    state = world.state(database=database, config=config, peers={})

    # When the user runs resnapshot, Then it fails: nothing runs to re-read, and why
    ctx = testing.Context(CdcCharm)
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(_resnapshot(ctx), state)
    assert failed.value.message.startswith("no pipeline runs as configured, nothing to re-read: ")
    assert reason in failed.value.message
    assert server.statements == []


def test_resnapshot_without_credentials_yet_fails(world: World, server: Server) -> None:
    # Given a database relation whose credentials are not shared yet
    ctx = testing.Context(CdcCharm)
    state = world.state(database=False, peers={})
    state = dataclasses.replace(state, relations={*state.relations, _database(None)})

    # When the user runs resnapshot, Then it fails saying what the pipeline waits for
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(_resnapshot(ctx), state)
    assert failed.value.message == (
        "no pipeline runs as configured, nothing to re-read: waiting for postgresql-k8s to share credentials"
    )


def test_resnapshot_before_the_peer_relation_exists_fails_rather_than_lose_the_generation(
    world: World, server: Server
) -> None:
    # Given a running pipeline whose unit has no peer relation yet
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state(peers=None))

    # When the user confirms a resnapshot
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(_resnapshot(ctx), running)

    # Then it fails (a generation it cannot keep would move the source back), and drops nothing
    assert failed.value.message == (
        "the new offsets generation cannot be kept in the peer relation (it is not there yet): try again"
    )
    assert not [text for text, _ in server.statements if "pg_drop_replication_slot" in text]


def test_resnapshot_refuses_while_snapshot_mode_is_never(world: World, server: Server) -> None:
    # Given a pipeline that never snapshots
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state(peers={}, config={"snapshot-mode": "never"}))
    server.statements.clear()

    # When the user asks for a resnapshot
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(_resnapshot(ctx), running)

    # Then it fails naming the option to change first, and drops nothing
    assert failed.value.message == (
        "snapshot-mode is never: Debezium would read nothing again;"
        " set it first with: juju config cdc-k8s snapshot-mode=initial"
    )
    assert not [text for text, _ in server.statements if "pg_drop_replication_slot" in text]


def test_resnapshot_drops_the_slot_and_moves_the_source_to_a_new_offset_topic(world: World, server: Server) -> None:
    # Given a running pipeline that saw its slot
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state(peers={}))
    assert _peer_app_data(running)["slot-seen"] == "cdc_cdc_k8s"
    digest = running.get_container("cdc").plan.services["debezium-source"].environment["CDC_CONFIG_DIGEST"]
    server.statements.clear()

    # When the user confirms a resnapshot (and we look at the services as the slot is dropped)
    at_drop: dict[str, ops.pebble.ServiceStatus] = {}
    with ctx(_resnapshot(ctx, confirm=True), running) as manager:
        container = manager.charm.unit.get_container("cdc")
        server.at_drop = lambda: at_drop.update({n: s.current for n, s in container.get_services().items()})
        out = manager.run()

    # Then the source was stopped before its slot was dropped; the function read on
    assert at_drop == {
        "debezium-source": ops.pebble.ServiceStatus.INACTIVE,
        "enrichment-function": ops.pebble.ServiceStatus.ACTIVE,
    }
    statements = [text for text, _ in server.statements]
    assert "SELECT pg_terminate_backend(%s)" in statements
    assert ("SELECT pg_drop_replication_slot(%s)", ("cdc_cdc_k8s",)) in server.statements
    assert not [text for text in statements if "PUBLICATION" in text and not text.startswith("SELECT")]
    # and the peer app data starts generation 1, with no slot seen yet
    assert _peer_app_data(out) == {**PEER_DEFAULTS, "generation": 1, "source-database": SOURCE}
    # and the source runs again on the new offset topic, where Debezium finds no offset and snapshots
    topic = "persistent://cdc-k8s/default/cdc-k8s-source-debezium-offset-topic-1"
    source = json.loads((_files(world) / "source.json").read_text())
    assert source["configs"]["offset.storage.topic"] == topic
    service = out.get_container("cdc").plan.services["debezium-source"]
    assert service.environment["CDC_CONFIG_DIGEST"] != digest
    assert out.get_container("cdc").service_statuses["debezium-source"] == ops.pebble.ServiceStatus.ACTIVE
    # and the results say the generation, the topic and the tables being re-read
    assert ctx.action_results == {"generation": "1", "offset-topic": topic, "tables": "public.customers"}


def test_a_second_resnapshot_moves_on_to_the_next_generation(world: World, server: Server) -> None:
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state(peers={"generation": 1}))
    assert json.loads((_files(world) / "source.json").read_text())["configs"]["offset.storage.topic"].endswith("-1")

    out = ctx.run(_resnapshot(ctx), running)

    assert _peer_app_data(out)["generation"] == 2
    source = json.loads((_files(world) / "source.json").read_text())
    assert source["configs"]["offset.storage.topic"].endswith("-debezium-offset-topic-2")


def test_a_slot_the_server_will_not_drop_fails_the_resnapshot_and_the_source_runs_as_it_was(
    world: World, server: Server
) -> None:
    # Given a running pipeline, and a server that refuses to drop the slot
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state(peers={}))
    source = (_files(world) / "source.json").read_text()
    server.refuse_drop = "must be superuser or replication role to use replication slots\nDETAIL: more"

    # When the user confirms a resnapshot
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(_resnapshot(ctx), running)

    # Then the action fails with the one-line reason
    assert failed.value.message == (
        "could not drop replication slot cdc_cdc_k8s: must be superuser or replication role to use replication slots"
    )
    # and the generation is as it was, and the source runs again, on the same offsets
    out = failed.value.state
    assert isinstance(out, testing.State)
    assert _peer_app_data(out)["generation"] == 0
    assert (_files(world) / "source.json").read_text() == source
    assert out.get_container("cdc").service_statuses["debezium-source"] == ops.pebble.ServiceStatus.ACTIVE


def test_resnapshot_clears_the_lost_slot_mark(world: World, server: Server) -> None:
    # Given a pipeline that found its slot lost
    ctx = testing.Context(CdcCharm)
    peers = {"slot-seen": "cdc_cdc_k8s", "slot-timeline": 1, "slot-lost": "2025-03-01T10:00:00+00:00"}
    running = ctx.run(ctx.on.config_changed(), world.state(peers=peers))
    assert running.unit_status.name == "active"
    assert "was lost" in running.unit_status.message

    # When the user re-reads the tables
    out = ctx.run(_resnapshot(ctx), running)

    # Then nothing is said lost any more: the pipeline captures from a snapshot
    assert _peer_app_data(out) == {**PEER_DEFAULTS, "generation": 1, "source-database": SOURCE}
    assert out.unit_status == Status.CAPTURING(tables="public.customers", database="cdc", source="relation")


# ---------------------------------------------------------------- a lost slot


def test_a_slot_lost_in_a_failover_is_made_again_and_said_in_the_status(world: World, server: Server) -> None:
    # Given a capturing pipeline that saw its slot, and the errors its source logged so far
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state(peers={}))
    (_files(world) / "source-errors.log").write_text("2025-03-01T10:00:00,000+00:00 Connection refused\n")
    server.statements.clear()

    # When the database fails over: the promoted standby has no slot
    server.slot, server.timeline = False, 2
    before = datetime.now().astimezone()
    out = ctx.run(ctx.on.update_status(), running)

    # Then the charm makes the slot again for Debezium's pgoutput, to stream on from its stored offset
    assert ("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", ("cdc_cdc_k8s",)) in server.statements
    # and the source restarted onto it (what its earlier runs logged is forgotten)
    assert not (_files(world) / "source-errors.log").exists()
    # and the peer app data says when the slot was found lost, on the new timeline
    data = _peer_app_data(out)
    assert (data["slot-seen"], data["slot-timeline"]) == ("cdc_cdc_k8s", 2)
    lost = datetime.fromisoformat(data["slot-lost"])
    assert before.replace(microsecond=0) <= lost <= datetime.now().astimezone()
    # and the status, still active, says what may be missing and how to re-read the tables
    assert out.unit_status == Status.SLOT_LOST(slot="cdc_cdc_k8s", time=data["slot-lost"], app="cdc-k8s")
    assert isinstance(out.unit_status, ops.ActiveStatus)
    assert "juju run cdc-k8s/leader resnapshot confirm=true" in out.unit_status.message

    # When the next event comes
    server.statements.clear()
    again = ctx.run(ctx.on.update_status(), out)

    # Then the loss is not found again: the mark stays as it was
    assert not [text for text, _ in server.statements if "pg_create_logical_replication_slot" in text]
    assert _peer_app_data(again)["slot-lost"] == data["slot-lost"]
    assert again.unit_status == out.unit_status


def test_a_slot_made_again_by_the_source_after_a_failover_is_found_lost_by_the_timeline(
    world: World, server: Server
) -> None:
    # Given a capturing pipeline that saw its slot on timeline 1
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state(peers={}))
    server.statements.clear()

    # When a standby was promoted (timeline 2), and the restarting source already made the slot again
    server.timeline = 2
    out = ctx.run(ctx.on.update_status(), running)

    # Then the charm makes nothing, but says the slot was lost
    assert not [text for text, _ in server.statements if "pg_create_logical_replication_slot" in text]
    data = _peer_app_data(out)
    assert data["slot-timeline"] == 2
    assert out.unit_status == Status.SLOT_LOST(slot="cdc_cdc_k8s", time=data["slot-lost"], app="cdc-k8s")


def test_another_servers_database_starts_a_new_offsets_generation(world: World, server: Server) -> None:
    # Given offsets about another server's database (the credentials now name a new one), whose
    # slot the pipeline had seen; the new server has no such slot
    peers = {"source-database": "6999999999999999999/cdc", "slot-seen": "cdc_cdc_k8s", "slot-timeline": 1}
    server.slot = False
    ctx = testing.Context(CdcCharm)

    # When the leader runs the pipeline against it
    out = ctx.run(ctx.on.config_changed(), world.state(peers=peers))

    # Then a new offsets generation begins: the source finds no offset, reads the tables first,
    # and makes its slot; nothing was lost, so the charm makes none and warns of no gap
    source = json.loads((_files(world) / "source.json").read_text())
    assert source["configs"]["offset.storage.topic"].endswith("-debezium-offset-topic-1")
    assert _peer_app_data(out) == {**PEER_DEFAULTS, "generation": 1, "source-database": SOURCE}
    assert not [text for text, _ in server.statements if "pg_create_logical_replication_slot" in text]
    assert out.unit_status == Status.CAPTURING(tables="public.customers", database="cdc", source="relation")


def test_a_promoted_standby_of_the_same_server_keeps_the_offsets(world: World, server: Server) -> None:
    # Given offsets about this server's database, and a slot seen on timeline 1
    peers = {"source-database": SOURCE, "slot-seen": "cdc_cdc_k8s", "slot-timeline": 1}
    ctx = testing.Context(CdcCharm)

    # When its standby (same system identifier) is promoted, on timeline 2
    server.timeline = 2
    out = ctx.run(ctx.on.config_changed(), world.state(peers=peers))

    # Then the offsets stay (generation 0: they are positions in the same WAL), and the slot's
    # loss is what the status says
    data = _peer_app_data(out)
    assert data["generation"] == 0
    assert data["source-database"] == SOURCE
    assert out.unit_status == Status.SLOT_LOST(slot="cdc_cdc_k8s", time=data["slot-lost"], app="cdc-k8s")


def test_a_slot_missing_on_a_first_start_is_left_to_debezium(world: World, server: Server) -> None:
    # Given a new pipeline: no slot yet, none ever seen
    server.slot = False
    ctx = testing.Context(CdcCharm)

    # When the leader starts it
    out = ctx.run(ctx.on.config_changed(), world.state(peers={}))

    # Then the charm makes no slot (Debezium does, as it starts), and nothing is lost or seen yet
    assert not [text for text, _ in server.statements if "pg_create_logical_replication_slot" in text]
    assert _peer_app_data(out) == {**PEER_DEFAULTS, "source-database": SOURCE}
    assert out.unit_status == Status.CAPTURING(tables="public.customers", database="cdc", source="relation")


def test_a_teardown_forgets_the_slot_and_its_loss(world: World, server: Server) -> None:
    # Given a pipeline that found its slot lost
    ctx = testing.Context(CdcCharm)
    peers = {"slot-seen": "cdc_cdc_k8s", "slot-timeline": 1, "slot-lost": "2025-03-01T10:00:00+00:00"}
    running = ctx.run(ctx.on.config_changed(), world.state(peers=peers))

    # When the database relation is removed
    out = ctx.run(ctx.on.relation_broken(running.get_relation(7)), running)

    # Then the slot is dropped, the state no longer names it, seen or lost, and a source
    # started later snapshots first (the changes the old offsets point into went with the slot)
    assert ("SELECT pg_drop_replication_slot(%s)", ("cdc_cdc_k8s",)) in server.statements
    assert _peer_app_data(out) == {**PEER_DEFAULTS, "generation": 1, "source-database": SOURCE}


# ---------------------------------------------------------------- a failing connector


def test_the_source_logs_its_errors_to_a_small_file_through_its_own_log4j2_config(world: World, server: Server) -> None:
    ctx = testing.Context(CdcCharm)
    out = ctx.run(ctx.on.config_changed(), world.state(peers={}))

    # The source's runner reads the log config the charm renders (the Pulsar scripts' PULSAR_LOG_CONF)
    service = out.get_container("cdc").plan.services["debezium-source"]
    assert service.environment["PULSAR_LOG_CONF"] == "/var/lib/cdc/logging/source-log4j2.yaml"
    assert "PULSAR_LOG_CONF" not in out.get_container("cdc").plan.services["enrichment-function"].environment
    config = yaml.safe_load((_files(world) / "logging" / "source-log4j2.yaml").read_text())["Configuration"]
    assert config["Appenders"]["RollingFile"]["fileName"] == "/var/lib/cdc/source-errors.log"
    assert {"ref": "Errors", "level": "error"} in config["Loggers"]["Root"]["AppenderRef"]


def _failing(running: testing.State, *, service: ops.pebble.ServiceStatus, check: ops.pebble.CheckStatus) -> Any:
    """The running pipeline's state with the source's service and ready check as given."""
    before = running.get_container("cdc")
    checks = {
        dataclasses.replace(info, status=check, failures=0 if check == ops.pebble.CheckStatus.UP else 3)
        if info.name == "source-ready"
        else info
        for info in before.check_infos
    }
    container = dataclasses.replace(
        before, service_statuses={**before.service_statuses, "debezium-source": service}, check_infos=checks
    )
    return dataclasses.replace(running, containers={container})


# As the source's log4j2 config writes them: the time, the root cause, a tab, the message.
ERRORS = (
    "2025-03-01T10:00:00,120+00:00 java.lang.RuntimeException: boom\\r\\n\tSource open produced uncaught exception\n"
    "2025-03-01T10:00:01,350+00:00 org.postgresql.util.PSQLException: FATAL: password authentication failed"
    ' for user "relation_id_7"\\r\\n\t[cdc-k8s/default/cdc-k8s-source:0] Uncaught exception in Java Instance\n'
)
LAST_ERROR = 'org.postgresql.util.PSQLException: FATAL: password authentication failed for user "relation_id_7"'


@pytest.mark.parametrize(
    ("service", "check"),
    [
        (ops.pebble.ServiceStatus.ERROR, ops.pebble.CheckStatus.DOWN),  # exited, Pebble gave up: started again
        (ops.pebble.ServiceStatus.ACTIVE, ops.pebble.CheckStatus.DOWN),  # restarted, not serving since
    ],
)
def test_a_failing_connector_blocks_with_its_last_error(
    world: World, server: Server, service: ops.pebble.ServiceStatus, check: ops.pebble.CheckStatus
) -> None:
    # Given a running pipeline whose source logged errors and does not serve since it last started
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state(peers={}))
    (_files(world) / "source-errors.log").write_text(ERRORS)

    # When the charm hears its ready check fail
    out = ctx.run(ctx.on.update_status(), _failing(running, service=service, check=check))

    # Then the unit blocks with the connector's last error, on one line and without its time
    assert out.unit_status == Status.CONNECTOR_FAILS(error=LAST_ERROR)
    assert isinstance(out.unit_status, ops.BlockedStatus)


def test_a_connector_that_serves_again_is_capturing_whatever_it_logged_before(world: World, server: Server) -> None:
    # Given a source that failed, then came back: Pebble restarted it and it serves
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state(peers={}))
    (_files(world) / "source-errors.log").write_text(ERRORS)
    failing = ctx.run(
        ctx.on.update_status(),
        _failing(running, service=ops.pebble.ServiceStatus.ERROR, check=ops.pebble.CheckStatus.DOWN),
    )
    assert failing.unit_status == Status.CONNECTOR_FAILS(error=LAST_ERROR)

    # When its ready check recovers
    serving = _failing(failing, service=ops.pebble.ServiceStatus.ACTIVE, check=ops.pebble.CheckStatus.UP)
    out = ctx.run(ctx.on.update_status(), serving)

    # Then the pipeline is capturing again
    assert out.unit_status == Status.CAPTURING(tables="public.customers", database="cdc", source="relation")


def test_a_source_restarting_without_errors_is_starting(world: World, server: Server) -> None:
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state(peers={}))
    state = _failing(running, service=ops.pebble.ServiceStatus.ACTIVE, check=ops.pebble.CheckStatus.DOWN)
    out = ctx.run(ctx.on.update_status(), state)
    assert out.unit_status == Status.STARTING(services="debezium-source", source="relation")


def test_a_config_change_forgets_the_errors_of_the_source_it_replaces(world: World, server: Server) -> None:
    # Given a source that fails, with its errors logged
    ctx = testing.Context(CdcCharm)
    running = ctx.run(ctx.on.config_changed(), world.state(peers={}))
    (_files(world) / "source-errors.log").write_text(ERRORS)
    failing = _failing(running, service=ops.pebble.ServiceStatus.ERROR, check=ops.pebble.CheckStatus.DOWN)

    # When the user changes the config, which restarts the source
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(failing, config={"tables": "public.orders"}))

    # Then the new run starts with no error of the old one
    assert not (_files(world) / "source-errors.log").exists()
    assert out.unit_status == Status.STARTING(services="debezium-source", source="relation")
