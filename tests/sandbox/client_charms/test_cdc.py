"""cdc-k8s against pulsar-k8s -n 1, bookie-k8s -n 3 and a real PostgreSQL (the postgresql-k8s test charm).

The tests of this module build on each other in order: one cluster (conftest.py's, shared
with loadgen-k8s), one table's history.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ops
import pytest

from sandbox import Model
from tests.sandbox.conftest import CHARMS, TEST_CHARMS

CDC = "cdc-k8s"
POSTGRESQL = "postgresql-k8s"
CHECKER = Path(__file__).resolve().parents[1] / "cdc_checker.py"
CHECKER_IN_POD = "/tmp/cdc_checker.py"
TOKEN_FILE = "/var/lib/cdc/pulsar-token"
CUSTOMERS = "cdc.public.customers"
ENRICHED = f"{CUSTOMERS}-enriched"
FLOW_TIMEOUT = 240
# A PostgreSQL server no charm runs, beside the test charm's: its port and socket directory.
UNMANAGED: dict[str, Any] = {"port": 5433, "socket_dir": "/tmp/unmanaged"}
UNMANAGED_DATA = "/var/lib/postgresql/data/unmanaged"
SOURCE = "debezium-source"


def _sql(model: Model, statement: str, database: str = "cdc", port: int = 5432, socket_dir: str = "/tmp") -> str:
    """Run SQL as PostgreSQL's superuser in its own container; rows come back unaligned."""
    client = model.pebble(f"{POSTGRESQL}/0", "postgresql")
    process = client.exec(
        [
            "psql",
            "-h",
            socket_dir,
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            database,
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            statement,
        ],
        user="postgres",
        timeout=60,
    )
    stdout, _ = process.wait_output()
    return stdout.strip()


def _grant(model: Model) -> dict[str, Any]:
    """What pulsar-k8s granted cdc-k8s (its library JSON-encodes each value)."""
    return {k: json.loads(v) for k, v in model.relation(CDC, "pulsar-k8s").app_data["pulsar-k8s"].items()}


def _checker(model: Model, request: dict[str, Any]) -> dict[str, Any]:
    """Run cdc_checker.py in the cdc pod with the unit's own token."""
    unit = model.leader(CDC)
    assert unit is not None
    client = model.pebble(unit, "cdc")
    client.push(CHECKER_IN_POD, CHECKER.read_text(), make_dirs=True)
    grant = _grant(model)
    request = {**request, "service_url": grant["service-url"], "token": client.pull(TOKEN_FILE).read().strip()}
    process = client.exec(["python3", CHECKER_IN_POD], stdin=json.dumps(request), timeout=180)
    stdout, _ = process.wait_output()
    answer = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(answer.removeprefix("RESULT "))


def _topic(model: Model, name: str) -> str:
    return f"persistent://{_grant(model)['namespace']}/{name}"


def _read(model: Model, *names: str) -> dict[str, list[dict[str, Any]]]:
    found = _checker(model, {"read": [_topic(model, n) for n in names]})
    return {name: found[_topic(model, name)] for name in names}


def _until(model: Model, what: Callable[[], bool], timeout: float = FLOW_TIMEOUT) -> None:
    """Drive the model until `what` holds (the pipeline works on its own meanwhile)."""
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        model.settle()
        time.sleep(3)


def _source_running(model: Model) -> bool:
    try:
        return model.pebble(f"{CDC}/0", "cdc").get_services(SOURCE)[0].is_running()
    except (ops.pebble.Error, IndexError, OSError):
        return False


def _changes(model: Model) -> list[dict[str, Any]]:
    return [m["value"] for m in _read(model, ENRICHED)[ENRICHED]]


@pytest.fixture(scope="module")
def cluster(pulsar_cluster: Model) -> Iterator[Model]:
    model = pulsar_cluster
    model.deploy(TEST_CHARMS / POSTGRESQL)
    model.deploy(CHARMS / CDC)
    # The database first: the table exists, with two rows, before capture starts.
    model.integrate(CDC, POSTGRESQL)
    model.wait_for_idle([POSTGRESQL], timeout=600)
    _sql(model, "CREATE TABLE public.customers (id int PRIMARY KEY, name text, region text)")
    _sql(model, "INSERT INTO public.customers VALUES (1, 'Ada', 'eu-west'), (2, 'Grace', 'us-east')")
    model.integrate(CDC, "pulsar-k8s")
    model.wait_for_idle(timeout=900)
    yield model
    # The cluster goes on serving the next module: without Pulsar, cdc-k8s stops its pipeline
    model.remove_relation(CDC, "pulsar-k8s")


def test_the_snapshot_then_inserts_updates_and_deletes_arrive_enriched_in_commit_order(cluster: Model) -> None:
    model = cluster
    # Given the snapshot of the two rows there before capture started (the services start
    # after the hooks that plan them: the snapshot says when the source runs)
    _until(model, lambda: len(_changes(model)) >= 2)

    # When rows change after the snapshot
    _sql(model, "INSERT INTO public.customers VALUES (3, 'Edsger', 'eu-west')")
    _sql(model, "UPDATE public.customers SET name = 'Ada L.' WHERE id = 1")
    _sql(model, "DELETE FROM public.customers WHERE id = 2")

    # Then the enriched topic has the snapshot's two reads, then the three changes, in commit order
    _until(model, lambda: len(_changes(model)) >= 5)
    changes = _changes(model)
    assert [(c["op"], (c["after"] or c["before"])["id"]) for c in changes] == [
        ("r", 1),
        ("r", 2),
        ("c", 3),
        ("u", 1),
        ("d", 2),
    ]
    update = changes[3]
    assert update["after"]["name"] == "Ada L."
    assert changes[4]["after"] is None
    # and each carries the enrichment's metadata
    for change in changes:
        metadata = change["metadata"]
        assert metadata["enriched"] is True
        assert metadata["function_name"] == f"{CDC}-enrichment"
        assert metadata["source_lag_ms"] == metadata["processed_at"] - change["source"]["ts_ms"]
    # and the unit says it captures
    status = model.units[f"{CDC}/0"].workload_status
    assert status.name == "active", status.message


def test_a_malformed_message_goes_to_the_dead_letter_topic_with_its_reason(cluster: Model) -> None:
    model = cluster
    # When something that is not a change event lands on the captured table's topic
    _checker(model, {"send": _topic(model, CUSTOMERS), "value": "not json {"})

    # Then it is dead-lettered with the reason, and counted
    _until(model, lambda: bool(_read(model, "cdc.dead-letter")["cdc.dead-letter"]))
    (letter,) = _read(model, "cdc.dead-letter")["cdc.dead-letter"]
    assert letter["value"] == "not json {"
    assert "JSON" in letter["properties"]["reason"]
    leader = model.leader(CDC)
    assert leader is not None
    status = model.run(leader, "cdc-status")
    assert status.status == "completed", status.message
    assert status.results["dead-lettered"] == "1"
    assert int(status.results["slot-lag-bytes"]) >= 0


def test_a_pod_restart_mid_stream_loses_no_change(cluster: Model) -> None:
    model = cluster
    before = len(_changes(model))
    # When the cdc pod is deleted, and rows are written while it is down
    model.restart_pod(f"{CDC}/0", settle=False)
    model.drive_until(lambda m: not _source_running(m), timeout=120)
    _sql(model, "INSERT INTO public.customers SELECT n, 'row ' || n, 'eu-west' FROM generate_series(10, 19) n")
    model.wait_for_idle([CDC], timeout=600)

    # Then every row arrives (at least once: Debezium may repeat the last changes before the stop)
    _until(model, lambda: {10 + i for i in range(10)} <= {c["after"]["id"] for c in _changes(model) if c["op"] == "c"})
    inserted = [c["after"]["id"] for c in _changes(model)[before:] if c["op"] == "c" and c["after"]["id"] >= 10]
    duplicates = len(inserted) - len(set(inserted))
    print(f"duplicates after the restart: {duplicates}")
    # and no table was read again from the start (the source resumed from its stored offset)
    assert not [c for c in _changes(model)[before:] if c["op"] == "r"]


def test_a_second_table_starts_flowing_without_losing_the_first_ones_position(cluster: Model) -> None:
    model = cluster
    _sql(model, "CREATE TABLE public.orders (id int PRIMARY KEY, customer int, total numeric(10, 2))")
    before = len(_changes(model))

    # When the user adds the table to the captured ones
    model.config(CDC, {"tables": "public.customers,public.orders"})
    model.wait_for_idle([CDC], timeout=600)
    _sql(model, "INSERT INTO public.orders VALUES (1, 3, 12.50)")
    _sql(model, "INSERT INTO public.customers VALUES (30, 'Barbara', 'us-east')")

    # Then the new table's changes arrive enriched, decimals as strings
    orders = "cdc.public.orders-enriched"
    _until(model, lambda: bool(_read(model, orders)[orders]))
    (order,) = [m["value"] for m in _read(model, orders)[orders]]
    assert order["after"] == {"id": 1, "customer": 3, "total": "12.50"}
    # and the first table goes on from where it was: the new row, no second snapshot of it
    _until(model, lambda: any(c["after"] and c["after"]["id"] == 30 for c in _changes(model)))
    assert not [c for c in _changes(model)[before:] if c["op"] == "r"]


def test_a_slot_lost_in_a_failover_is_recreated_and_resnapshot_fills_the_gap(cluster: Model) -> None:
    model = cluster
    unit = f"{CDC}/0"
    # Given the primary fails: the source loses its server (stopped here, as it cannot reach
    # it), and the promoted server has no logical slot (before PostgreSQL 17 they do not
    # survive a failover); a row is committed before anything reads from the new primary
    model.pebble(unit, "cdc").stop_services([SOURCE])
    _sql(model, "SELECT pg_drop_replication_slot('cdc_cdc_k8s')")
    _sql(model, "INSERT INTO public.customers VALUES (50, 'Hedy', 'eu-west')")

    # When postgresql-k8s names its new primary
    model.config(POSTGRESQL, {"endpoint-address": "ip"})
    model.wait_for_idle([CDC], timeout=600)

    # Then cdc-k8s recreates the slot, resumes from it, and says a gap is possible
    assert _sql(model, "SELECT slot_name FROM pg_replication_slots") == "cdc_cdc_k8s"
    status = model.units[unit].workload_status
    assert status.name == "active", status.message
    assert "slot cdc_cdc_k8s was lost" in status.message, status.message
    assert "resnapshot confirm=true" in status.message, status.message
    _sql(model, "INSERT INTO public.customers VALUES (51, 'Katherine', 'us-east')")
    _until(model, lambda: any(c["after"] and c["after"]["id"] == 51 for c in _changes(model)))
    # and the row committed in the gap is indeed missing
    assert not [c for c in _changes(model) if c["after"] and c["after"]["id"] == 50]

    # When the user asks to re-read the tables, first without confirming
    refused = model.run(unit, "resnapshot")
    assert refused.status == "failed"
    assert "confirm=true" in refused.message, refused.message
    before = len(_changes(model))
    done = model.run(unit, "resnapshot", {"confirm": True})
    assert done.status == "completed", done.message
    model.wait_for_idle([CDC], timeout=600)

    # Then every row of the table is read again, the one from the gap included, and the status
    # no longer warns of a gap
    _until(model, lambda: any(c["op"] == "r" and c["after"]["id"] == 50 for c in _changes(model)[before:]))
    reread = {c["after"]["id"] for c in _changes(model)[before:] if c["op"] == "r"}
    current = {int(i) for i in _sql(model, "SELECT id FROM public.customers").split()}
    assert current <= reread
    status = model.units[unit].workload_status
    assert status.name == "active", status.message
    assert "lost" not in status.message, status.message
    # and changes go on flowing after the snapshot
    _sql(model, "INSERT INTO public.customers VALUES (52, 'Radia', 'us-east')")
    _until(model, lambda: any(c["op"] == "c" and c["after"]["id"] == 52 for c in _changes(model)))


def test_a_failing_connector_blocks_with_its_error_and_recovers(cluster: Model) -> None:
    model = cluster
    unit = f"{CDC}/0"
    # Given another reader holds the slot (an administrator's pg_recvlogical) while the source is down
    model.pebble(unit, "cdc").stop_services([SOURCE])
    receive = ["pg_recvlogical", "-h", "/tmp", "-U", "postgres", "-d", "cdc", "--slot", "cdc_cdc_k8s", "--start"]
    options = ["-o", "proto_version=1", "-o", "publication_names=cdc_cdc_k8s_publication", "-f", "/dev/null"]
    holder = model.pebble(f"{POSTGRESQL}/0", "postgresql").exec([*receive, *options], user="postgres")
    _until(model, lambda: _sql(model, "SELECT active FROM pg_replication_slots") == "t", timeout=60)

    # When the charm next runs, and starts the source again
    model.update_status_interval = 10
    try:
        model.drive_until(lambda m: m.units[unit].workload_status.name == "blocked", timeout=300)

        # Then the unit is blocked with the connector's own error, on one line
        status = model.units[unit].workload_status
        assert status.message.startswith("the connector fails: "), status.message
        assert "cdc_cdc_k8s" in status.message, status.message
        assert "\n" not in status.message
        print(f"connector error status: {status.message!r}")

        # When the other reader lets go
        holder.send_signal("SIGTERM")
        model.drive_until(lambda m: m.units[unit].workload_status.message.startswith("capturing"), timeout=300)
    finally:
        model.update_status_interval = 300

    # Then the source captures again, from where it was
    _sql(model, "INSERT INTO public.customers VALUES (60, 'Shafi', 'us-east')")
    _until(model, lambda: any(c["op"] == "c" and c["after"]["id"] == 60 for c in _changes(model)))


def test_removing_the_database_relation_frees_the_slot_or_names_it(cluster: Model) -> None:
    model = cluster
    assert _sql(model, "SELECT slot_name FROM pg_replication_slots") == "cdc_cdc_k8s"

    # When the database relation is removed
    model.remove_relation(CDC, POSTGRESQL)
    model.wait_for_idle([CDC], status=None, timeout=300)

    # Then the pipeline stops, and either the slot is gone, or (when postgresql-k8s dropped the
    # relation's user before cdc-k8s could use it, as it does when the relation ends) the unit
    # names the slot left pinning WAL, for the administrator to drop
    assert not _source_running(model)
    status = model.units[f"{CDC}/0"].workload_status
    slots = _sql(model, "SELECT slot_name FROM pg_replication_slots")
    print(f"after remove-relation: slots {slots!r}, status {status.message!r}")
    if slots:
        assert slots == "cdc_cdc_k8s"
        assert status.name == "blocked"
        assert status.message.startswith("replication slot cdc_cdc_k8s may remain and pin WAL"), status.message
        # What the status asks for; the publication (handed to postgres with the user's other
        # objects) pins nothing, but is ours to drop too
        _sql(model, "SELECT pg_drop_replication_slot('cdc_cdc_k8s')")
        _sql(model, "DROP PUBLICATION cdc_cdc_k8s_publication")
    else:
        assert "integrate with postgresql-k8s" in status.message, status.message
        assert _sql(model, "SELECT count(*) FROM pg_publication") == "0"


def test_a_user_secret_points_cdc_at_a_postgresql_no_charm_runs(cluster: Model) -> None:
    model = cluster
    # Given a PostgreSQL that no Juju application runs (started by hand, as an administrator
    # would, beside the test charm's server), a role of its own without replication rights,
    # and tables that role owns
    host = _start_unmanaged_postgresql(model)
    _sql(model, "CREATE ROLE capture LOGIN PASSWORD 'capture-secret-1'", database="postgres", **UNMANAGED)
    _sql(model, "CREATE DATABASE inventory OWNER capture", database="postgres", **UNMANAGED)
    for table in ("customers (id int PRIMARY KEY, name text, region text)", "orders (id int PRIMARY KEY)"):
        _sql(model, f"CREATE TABLE public.{table}", database="inventory", **UNMANAGED)
        _sql(model, f"ALTER TABLE public.{table.split()[0]} OWNER TO capture", database="inventory", **UNMANAGED)
    credentials = {
        "host": host,
        "port": str(UNMANAGED["port"]),
        "database": "inventory",
        "user": "capture",
        "password": "capture-secret-1",
    }
    uri = model.add_secret("pg", credentials)

    # When the user points cdc-k8s at it before granting the secret
    model.config(CDC, {"postgresql-credentials": uri})
    model.wait_for_idle([CDC], status=None, timeout=300)
    # Then cdc-k8s cannot read it, and says how to fix that
    status = model.units[f"{CDC}/0"].workload_status
    assert status.message.startswith("postgresql-credentials: secret not found or not granted"), status.message

    # When the secret is granted: the role may not replicate, and the status names it
    model.grant_secret("pg", CDC)
    model.config(CDC, {"database-name": "unused-with-a-secret"})  # any event: a grant sends none
    model.wait_for_idle([CDC], status=None, timeout=300)
    status = model.units[f"{CDC}/0"].workload_status
    assert "role capture has neither SUPERUSER nor REPLICATION" in status.message, status.message

    # When the database administrator gives the role what Debezium needs, and no more
    _sql(model, "ALTER ROLE capture REPLICATION", database="postgres", **UNMANAGED)
    model.config(CDC, {"database-name": "cdc"})
    model.wait_for_idle([CDC], timeout=600)

    # Then changes of that server flow, through the secret's credentials
    _sql(model, "INSERT INTO public.customers VALUES (40, 'Frances', 'eu-west')", database="inventory", **UNMANAGED)
    _until(model, lambda: any(c["after"] and c["after"]["id"] == 40 for c in _changes(model)))
    status = model.units[f"{CDC}/0"].workload_status
    assert status.message == "capturing public.customers, public.orders from inventory (secret source)", status.message

    # When the administrator rotates the role's password, and the secret with it
    before = len(_changes(model))
    _sql(model, "ALTER ROLE capture PASSWORD 'capture-secret-2'", database="postgres", **UNMANAGED)
    model.update_secret("pg", {**credentials, "password": "capture-secret-2"})
    model.wait_for_idle([CDC], timeout=600)

    # Then the source goes on with the new password from where it was: no table is read again
    _sql(model, "INSERT INTO public.customers VALUES (41, 'Mary', 'us-east')", database="inventory", **UNMANAGED)
    _until(model, lambda: any(c["after"] and c["after"]["id"] == 41 for c in _changes(model)))
    assert not [c for c in _changes(model)[before:] if c["op"] == "r"]

    # When the user stops pointing cdc-k8s at that database
    model.config(CDC, reset=["postgresql-credentials"])
    model.wait_for_idle([CDC], status=None, timeout=300)

    # Then the slot and the publication are dropped (these credentials still work), the
    # pipeline is stopped, and the unit says what it needs
    assert _sql(model, "SELECT count(*) FROM pg_replication_slots", database="postgres", **UNMANAGED) == "0"
    assert _sql(model, "SELECT count(*) FROM pg_publication", database="inventory", **UNMANAGED) == "0"
    assert not _source_running(model)
    status = model.units[f"{CDC}/0"].workload_status
    assert "integrate with postgresql-k8s" in status.message, status.message


def _start_unmanaged_postgresql(model: Model) -> str:
    """A second PostgreSQL server in the test charm's pod, which no charm knows of; its address."""
    client = model.pebble(f"{POSTGRESQL}/0", "postgresql")
    for directory in (UNMANAGED_DATA, UNMANAGED["socket_dir"]):
        client.make_dir(directory, make_parents=True, permissions=0o700, user="postgres", group="postgres")
    initdb = ["initdb", "-D", UNMANAGED_DATA, "-U", "postgres", "--auth-local=peer", "--auth-host=scram-sha-256"]
    client.exec([*initdb, "--encoding=UTF8", "--locale=C.UTF-8"], user="postgres", timeout=120).wait_output()
    # Password logins from the pods' network, as an administrator opens a server to its clients
    hba = "local all all peer\nhost all all 0.0.0.0/0 scram-sha-256\n"
    client.push(f"{UNMANAGED_DATA}/pg_hba.conf", hba, permissions=0o600, user="postgres", group="postgres")
    settings = {
        "port": UNMANAGED["port"],
        "listen_addresses": "*",
        "unix_socket_directories": UNMANAGED["socket_dir"],
        "wal_level": "logical",
    }
    command = f"postgres -D {UNMANAGED_DATA} " + " ".join(f"-c {k}={v}" for k, v in settings.items())
    layer: ops.pebble.LayerDict = {
        "services": {
            "unmanaged-postgresql": {"override": "replace", "command": command, "user": "postgres", "group": "postgres"}
        }
    }
    client.add_layer("unmanaged", layer, combine=True)
    client.start_services(["unmanaged-postgresql"])
    deadline = time.monotonic() + 60
    while True:
        try:
            _sql(model, "SELECT 1", database="postgres", **UNMANAGED)
            return model.address(f"{POSTGRESQL}/0")
        except ops.pebble.ExecError:
            assert time.monotonic() < deadline, "the unmanaged PostgreSQL did not start"
            time.sleep(1)
