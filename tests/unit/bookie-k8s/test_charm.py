"""bookie-k8s: bring-up gated on the bookkeeper relation and initialized metadata."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import ops
import pytest
from helpers.bookie_k8s_builders import CREDENTIALS, PROVIDER_DATA, URI
from helpers.pulsar_k8s_builders import CHOWN
from ops import pebble, testing

from bookie_k8s.charm import BookieCharm
from bookie_k8s.literals import Status
from bookie_k8s.workload import BookieWorkload

FQDN = "bookie-k8s-0.bookie-k8s-endpoints.test.svc.cluster.local"
RUNNING = pebble.Layer({"services": {"bookie": {"override": "replace", "command": "/pulsar/bin/pulsar bookie"}}})


@pytest.fixture
def ctx() -> testing.Context:
    return testing.Context(BookieCharm, app_name="bookie-k8s", unit_id=0)


@pytest.fixture
def bookie(pulsar_image: Path, tmp_path: Path) -> testing.Container:
    conf = tmp_path / "conf"
    conf.mkdir()
    mounts = {
        "image": testing.Mount(location="/pulsar/lib", source=pulsar_image / "lib"),
        "conf": testing.Mount(location="/pulsar/conf", source=conf),
    }
    # Juju storage, mounted owned by root.
    for storage in ("journal", "ledgers"):
        (tmp_path / storage).mkdir()
        mounts[storage] = testing.Mount(location=f"/var/lib/bookkeeper/{storage}", source=tmp_path / storage)
    return testing.Container("bookie", can_connect=True, mounts=mounts, execs={CHOWN})


def _state(
    container: testing.Container,
    relation: testing.Relation | None = None,
    peers: testing.PeerRelation | None = None,
    **kwargs: object,
) -> testing.State:
    peers = peers or testing.PeerRelation("bookies")
    kwargs.setdefault("secrets", {CREDENTIALS})
    return testing.State(
        containers={container},
        relations={relation, peers} if relation else {peers},
        model=testing.Model("test"),
        **kwargs,  # type: ignore[arg-type]
    )


def test_asks_to_integrate_with_pulsar(ctx: testing.Context, bookie: testing.Container) -> None:
    # When Pebble becomes ready on a bookie with no bookkeeper relation
    out = ctx.run(ctx.on.pebble_ready(bookie), _state(bookie))

    # Then the unit tells the user what to integrate with, and starts nothing
    assert out.unit_status == Status.NO_BOOKKEEPER_RELATION()
    assert "juju integrate bookie-k8s pulsar-k8s" in out.unit_status.message
    assert out.get_container("bookie").plan.services == {}


def test_waits_for_metadata_and_announces_itself(ctx: testing.Context, bookie: testing.Container) -> None:
    # Given a relation whose provider has not initialized the cluster yet
    relation = testing.Relation(
        "bookkeeper", remote_app_name="pulsar-k8s", remote_app_data={"metadata-service-uri": json.dumps(URI)}
    )

    # When the relation changes
    out = ctx.run(ctx.on.relation_changed(relation), _state(bookie, relation))

    # Then it waits, starts nothing, and publishes its stable id as not ready
    assert out.unit_status == Status.WAITING_FOR_METADATA()
    assert out.get_container("bookie").plan.services == {}
    assert json.loads(out.get_relation(relation.id).local_unit_data["bookie-id"]) == f"{FQDN}:3181"
    assert out.get_relation(relation.id).local_unit_data["ready"] == "false"


def test_starts_the_bookie_once_metadata_exists(
    ctx: testing.Context, bookie: testing.Container, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given initialized metadata, and a bookie process that is not ready yet
    monkeypatch.setattr(BookieWorkload, "ready", lambda self: False)
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s", remote_app_data=PROVIDER_DATA)

    # When the relation changes
    out = ctx.run(ctx.on.relation_changed(relation), _state(bookie, relation))

    # Then bookkeeper.conf is rendered with the FQDN as bookie id and the provider's URI
    conf = (tmp_path / "conf" / "bookkeeper.conf").read_text()
    assert f"advertisedAddress={FQDN}\n" in conf
    assert f"metadataServiceUri={URI}\n" in conf
    assert "journalDirectories=/var/lib/bookkeeper/journal\n" in conf
    assert "autoRecoveryDaemonEnabled=true\n" in conf
    # And Pebble runs the bookie with the configured memory, checked on its readiness endpoint
    plan = out.get_container("bookie").plan
    assert plan.services["bookie"].command == "/pulsar/bin/pulsar bookie"
    assert plan.services["bookie"].environment["PULSAR_MEM"] == "-Xms512m -Xmx512m -XX:MaxDirectMemorySize=512m"
    assert plan.checks["bookie-ready"].http == {"url": "http://localhost:8000/api/v1/bookie/is_ready"}
    # And Pebble restarts a bookie that stopped itself but left its JVM running
    assert plan.checks["bookie-alive"].level == pebble.CheckLevel.ALIVE
    assert plan.checks["bookie-alive"].exec is not None
    assert "/api/v1/bookie/state" in plan.checks["bookie-alive"].exec["command"]
    assert plan.services["bookie"].on_check_failure == {"bookie-alive": "restart"}
    assert out.unit_status == Status.STARTING()
    assert out.get_relation(relation.id).local_unit_data["ready"] == "false"


def test_reports_ready_when_the_bookie_is(
    ctx: testing.Context, bookie: testing.Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a bookie whose readiness endpoint answers
    monkeypatch.setattr(BookieWorkload, "ready", lambda self: True)
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s", remote_app_data=PROVIDER_DATA)

    # When its readiness check recovers
    out = ctx.run(ctx.on.update_status(), _state(bookie, relation))

    # Then it is active, publishes ready, and opens the bookie port
    assert out.unit_status == Status.ACTIVE(bookie_id=f"{FQDN}:3181")
    assert out.get_relation(relation.id).local_unit_data["ready"] == "true"
    assert out.opened_ports == {testing.TCPPort(3181)}


def test_waits_for_its_credentials_before_starting(ctx: testing.Context, bookie: testing.Container) -> None:
    # Given initialized metadata whose credentials secret is not granted (yet)
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s", remote_app_data=PROVIDER_DATA)

    # When the relation changes
    out = ctx.run(ctx.on.relation_changed(relation), _state(bookie, relation, secrets=set()))

    # Then it waits, starts nothing, and says it is not ready
    assert out.unit_status == Status.WAITING_FOR_CREDENTIALS()
    assert out.get_container("bookie").plan.services == {}
    assert out.get_relation(relation.id).local_unit_data["ready"] == "false"


def test_credentials_missing_a_key_block_the_unit(ctx: testing.Context, bookie: testing.Container) -> None:
    # Given a credentials secret without the BookKeeper password
    content = {k: v for k, v in CREDENTIALS.tracked_content.items() if k != "bookkeeper-password"}
    broken = dataclasses.replace(CREDENTIALS, tracked_content=content, latest_content=content)
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s", remote_app_data=PROVIDER_DATA)

    # When the relation changes
    out = ctx.run(ctx.on.relation_changed(relation), _state(bookie, relation, secrets={broken}))

    # Then the unit is blocked with the reason, and starts nothing
    assert out.unit_status == Status.INVALID_CREDENTIALS(error="credentials secret lacks bookkeeper-password")
    assert out.get_container("bookie").plan.services == {}


def test_the_bookie_authenticates_and_keeps_its_admin_api_in_the_pod(
    ctx: testing.Context, bookie: testing.Container, tmp_path: Path
) -> None:
    # Given initialized metadata and the credentials pulsar-k8s granted
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s", remote_app_data=PROVIDER_DATA)

    # When the relation changes
    out = ctx.run(ctx.on.relation_changed(relation), _state(bookie, relation))

    # Then the bookie accepts SASL-authenticated clients only, and its admin API listens on localhost
    conf = (tmp_path / "conf" / "bookkeeper.conf").read_text()
    assert "bookieAuthProviderFactoryClass=org.apache.bookkeeper.sasl.SASLBookieAuthProviderFactory\n" in conf
    assert "clientAuthProviderFactoryClass=org.apache.bookkeeper.sasl.SASLClientProviderFactory\n" in conf
    assert "httpServerHost=127.0.0.1\nhttpServerPort=8000\n" in conf
    # And the passwords are in a 0600 JAAS file, named by path only in the plan
    jaas = tmp_path / "conf" / "jaas.conf"
    assert jaas.stat().st_mode & 0o777 == 0o600
    text = jaas.read_text()
    assert 'username="bookie"\n    password="zk-pw";' in text
    assert 'user_bookkeeper="bk-pw";' in text
    assert text.count('username="bookkeeper"\n    password="bk-pw";') == 2  # BookKeeper and Auditor
    service = out.get_container("bookie").plan.services["bookie"]
    assert (
        service.environment["PULSAR_EXTRA_OPTS"]
        == "-Dpulsar.allocator.exit_on_oom=true -Dio.netty.recycler.maxCapacityPerThread=4096 "
        "-Djava.security.auth.login.config=/pulsar/conf/jaas.conf -Dzookeeper.fips-mode=false"
    )
    assert "pw" not in str(out.get_container("bookie").plan.to_dict())
    # And the bookie runs as the image's user, which is given the storage
    assert (service.user_id, service.group) == (10000, "root")
    chowns = [e.command for e in ctx.exec_history["bookie"] if e.command[0] == "chown"]
    assert chowns == [
        ["chown", "-R", "10000:0", "/var/lib/bookkeeper/journal"],
        ["chown", "-R", "10000:0", "/var/lib/bookkeeper/ledgers"],
    ]


def test_the_application_status_counts_the_ready_bookies_of_the_peers(
    ctx: testing.Context, bookie: testing.Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the leader, ready, and two peers of which one said it was ready
    monkeypatch.setattr(BookieWorkload, "ready", lambda self: True)
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s", remote_app_data=PROVIDER_DATA)
    peers = testing.PeerRelation("bookies", peers_data={1: {"ready": "true"}, 2: {"ready": "false"}})

    # When it reconciles
    out = ctx.run(ctx.on.update_status(), _state(bookie, relation, peers, leader=True))

    # Then it records its own readiness, and the application counts 2 of 3
    assert out.get_relation(peers.id).local_unit_data["ready"] == "true"
    assert out.app_status == Status.APP_DEGRADED(ready=2, total=3)


@pytest.mark.parametrize(("option", "value"), [("bookie-heap", "lots"), ("direct-memory", "0m")])
def test_invalid_config_blocks_and_leaves_the_workload_alone(
    ctx: testing.Context, bookie: testing.Container, option: str, value: str
) -> None:
    # Given a running bookie
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s", remote_app_data=PROVIDER_DATA)
    layer = testing.Container(
        "bookie",
        can_connect=True,
        layers={"bookie": RUNNING},
        mounts=bookie.mounts,
        execs=bookie.execs,
    )

    # When the user sets a bad value
    out = ctx.run(ctx.on.config_changed(), _state(layer, relation, config={option: value}))

    # Then the unit is blocked naming the option, and the plan is untouched
    assert out.unit_status == Status.INVALID_CONFIG(
        error=f"invalid config {option}: {value!r} (a size such as 512m or 2g)"
    )
    assert out.get_container("bookie").plan.to_dict() == layer.plan.to_dict()


def test_relation_broken_goes_back_to_asking(ctx: testing.Context, bookie: testing.Container) -> None:
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s", remote_app_data=PROVIDER_DATA)
    out = ctx.run(ctx.on.relation_broken(relation), _state(bookie, relation))
    assert out.unit_status == Status.NO_BOOKKEEPER_RELATION()


def _running_bookie(bookie: testing.Container) -> testing.Container:
    """A bookie started with an older definition than the charm renders now."""
    return testing.Container(
        "bookie",
        can_connect=True,
        layers={"bookie": RUNNING},
        mounts=bookie.mounts,
        execs=bookie.execs,
        service_statuses={"bookie": pebble.ServiceStatus.ACTIVE},
    )


def test_a_changed_bookie_waits_while_another_restarts(
    ctx: testing.Context, bookie: testing.Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a running bookie whose config changed, while bookie-k8s/1 holds the restart lock
    monkeypatch.setattr(BookieWorkload, "ready", lambda self: True)
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s", remote_app_data=PROVIDER_DATA)
    peers = testing.PeerRelation(
        "bookies",
        local_app_data={"restart-holder": '"bookie-k8s/1"'},
        peers_data={1: {"restart-request": '{"phase": "restarted", "services": ["bookie"]}'}},
    )
    container = _running_bookie(bookie)

    # When it reconciles
    out = ctx.run(ctx.on.config_changed(), _state(container, relation, peers, config={"bookie-heap": "1g"}))

    # Then it asks for the lock, says whom it waits for, and keeps serving as it was
    assert out.unit_status == Status.RESTART_HELD(holder="bookie-k8s/1")
    assert json.loads(out.get_relation(peers.id).local_unit_data["restart-request"]) == {
        "phase": "waiting",
        "services": ["bookie"],
    }
    assert out.get_container("bookie").plan.to_dict() == container.plan.to_dict()
    assert out.get_relation(relation.id).local_unit_data["ready"] == "true"


def test_the_leader_restarts_its_bookie_when_the_lock_is_free(
    ctx: testing.Context, bookie: testing.Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the leader, whose bookie runs an older definition, and nobody else restarting
    monkeypatch.setattr(BookieWorkload, "ready", lambda self: False)
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s", remote_app_data=PROVIDER_DATA)
    container = _running_bookie(bookie)

    # When it reconciles
    out = ctx.run(ctx.on.config_changed(), _state(container, relation, leader=True))

    # Then it takes the lock, applies the new plan, and holds the lock until the bookie is ready
    peers = out.get_relations("bookies")[0]
    assert json.loads(peers.local_app_data["restart-holder"]) == "bookie-k8s/0"
    assert json.loads(peers.local_unit_data["restart-request"]) == {"phase": "restarted", "services": ["bookie"]}
    assert out.get_container("bookie").plan.services["bookie"].environment["PULSAR_MEM"].startswith("-Xms512m")
    assert out.unit_status == Status.STARTING()

    # When the bookie is ready again and its readiness check recovers
    monkeypatch.setattr(BookieWorkload, "ready", lambda self: True)
    out = ctx.run(ctx.on.update_status(), out)

    # Then the lock is free for the next bookie
    peers = out.get_relations("bookies")[0]
    assert "restart-request" not in peers.local_unit_data
    assert "restart-holder" not in peers.local_app_data
    assert out.unit_status == Status.ACTIVE(bookie_id=f"{FQDN}:3181")


def test_a_lock_holder_that_was_removed_hands_the_lock_on(
    ctx: testing.Context, bookie: testing.Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the leader, with bookie-k8s/2 holding the restart lock and bookie-k8s/1 waiting for it
    # (the leader's own bookie runs an older definition too)
    monkeypatch.setattr(BookieWorkload, "ready", lambda self: True)
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s", remote_app_data=PROVIDER_DATA)
    waiting = {"restart-request": '{"phase": "waiting", "services": ["bookie"]}'}
    peers = testing.PeerRelation(
        "bookies",
        local_app_data={"restart-holder": '"bookie-k8s/2"'},
        peers_data={1: waiting, 2: {"restart-request": '{"phase": "restarted", "services": ["bookie"]}'}},
    )
    state = _state(_running_bookie(bookie), relation, peers, leader=True, planned_units=2)

    # When bookie-k8s/2 is removed before it served again (its pod gone for good)
    gone = dataclasses.replace(peers, peers_data={1: waiting})
    state = dataclasses.replace(state, relations={relation, gone})
    out = ctx.run(ctx.on.relation_departed(gone, remote_unit=2, departing_unit=2), state)

    # Then the leader hands the lock to the unit that waited for it, and waits its own turn
    assert json.loads(out.get_relation(peers.id).local_app_data["restart-holder"]) == "bookie-k8s/1"
    assert out.unit_status == Status.RESTART_HELD(holder="bookie-k8s/1")


@pytest.fixture
def pebble_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every replan and restart the charm asks Pebble for, in order."""
    calls: list[str] = []
    replan, restart = ops.Container.replan, ops.Container.restart

    def recorded_replan(self: ops.Container) -> None:
        calls.append("replan")
        replan(self)

    def recorded_restart(self: ops.Container, *services: str) -> None:
        calls.append("restart " + " ".join(services))
        restart(self, *services)

    monkeypatch.setattr(ops.Container, "replan", recorded_replan)
    monkeypatch.setattr(ops.Container, "restart", recorded_restart)
    return calls


def test_a_changed_layer_restarts_the_bookie_once(
    ctx: testing.Context, bookie: testing.Container, monkeypatch: pytest.MonkeyPatch, pebble_calls: list[str]
) -> None:
    # Given the leader, whose bookie runs an older Pebble definition
    monkeypatch.setattr(BookieWorkload, "ready", lambda self: False)
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s", remote_app_data=PROVIDER_DATA)

    # When it reconciles
    out = ctx.run(ctx.on.config_changed(), _state(_running_bookie(bookie), relation, leader=True))

    # Then the replan that applies the new layer is the bookie's only restart
    assert pebble_calls == ["replan"]
    assert out.get_container("bookie").plan.services["bookie"].command == "/pulsar/bin/pulsar bookie"


def test_a_changed_config_file_restarts_the_bookie_once(
    ctx: testing.Context, bookie: testing.Container, monkeypatch: pytest.MonkeyPatch, pebble_calls: list[str]
) -> None:
    # Given a running bookie started by the charm, as the leader
    monkeypatch.setattr(BookieWorkload, "ready", lambda self: True)
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s", remote_app_data=PROVIDER_DATA)
    started = ctx.run(ctx.on.config_changed(), _state(bookie, relation, leader=True))
    assert started.unit_status == Status.ACTIVE(bookie_id=f"{FQDN}:3181")
    pebble_calls.clear()

    # When the metadata store moves (bookkeeper.conf changes, the layer does not)
    moved = dataclasses.replace(
        started.get_relation(relation.id),
        remote_app_data={**PROVIDER_DATA, "metadata-service-uri": json.dumps(URI.replace("2181", "2182"))},
    )
    others = {r for r in started.relations if r.id != relation.id}
    out = ctx.run(ctx.on.relation_changed(moved), dataclasses.replace(started, relations={*others, moved}))

    # Then the bookie is restarted once, explicitly, with no replan
    assert pebble_calls == ["restart bookie"]
    assert out.unit_status == Status.ACTIVE(bookie_id=f"{FQDN}:3181")


def test_bookie_ids_follow_the_cluster_domain_of_the_pod(
    ctx: testing.Context, bookie: testing.Container, resolv_conf: Path
) -> None:
    # Given a pod whose resolv.conf says the cluster's domain is example.internal
    resolv_conf.write_text("search test.svc.example.internal svc.example.internal example.internal\n")
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s", remote_app_data=PROVIDER_DATA)

    # When the relation changes
    out = ctx.run(ctx.on.relation_changed(relation), _state(bookie, relation))

    # Then the bookie registers under its FQDN in that domain
    bookie_id = json.loads(out.get_relation(relation.id).local_unit_data["bookie-id"])
    assert bookie_id == "bookie-k8s-0.bookie-k8s-endpoints.test.svc.example.internal:3181"
