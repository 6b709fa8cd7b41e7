"""High availability: pulsar-k8s -n 3, bookie-k8s -n 4 (a spare for the ensemble of 3), a client.

One cluster for the module; the tests build on each other in order. First, leadership moves
where it hurts most: in the middle of the bring-up, of a client grant and of a rolling
restart, and the ZooKeeper leader's pod is stopped under a live cluster. Then faults under
continuous writes: one writer produces at 40 messages a second, every acknowledgement
recorded, while services are killed, a bookie is frozen past its ZooKeeper session and a
broker's pod is cut off the network (as a node or a user with kubectl would), a bookie is
removed and added again, and both applications, deployed on an earlier Pulsar image, are
refreshed onto the charm's own image (as an operator bumps 4.0.x to a newer 4.0.x); after
each, every unit must be active again.
The last test stops the writer and reads everything back through an audit subscription made
before the first message: no acknowledged message may be lost. The time each fault took to
heal is printed, not asserted.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import ops
import pytest
import websocket

from sandbox import Model
from sandbox.provision import EARLIER_PULSAR_VERSION, PULSAR_VERSION
from tests.sandbox.conftest import CHARMS, TEST_CHARMS
from tests.sandbox.writers import (
    CLIENT,
    IMAGE_UID,
    RATE,
    audit,
    client_token,
    start_writer,
    stop_writer,
    writer_progress,
)

TIMEOUT = 900
MESSAGES = 10_000  # produced (and read back) by a test with the client action, before the writer starts
TOPIC = "faults"
PROGRESS = "/tmp/faults-writer.json"
WRITER_TIMEOUT = 4 * 3600  # longer than the whole module: the last test stops the writer
PULSAR_UNITS = [f"pulsar-k8s/{n}" for n in range(3)]
BOOKIE_UNITS = [f"bookie-k8s/{n}" for n in range(4)]
IMAGE_RESOURCE = "pulsar-image"  # both charms' oci-image resource
PULSAR = "pulsar"  # container (and service names) of charms/pulsar-k8s/src/literals.py
ZOOKEEPER, BROKER = "zookeeper", "broker"
BOOKIE = "bookie"  # container and service of charms/bookie-k8s/src/literals.py
BOOKKEEPER_CONF = "/pulsar/conf/bookkeeper.conf"
BROKER_CONF = "/pulsar/conf/broker.conf"
CUT_SECONDS = 60
# The time each fault took to heal (every unit active again), printed by the last test.
HEALED: dict[str, float] = {}


@pytest.fixture(scope="module")
def writer(model: Model) -> Iterator[ops.pebble.ExecProcess[str]]:
    """The module's writer, started once the cluster is up, and already acknowledged."""
    process = start_writer(
        model, client_token(model), TOPIC, RATE * WRITER_TIMEOUT, timeout=WRITER_TIMEOUT, progress=PROGRESS
    )
    _acknowledged_from_now(model)
    yield process
    try:  # a test that failed before the last leaves it writing; after the last, it has ended
        stop_writer(process)
    except (ops.pebble.Error, websocket.WebSocketException):
        pass


@pytest.fixture(scope="module")
def admin_token(model: Model) -> str:
    leader = model.leader("pulsar-k8s")
    assert leader is not None
    return model.run(leader, "get-admin-credentials").results["token"]


# ---------------------------------------------------------------- looking at the cluster


def _in_container(model: Model, unit: str, container: str, script: str, timeout: float = 5) -> str | None:
    """A bash script's output in a unit's container, or None if it failed or hung."""
    try:
        process = model.pebble(unit, container).exec(["bash", "-c", script], timeout=timeout)
        output, _ = process.wait_output()
    except ops.pebble.Error:
        return None
    return output


def _zookeeper_mode(model: Model, unit: str) -> str | None:
    """The unit's ZooKeeper mode from `srvr` (leader, follower), or None if it does not serve."""
    answer = _in_container(model, unit, PULSAR, "exec 3<>/dev/tcp/localhost/2181 && printf srvr >&3 && cat <&3")
    found = re.search(r"^Mode: (\w+)", answer or "", re.MULTILINE)
    return found.group(1) if found else None


def _http_ok(model: Model, unit: str, container: str, port: int, path: str) -> bool:
    """Whether a page of the unit's workload answers 200 on localhost (a frozen one hangs: no)."""
    script = f"exec 3<>/dev/tcp/localhost/{port} && printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3"
    answer = _in_container(model, unit, container, script)
    return answer is not None and " 200 " in answer


def _zookeeper_serves(unit: str) -> Callable[[Model], bool]:
    return lambda m: _zookeeper_mode(m, unit) in ("leader", "follower")


def _broker_serves(unit: str) -> Callable[[Model], bool]:
    return lambda m: _http_ok(m, unit, PULSAR, 8080, "/status.html")


def _bookie_serves(unit: str) -> Callable[[Model], bool]:
    return lambda m: _http_ok(m, unit, BOOKIE, 8000, "/api/v1/bookie/is_ready")


def _zookeeper_leader(model: Model) -> str:
    """The pulsar-k8s unit whose ZooKeeper leads the ensemble (asked with `srvr`)."""
    deadline = time.monotonic() + 120
    while not (leaders := [u for u in PULSAR_UNITS if _zookeeper_mode(model, u) == "leader"]):
        assert time.monotonic() < deadline, "no ZooKeeper leader"
        time.sleep(2)
    (leader,) = leaders
    return leader


def _broker_api(model: Model, token: str, path: str, method: str = "GET", units: list[str] = PULSAR_UNITS) -> str:
    """A call to the brokers' REST API from the client's pod: the whole body from the first broker that answers."""
    script = (
        "import sys, urllib.request\n"
        "path, method, token = sys.argv[1], sys.argv[2], sys.stdin.read()\n"
        "for base in sys.argv[3:]:\n"
        "    request = urllib.request.Request(base + path, method=method)\n"
        "    request.add_header('Authorization', 'Bearer ' + token)\n"
        "    try:\n"
        "        print(urllib.request.urlopen(request, timeout=15).read().decode())\n"
        "        break\n"
        "    except OSError as error:\n"
        "        print(base, error, file=sys.stderr)\n"
        "else:\n"
        "    sys.exit(1)\n"
    )
    bases = [f"http://{model.fqdn(unit)}:8080" for unit in units]
    process = model.pebble(*CLIENT).exec(
        ["python3", "-c", script, path, method, *bases], stdin=token, user_id=IMAGE_UID, group_id=0, timeout=120
    )
    output, _ = process.wait_output()
    return output


def _topic_owner(model: Model, token: str, through: list[str] = PULSAR_UNITS) -> str:
    """The pulsar-k8s unit whose broker owns the writer's topic (looked up through the brokers `through`)."""
    path = f"/lookup/v2/topic/persistent/client/default/{TOPIC}"
    looked_up = json.loads(_broker_api(model, token, path, units=through))
    return next(unit for unit in PULSAR_UNITS if model.fqdn(unit) in looked_up["brokerUrl"])


def _ensemble(model: Model, token: str) -> list[str]:
    """The bookie-k8s units the topic's current ledger writes to (its last ensemble)."""
    path = f"/admin/v2/persistent/client/default/{TOPIC}/internalStats?metadata=true"
    stats = json.loads(_broker_api(model, token, path))
    metadata = stats["ledgers"][-1]["metadata"]
    ensembles = re.findall(r"\d+=\[([^\]]*)\]", metadata.split("ensembles=", 1)[1])
    assert ensembles, metadata
    return [unit for unit in BOOKIE_UNITS if model.fqdn(unit) in ensembles[-1]]


def _acknowledged_from_now(model: Model, timeout: float = 120) -> None:
    """Wait until a message the writer sends from now on is acknowledged: it writes, and is heard."""
    deadline = time.monotonic() + timeout
    try:
        sent = writer_progress(model, PROGRESS)["sent"]
    except (ops.pebble.PathError, ValueError):  # not written yet
        sent = 0
    while True:
        try:
            if writer_progress(model, PROGRESS)["last-acked"] >= sent:
                return
        except (ops.pebble.PathError, ValueError):
            pass
        assert time.monotonic() < deadline, f"no message sent since #{sent} acknowledged in {timeout:.0f}s"
        _drive_for(model, 2)


def _all_back(model: Model) -> bool:
    """Every unit active, every pod ready, and the cluster's applications say so too."""
    units = list(model.units.items())
    return (
        all(isinstance(u.workload_status, ops.ActiveStatus) for _, u in units)
        and all(model.pod_ready(name) for name, _ in units)
        and all(model.apps[app].status.name == "active" for app in ("pulsar-k8s", "bookie-k8s"))
    )


def _healed(model: Model, fault: str, since: float, serves: Callable[[Model], bool]) -> None:
    """Drive the model until the faulty workload serves again and every unit is active; record the time."""
    model.drive_until(lambda m: _all_back(m) and serves(m), timeout=TIMEOUT)
    model.wait_for_idle(timeout=TIMEOUT)
    HEALED[fault] = time.monotonic() - since
    apps = ", ".join(f"{name} {app.status.name}" for name, app in model.apps.items())
    print(f"\n{fault}: every unit active again after {HEALED[fault]:.0f}s (applications: {apps})")


def _kill(model: Model, unit: str, container: str, service: str, serves: Callable[[Model], bool]) -> None:
    """SIGKILL a service, and wait until it serves again (Pebble restarts it) and every unit is active."""
    since = time.monotonic()
    model.signal_service(unit, container, service, "SIGKILL")
    # Its port closes with the process: once it answers, it is the restarted one.
    model.drive_until(lambda m: not serves(m), timeout=60)
    _healed(model, f"SIGKILL {service} of {unit}", since, serves)


def _drive_for(model: Model, seconds: float) -> None:
    """Let the model run its hooks for `seconds`: the agents keep working during a fault."""
    end = time.monotonic() + seconds
    model.drive_until(lambda _: time.monotonic() >= end, timeout=seconds + 60)


@dataclass(frozen=True)
class Writes:
    """The writer's outcomes while a fault lasted."""

    acked: int  # acknowledgements received meanwhile
    failed: int  # sends that failed meanwhile
    # Seconds from the fault's start until a message sent during it was acknowledged, if one was
    resumed_after: float | None
    longest_stall: float  # seconds, the longest time with no acknowledgement

    def __str__(self) -> str:
        resumed = "never" if self.resumed_after is None else f"after {self.resumed_after:.0f}s"
        return (
            f"{self.acked} messages acknowledged and {self.failed} sends failed meanwhile, "
            f"longest stall {self.longest_stall:.0f}s, new messages acknowledged {resumed}"
        )


class WatchedWriter:
    """The writer's progress sampled twice a second for a `with` block (`writes` is set after it).

    Apart from the model's driving, which may be busy for seconds at a time.
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.writes: Writes | None = None

    def __enter__(self) -> WatchedWriter:
        self._sample()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        self._sample()
        (start, first), (end, last) = self.samples[0], self.samples[-1]
        # The progress file is up to a second old: a message sent 2 s into the fault was sent during it
        sent_during = first["sent"] + 2 * RATE
        resumed = next((t - start for t, now in self.samples if now["last-acked"] >= sent_during), None)
        moved = [start]
        moved += [t for (_, before), (t, now) in itertools.pairwise(self.samples) if now["acked"] > before["acked"]]
        moved.append(end)
        self.writes = Writes(
            acked=last["acked"] - first["acked"],
            failed=last["failed"] - first["failed"],
            resumed_after=resumed,
            longest_stall=max(b - a for a, b in itertools.pairwise(moved)),
        )

    def _sample(self) -> None:
        try:
            self.samples.append((time.monotonic(), writer_progress(self.model, PROGRESS)))
        except ops.pebble.Error:  # a read that failed is a sample missed
            pass

    def _watch(self) -> None:
        while not self.done.wait(0.5):
            self._sample()


# ---------------------------------------------------------------- tests


# Leadership moves and a pod restart, before the writer starts


def _peer_app_data(model: Model) -> dict[str, object]:
    """pulsar-k8s' peer application databag, decoded (each value is JSON)."""
    relation = next(r for r in model.relations.values() if r.endpoints == [("pulsar-k8s", "cluster")])
    return {key: json.loads(value) for key, value in relation.app_data.get("pulsar-k8s", {}).items()}


def _another_unit(model: Model, *besides: str | None) -> str:
    return next(unit for unit in reversed(PULSAR_UNITS) if unit not in besides)


def test_leadership_moving_before_initialization_still_brings_the_cluster_up(model: Model) -> None:
    # Given pulsar-k8s -n 3, bookie-k8s -n 4 and a client, deployed and integrated as a user types it
    # (trusted, as `juju deploy --trust`: the charms guard a refresh through their StatefulSets)
    # (on an earlier Pulsar image, which the refresh at the end bumps)
    earlier = {IMAGE_RESOURCE: f"apachepulsar/pulsar:{EARLIER_PULSAR_VERSION}"}
    model.deploy(CHARMS / "pulsar-k8s", num_units=len(PULSAR_UNITS), trust=True, settle=False, resources=earlier)
    model.deploy(CHARMS / "bookie-k8s", num_units=len(BOOKIE_UNITS), trust=True, settle=False, resources=earlier)
    model.integrate("pulsar-k8s", "bookie-k8s", settle=False)
    model.deploy(TEST_CHARMS / "pulsar-client-k8s", "client", settle=False)
    model.integrate("client", "pulsar-k8s", settle=False)

    # When leadership moves once the leader has chosen the ensemble, before the metadata exists
    model.drive_until(
        lambda m: bool(_peer_app_data(m).get("zk-members")) and not _peer_app_data(m).get("initialized"), timeout=300
    )
    first_leader = model.leader("pulsar-k8s")
    model.elect_leader(_another_unit(model, first_leader))
    model.wait_for_idle(timeout=TIMEOUT)

    # Then the new leader initialized the cluster, and the bookies and the client were served
    assert model.leader("pulsar-k8s") != first_leader
    assert _peer_app_data(model)["initialized"] == "pulsar"
    status = model.run("pulsar-k8s/0", "cluster-status").results
    assert status["cluster-name"] == "pulsar"
    assert set(status["bookies"].values()) == {"ready"}
    assert model.units["client/0"].workload_status.message == "granted client/default"


def test_three_units_form_a_quorum_and_survive_losing_the_leader(model: Model) -> None:
    # Given pulsar-k8s with three units, with four bookies and a client (brought up above)

    # Then ZooKeeper has one leader and two followers, and three brokers are ready
    status = model.run("pulsar-k8s/0", "cluster-status").results
    roles = sorted(status["zookeeper"].values())
    assert roles == ["follower", "follower", "leader"]
    assert set(status["brokers"].values()) == {"ready"}
    # And the client's service URL lists every broker
    relation = next(r for r in model.relations.values() if ("client", "pulsar") in r.endpoints)
    assert relation.app_data["pulsar-k8s"]["service-url"].count(":6650") == 3

    model.run("client/0", "consume", {"topic": "ha", "count": 0, "subscription": "after"})  # keeps the backlog
    produced = model.run("client/0", "produce", {"topic": "ha", "count": MESSAGES})
    assert produced.results == {"acked": str(MESSAGES), "failed": "0"}, produced.message

    # When the ZooKeeper leader's pod is stopped and comes back
    leader = next(name for name, role in status["zookeeper"].items() if role == "leader")
    model.restart_pod(leader.replace("pulsar-k8s-", "pulsar-k8s/"))
    model.wait_for_idle(timeout=TIMEOUT)

    # Then the quorum is whole again and every acknowledged message is readable
    after = model.run("pulsar-k8s/0", "cluster-status").results
    assert sorted(after["zookeeper"].values()) == ["follower", "follower", "leader"]
    consumed = model.run("client/0", "consume", {"topic": "ha", "count": MESSAGES, "subscription": "after"})
    assert consumed.results == {"received": str(MESSAGES)}, consumed.message


def test_leadership_moving_in_the_middle_of_a_client_grant_still_serves_it(model: Model) -> None:
    # Given a second client that has asked for its namespace, not granted yet
    model.deploy(TEST_CHARMS / "pulsar-client-k8s", "client-two", settle=False)
    relation = model.integrate("client-two", "pulsar-k8s", settle=False)
    model.drive_until(
        lambda m: (
            "namespace" in m.relations[relation.id].app_data.get("client-two", {})
            and "secret-credentials" not in m.relations[relation.id].app_data.get("pulsar-k8s", {})
        ),
        timeout=120,
    )

    # When leadership moves to another unit
    model.elect_leader(_another_unit(model, model.leader("pulsar-k8s")))
    model.wait_for_idle(timeout=TIMEOUT)

    # Then the new leader grants it, and its token works
    assert model.units["client-two/0"].workload_status.message == "granted client-two/default"
    produced = model.run("client-two/0", "produce", {"topic": "grant", "count": 100})
    assert produced.results == {"acked": "100", "failed": "0"}, produced.message


def _broker_changes(model: Model, unit: str) -> set[str]:
    changes = model.pebble(unit, "pulsar").get_changes(select=ops.pebble.ChangeState.ALL)
    return {f"{c.id} {c.summary}" for c in changes if '"broker"' in c.summary}


def test_leadership_moving_in_the_middle_of_a_rolling_restart_finishes_the_roll(model: Model) -> None:
    # Given the record of every broker's starts, and messages waiting for a subscription
    before = {unit: _broker_changes(model, unit) for unit in PULSAR_UNITS}
    model.run("client/0", "consume", {"topic": "roll", "count": 0, "subscription": "after-roll"})
    produced = model.run("client/0", "produce", {"topic": "roll", "count": MESSAGES})
    assert produced.results == {"acked": str(MESSAGES), "failed": "0"}, produced.message

    # When a config change starts a rolling restart, and leadership moves while a unit holds the lock
    model.config("pulsar-k8s", {"broker-heap": "384m"}, settle=False)
    model.drive_until(lambda m: bool(_peer_app_data(m).get("restart-holder")), timeout=300)
    holder = str(_peer_app_data(model)["restart-holder"])
    model.elect_leader(_another_unit(model, model.leader("pulsar-k8s"), holder))
    model.wait_for_idle(timeout=TIMEOUT)

    # Then every broker restarted exactly once, with the new heap, and nothing was lost
    for unit in PULSAR_UNITS:
        assert len(_broker_changes(model, unit) - before[unit]) == 1, unit
        plan = model.pebble(unit, "pulsar").get_plan().services["broker"]
        assert "-Xmx384m" in plan.environment["PULSAR_MEM"]
    status = model.run("pulsar-k8s/0", "cluster-status").results
    assert sorted(status["zookeeper"].values()) == ["follower", "follower", "leader"]
    assert set(status["brokers"].values()) == {"ready"}
    consumed = model.run("client/0", "consume", {"topic": "roll", "count": MESSAGES, "subscription": "after-roll"})
    assert consumed.results == {"received": str(MESSAGES)}, consumed.message


# Faults under the writer


def test_killed_services_are_restarted_and_every_unit_returns_to_active(
    model: Model, writer: ops.pebble.ExecProcess[str], admin_token: str
) -> None:
    # Given the writer writing, acknowledged (the module's fixture waited for it)

    # When the ZooKeeper leader's ZooKeeper is killed
    leader = _zookeeper_leader(model)
    _kill(model, leader, PULSAR, ZOOKEEPER, _zookeeper_serves(leader))
    # Then the ensemble serves with a leader again
    assert _zookeeper_leader(model)

    # When the broker that owns the writer's topic is killed (the writer has to move)
    owner = _topic_owner(model, admin_token)
    _kill(model, owner, PULSAR, BROKER, _broker_serves(owner))

    # When a bookie the topic writes to is killed
    bookie = _ensemble(model, admin_token)[0]
    _kill(model, bookie, BOOKIE, BOOKIE, _bookie_serves(bookie))

    # Then every unit was active again after each (waited above), and the writer is acknowledged still
    _acknowledged_from_now(model)


def _setting(conf: str, key: str, default: float) -> float:
    found = re.search(rf"^{key}=(\d+)", conf, re.MULTILINE)
    return float(found.group(1)) if found else default


def test_a_bookie_frozen_past_its_session_rejoins_and_writes_go_on_meanwhile(
    model: Model, writer: ops.pebble.ExecProcess[str], admin_token: str
) -> None:
    # Given a bookie the topic writes to, its ZooKeeper session timeout, and how long a broker
    # waits for a bookie's acknowledgement before it writes to another (their rendered confs)
    bookie = _ensemble(model, admin_token)[-1]
    zk_timeout = _setting(model.pebble(bookie, BOOKIE).pull(BOOKKEEPER_CONF).read(), "zkTimeout", 10_000) / 1000
    broker_conf = model.pebble(PULSAR_UNITS[0], PULSAR).pull(BROKER_CONF).read()
    add_timeout = _setting(broker_conf, "bookkeeperClientTimeoutInSeconds", 30)
    # Longer than both: its session expires, and the brokers give up on it and write to the spare
    frozen_for = max(zk_timeout, add_timeout) + 15

    # When it is frozen (SIGSTOP)
    with model.service_stopped(bookie, BOOKIE, BOOKIE), WatchedWriter(model) as watched:
        _drive_for(model, frozen_for)
    since = time.monotonic()
    timeouts = f"session {zk_timeout:.0f}s, add timeout {add_timeout:.0f}s"
    print(f"\nfroze {bookie} for {frozen_for:.0f}s ({timeouts}): {watched.writes}")

    # Then messages written meanwhile were acknowledged meanwhile
    assert watched.writes is not None
    assert watched.writes.resumed_after is not None, watched.writes
    # And once continued, the bookie serves again and every unit is active
    _healed(model, f"SIGSTOP {bookie} for {frozen_for:.0f}s", since, _bookie_serves(bookie))


def _owner_other_than(model: Model, token: str, cut: str, until: float) -> str:
    """Look the topic up through the brokers still reachable until one names a broker other than `cut`."""
    others = [unit for unit in PULSAR_UNITS if unit != cut]
    while True:
        try:
            owner = _topic_owner(model, token, others)
        except ops.pebble.ExecError:  # redirected to the cut broker (it still leads the load manager)
            owner = cut
        if owner != cut or time.monotonic() >= until:
            return owner
        _drive_for(model, 2)


def test_a_broker_cut_off_the_network_is_failed_over_and_comes_back(
    model: Model, writer: ops.pebble.ExecProcess[str], admin_token: str
) -> None:
    # Given the broker that owns the topic, on a unit that does not lead ZooKeeper (2 of 3 keep the quorum)
    leader = _zookeeper_leader(model)
    owner = _topic_owner(model, admin_token)
    for _ in range(5):
        if owner != leader:
            break
        # Unloading the namespace hands its bundles to the least loaded brokers
        _broker_api(model, admin_token, "/admin/v2/namespaces/client/default/unload", method="PUT")
        owner = _topic_owner(model, admin_token)
    assert owner != leader, f"the topic stays on {leader}, the ZooKeeper leader"

    # When its pod is cut off the network for a minute
    with model.network_cut(owner), WatchedWriter(model) as watched:
        end = time.monotonic() + CUT_SECONDS
        # Once the cut broker's ZooKeeper session expires, the others may take its topics over
        _drive_for(model, 20)
        new_owner = _owner_other_than(model, admin_token, owner, end)
        _drive_for(model, max(0.0, end - time.monotonic()))
    since = time.monotonic()
    print(f"\ncut {owner} off for {CUT_SECONDS}s, the topic moved to {new_owner}; the writer: {watched.writes}")

    # Then another broker took the topic over while the owner was cut off
    assert new_owner != owner
    # And once reconnected, every unit is active again, and messages written since the cut are acknowledged
    _healed(model, f"network cut of {owner} for {CUT_SECONDS}s", since, _broker_serves(owner))
    _acknowledged_from_now(model)


# A BookKeeper shell in a bookie's pod logs in to ZooKeeper as the bookie does (its JAAS file).
SHELL_ENVIRONMENT = {
    "PULSAR_MEM": "-Xmx128m",
    "PULSAR_LOG_APPENDER": "Console",
    "PULSAR_EXTRA_OPTS": "-Djava.security.auth.login.config=/pulsar/conf/jaas.conf -Dzookeeper.fips-mode=false",
}


def _under_replicated_ledgers(model: Model, unit: str) -> int:
    """How many ledgers BookKeeper's autorecovery still has to copy (`listunderreplicated`)."""
    process = model.pebble(unit, BOOKIE).exec(
        ["/pulsar/bin/bookkeeper", "shell", "listunderreplicated"],
        environment=SHELL_ENVIRONMENT,
        user_id=IMAGE_UID,
        group_id=0,
        timeout=120,
    )
    output, errors = process.wait_output()
    counts = re.findall(r"Under replicated ledger count: (\d+)", output + (errors or ""))
    assert counts, (output + (errors or ""))[-2000:]
    return int(counts[-1])


def test_a_removed_bookie_is_decommissioned_while_writes_go_on(model: Model) -> None:
    # Given four bookies holding the writer's ledgers, while it writes
    since = time.monotonic()

    # When the operator removes one (Kubernetes takes the highest ordinal)
    (removed,) = model.remove_unit("bookie-k8s")
    model.wait_for_idle(timeout=TIMEOUT)
    HEALED[f"remove-unit of {removed}"] = time.monotonic() - since
    print(f"\nremove-unit of {removed}: gone, every unit active, after {HEALED[f'remove-unit of {removed}']:.0f}s")

    # Then it was decommissioned before its storage went, and no ledger is left under-replicated
    assert "decommissioned: its ledgers are on the other bookies" in model.debug_log(removed)
    assert _under_replicated_ledgers(model, BOOKIE_UNITS[0]) == 0
    # And the writer goes on with three bookies
    _acknowledged_from_now(model)

    # When a bookie is added again: the same name, on the volume the removed one emptied
    since = time.monotonic()
    model.add_unit("bookie-k8s")
    model.wait_for_idle(timeout=TIMEOUT)
    print(f"add-unit: {removed} serves again after {time.monotonic() - since:.0f}s")

    # Then it starts anew and serves (on its old files it would refuse: its cookie left the metadata store)
    assert _bookie_serves(removed)(model)
    _acknowledged_from_now(model)


REFRESHED = {"pulsar-k8s": PULSAR_UNITS, "bookie-k8s": BOOKIE_UNITS}


def _workload_versions(model: Model) -> set[str]:
    return {model.units[unit].workload_version for units in REFRESHED.values() for unit in units}


def _active(model: Model, unit: str) -> bool:
    return isinstance(model.units[unit].workload_status, ops.ActiveStatus)


def test_a_guarded_refresh_onto_a_newer_image_replaces_one_pod_at_a_time_once_the_last_serves(
    model: Model, writer: ops.pebble.ExecProcess[str]
) -> None:
    # Given both applications on the earlier Pulsar image
    assert _workload_versions(model) == {EARLIER_PULSAR_VERSION}
    # And trusted: each leader keeps its StatefulSet's partition at the highest ordinal
    for app, units in REFRESHED.items():
        assert model.statefulset(app).partition == len(units) - 1, app
    # And the pre-upgrade check passes on each leader
    for app, units in REFRESHED.items():
        leader = model.leader(app)
        assert leader is not None
        checked = model.run(leader, "pre-upgrade-check")
        assert checked.status == "completed", checked.message
        assert checked.results["first-unit"] == units[-1]

    # When both are refreshed onto the charm's own image while the writer writes
    # (`juju refresh APP --path DIR --resource pulsar-image=apachepulsar/pulsar:4.0.8`)
    since = time.monotonic()
    for app in REFRESHED:
        model.refresh(app, settle=False, resources={IMAGE_RESOURCE: f"apachepulsar/pulsar:{PULSAR_VERSION}"})
    updates = {app: model.statefulset(app).update_revision for app in REFRESHED}
    replaced: dict[str, list[str]] = {app: [] for app in REFRESHED}  # in the order their pods went
    starting: set[str] = set()  # replaced units seen not active since: the old pod's status is gone
    too_early: list[str] = []

    def rolled(m: Model) -> bool:
        # Each pod replaced must find the one replaced before it serving again: seen starting, now active
        for app, units in REFRESHED.items():
            for unit in units:
                if unit in replaced[app]:
                    if not _active(m, unit):
                        starting.add(unit)
                    continue
                if m.pod_revision(unit) != updates[app]:
                    continue
                before = replaced[app][-1] if replaced[app] else None
                if before is not None and (before not in starting or not _active(m, before)):
                    too_early.append(f"{unit} replaced while {before} did not serve yet")
                replaced[app].append(unit)
        return not any(m.statefulset(app).rolling for app in REFRESHED) and _all_back(m)

    with WatchedWriter(model) as watched:
        model.drive_until(rolled, timeout=2 * TIMEOUT)
        model.wait_for_idle(timeout=TIMEOUT)
    took = HEALED["refresh of both applications"] = time.monotonic() - since
    print(f"\nrefresh of both applications: {took:.0f}s; the writer: {watched.writes}")

    # Then every pod runs the new revision and the newer Pulsar, replaced from the highest
    # ordinal down, each only once the one before it served again
    assert _workload_versions(model) == {PULSAR_VERSION}
    for app, units in REFRESHED.items():
        statefulset = model.statefulset(app)
        assert statefulset.updated == sorted(units), app
        assert statefulset.current_revision == statefulset.update_revision == updates[app]
        assert replaced[app] == list(reversed(units)), app
    assert too_early == []
    # And the writer's messages went on being acknowledged
    assert watched.writes is not None
    assert watched.writes.resumed_after is not None, watched.writes
    _acknowledged_from_now(model)


def test_every_acknowledged_message_is_read_back(model: Model, writer: ops.pebble.ExecProcess[str]) -> None:
    # When the writer stops
    stop_writer(writer)
    found = audit(model, writer, TOPIC)

    # Then the audit subscription reads every message the writer saw acknowledged
    print(
        f"\nacknowledged {len(found.acked)}, failed sends {found.failed}, "
        f"duplicates read {found.duplicates}, lost {len(found.lost)}"
    )
    for fault, seconds in HEALED.items():
        print(f"{fault}: {seconds:.0f}s to all active")
    assert len(found.acked) > 0
    assert found.lost == set(), sorted(found.lost)[:20]
