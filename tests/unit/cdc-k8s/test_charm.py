"""cdc-k8s with ops.testing: both handshakes, the pipeline's layer and files, refusals, teardown.

PostgreSQL itself is not here: `readiness` and the teardown's statements go to a recorder that
answers like a server would (the sandbox tests run against a real one).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import ops
import pytest
from ops import testing

from cdc_k8s import replication
from cdc_k8s.charm import CdcCharm
from cdc_k8s.literals import Status

TOKEN = "eyJhbGciOiJIUzI1NiJ9.cdc"
PASSWORD = "pg-pass-1"
CONNECTOR = "pulsar-io-debezium-postgres-4.0.8.nar"


class Server:
    """Stands in for PostgreSQL: answers the charm's queries, records every statement."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []
        self.connected_as: list[str] = []
        self.wal_level = "logical"
        self.superuser = True
        self.slot_pid: int | None = 4242
        self.slot_lag = 2048
        self.publication: list[tuple[str, ...]] | None = None  # the tables it publishes
        self.refuse: str | None = None

    def connect(self, **options: Any) -> Connection:
        if self.refuse:
            raise replication.psycopg.OperationalError(self.refuse)
        self.connected_as.append(f"{options['user']}@{options['host']}:{options['port']}/{options['dbname']}")
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
            return Result([(self.server.slot_pid,)])
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


def _pulsar(token_secret: testing.Secret) -> testing.Relation:
    grant = {
        "service-url": "pulsar://pulsar-k8s-0.pulsar-k8s-endpoints:6650",
        "web-service-url": "http://pulsar-k8s-0.pulsar-k8s-endpoints:8080",
        "namespace": "cdc-k8s/default",
        "role": "pulsar-k8s-client-4",
        "secret-credentials": token_secret.id,
    }
    return testing.Relation(
        "pulsar", remote_app_name="pulsar-k8s", remote_app_data={k: json.dumps(v) for k, v in grant.items()}, id=4
    )


def _database(user_secret: testing.Secret | None, **offer: str) -> testing.Relation:
    data = {"endpoints": "10.1.2.3:5432", "database": "cdc", "version": "14.15"}
    if user_secret is not None:
        data["secret-user"] = user_secret.id
    return testing.Relation("database", remote_app_name="postgresql-k8s", remote_app_data={**data, **offer}, id=7)


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

    def state(self, *, leader: bool = True, database: bool = True, enrichment: str = "") -> testing.State:
        relations = [_pulsar(self.token)]
        if database:
            relations.append(_database(self.user))
        return testing.State(
            leader=leader,
            relations=relations,
            secrets={self.token, self.user},
            containers={_container(self.image, self.tmp_path)},
            config={"tables": "public.customers"},
            resources={self.enrichment(enrichment)},
        )


@pytest.fixture
def world(image: Path, tmp_path: Path) -> World:
    return World(image, tmp_path)


def _files(world: World) -> Path:
    return world.tmp_path / "cdc"


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
    assert plan["debezium-source"]["environment"]["PG_PASSWORD"] == PASSWORD
    assert "PG_PASSWORD" not in plan["enrichment-function"]["environment"]
    # and the files are rendered: the token private, no password in any file
    files = _files(world)
    assert (files / "pulsar-token").read_text() == TOKEN + "\n"
    assert (files / "pulsar-token").stat().st_mode & 0o777 == 0o600
    assert all(PASSWORD not in p.read_text() for p in files.rglob("*") if p.is_file())
    source = json.loads((files / "source.json").read_text())
    assert source["archive"] == f"/pulsar/connectors/{CONNECTOR}"
    assert source["configs"]["database.hostname"] == "10.1.2.3"
    assert source["configs"]["database.user"] == "relation_id_7"
    assert "class Enrichment" in (files / "function" / "enrichment.py").read_text()
    # and the charm checked the server before starting: as the relation's user
    assert server.connected_as == ["relation_id_7@10.1.2.3:5432/cdc"]
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

    # Then the source's service changes (Pebble restarts it on replan), the function's does not
    after = out.get_container("cdc").plan.to_dict()["services"]
    assert after["debezium-source"]["environment"]["PG_PASSWORD"] == "pg-pass-2"
    assert after["enrichment-function"] == before["enrichment-function"]


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
    # and both services are stopped, the source config forgotten
    services = out.get_container("cdc").service_statuses
    assert all(status != ops.pebble.ServiceStatus.ACTIVE for status in services.values())
    assert not (_files(world) / "source.json").exists()


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
