"""Scaling pulsar-k8s 1 -> 3 -> 5 -> 3 -> 1: the ZooKeeper ensemble grows one server at a time and
shrinks as units leave, and no acknowledged message is lost."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import ops

from sandbox import Model
from sandbox.errors import SandboxError
from tests.sandbox.writers import RATE, audit, client_token, run_while_topics_move, start_writer, stop_writer

MESSAGES = 5_000
TIMEOUT = 900
SERVING_MODES = ("leader", "follower", "standalone")
SAMPLE_INTERVAL = 0.5
# Asks every host's ZooKeeper `srvr` at once (a host that does not answer costs one timeout) and
# prints {host: mode}: the mode while it serves, "" when it answers without serving, null when
# it does not answer.
SRVR_SCRIPT = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor

def mode(host):
    try:
        with socket.create_connection((host, 2181), timeout=2) as conn:
            conn.settimeout(2)
            conn.sendall(b"srvr")
            answer = b""
            while chunk := conn.recv(4096):
                answer += chunk
    except OSError:
        return None
    lines = [line for line in answer.decode(errors="replace").splitlines() if line.startswith("Mode:")]
    return lines[0].split(":", 1)[1].strip() if lines else ""

with ThreadPoolExecutor(len(sys.argv) - 1) as pool:
    print(json.dumps(dict(zip(sys.argv[1:], pool.map(mode, sys.argv[1:])))))
"""


@dataclass(frozen=True)
class Sample:
    """The published ensemble at one moment, and what each server answered to `srvr` then."""

    at: float
    members: tuple[str, ...]
    modes: dict[str, str | None]

    @property
    def quorum(self) -> int:
        return len(self.members) // 2 + 1

    @property
    def answering(self) -> int:
        return sum(self.modes.get(host) is not None for host in self.members)

    @property
    def serving(self) -> int:
        return sum(self.modes.get(host) in SERVING_MODES for host in self.members)


@dataclass
class EnsembleSamples:
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def longest_without_serving_majority(self) -> tuple[float, set[int]]:
        """The longest stretch from a sample without a serving majority to the next one with it:
        its seconds, and the sizes of the ensembles published meanwhile."""
        longest: tuple[float, set[int]] = (0.0, set())
        stretch: list[Sample] = []
        for sample in [*self.samples, None]:
            if sample is not None and sample.serving < sample.quorum:
                stretch.append(sample)
                continue
            if stretch:
                end = sample.at if sample is not None else stretch[-1].at
                if end - stretch[0].at > longest[0]:
                    longest = (end - stretch[0].at, {len(s.members) for s in stretch})
            stretch = []
        return longest

    def below_quorum(self) -> list[Sample]:
        """The samples in which fewer members than a quorum of the published ensemble answered at all."""
        return [sample for sample in self.samples if sample.answering < sample.quorum]


def _published_members(model: Model) -> tuple[str, ...]:
    """The hosts of the ensemble in pulsar-k8s' peer application data (the databag is replaced whole on
    each change, so one read is consistent)."""
    relation = next(r for r in list(model.relations.values()) if r.endpoints == [("pulsar-k8s", "cluster")])
    members = json.loads(relation.app_data.get("pulsar-k8s", {}).get("zk-members", "[]"))
    return tuple(sorted(member["host"] for member in members))


def _unit_hosts(model: Model) -> set[str]:
    hosts: set[str] = set()
    for name in [n for n in list(model.units) if n.startswith("pulsar-k8s/")]:
        try:
            hosts.add(model.fqdn(name))
        except SandboxError:  # removed meanwhile
            pass
    return hosts


@contextmanager
def _sampling_ensemble(model: Model) -> Iterator[EnsembleSamples]:
    """Sample the ensemble from the client's pod every SAMPLE_INTERVAL while the block runs.

    A thread of its own, doing a Pebble exec and reading peer data only: the model is driven
    by the test meanwhile. A sample whose published ensemble changed while it was taken is
    dropped: its answers belong to neither ensemble.
    """
    recorded = EnsembleSamples()
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_INTERVAL):
            members = _published_members(model)
            hosts = sorted(_unit_hosts(model) | set(members))
            at = time.monotonic()
            try:
                process = model.pebble("client/0", "client").exec(["python3", "-c", SRVR_SCRIPT, *hosts], timeout=30)
                modes = json.loads(process.wait_output()[0])
            except (ops.pebble.Error, SandboxError, ValueError) as error:  # counted, and printed
                recorded.failures.append(f"{type(error).__name__}: {error}")
                continue
            if members and _published_members(model) == members:
                recorded.samples.append(Sample(at, members, modes))

    sampler = threading.Thread(target=sample, name="ensemble-sampler", daemon=True)
    sampler.start()
    try:
        yield recorded
    finally:
        stop.set()
        sampler.join()


def _print_samples(step: str, recorded: EnsembleSamples) -> None:
    seconds, sizes = recorded.longest_without_serving_majority()
    print(
        f"\n{step}: {len(recorded.samples)} samples ({len(recorded.failures)} failed), longest stretch without"
        f" a serving majority {seconds:.1f}s (ensemble of {', '.join(map(str, sorted(sizes))) or '-'})"
    )
    for failure in sorted(set(recorded.failures)):
        print(f"  a sample failed: {failure}")


def test_scale_up_keeps_the_data_and_ends_in_a_quorum_of_three(
    model: Model, deploy_cluster: Callable[[Model, int], None]
) -> None:
    # Given a single-unit cluster holding messages
    deploy_cluster(model, 1)
    model.run("client/0", "consume", {"topic": "scale", "count": 0, "subscription": "later"})
    produced = model.run("client/0", "produce", {"topic": "scale", "count": MESSAGES})
    assert produced.results == {"acked": str(MESSAGES), "failed": "0"}, produced.message

    # When two units are added (the ensemble sampled meanwhile: it passes through two servers)
    with _sampling_ensemble(model) as recorded:
        started = time.monotonic()
        model.add_unit("pulsar-k8s", 2)
        model.wait_for_idle(timeout=TIMEOUT)
    _print_samples(f"1 -> 3 in {time.monotonic() - started:.0f}s", recorded)

    # Then ZooKeeper runs as a quorum of three (grown 1 -> 2 -> 3, never a majority of new servers)
    status = model.run("pulsar-k8s/0", "cluster-status").results
    assert sorted(status["zookeeper"].values()) == ["follower", "follower", "leader"]
    assert set(status["brokers"].values()) == {"ready"}
    # And the restarts it took happened one unit at a time, and nothing was lost
    consumed = run_while_topics_move(model, "consume", {"topic": "scale", "count": MESSAGES, "subscription": "later"})
    assert consumed.results == {"received": str(MESSAGES)}, consumed.message
    leader_log = (model.units["pulsar-k8s/0"].pod.log_dir / "charm.log").read_text()
    assert "zookeeper ensemble" in leader_log
    assert leader_log.count("restart lock: pulsar-k8s/") >= 2


WRITER_TIMEOUT = 3 * 3600  # longer than the test: it stops the writer


def test_growing_to_five_and_back_to_three_keeps_a_quorum_and_every_acknowledged_message(model: Model) -> None:
    # Given the quorum of three from the test above, a writer writing at 40 msg/s, and the ensemble sampled
    writer = start_writer(model, client_token(model), "five", RATE * WRITER_TIMEOUT, timeout=WRITER_TIMEOUT)
    steps: dict[str, float] = {}
    with _sampling_ensemble(model) as recorded:
        # When two units are added: the leader adds one server at a time
        started = time.monotonic()
        model.add_unit("pulsar-k8s", 2)
        model.wait_for_idle(timeout=TIMEOUT)
        steps["3 -> 5"] = time.monotonic() - started

        # Then ZooKeeper runs as a quorum of five
        status = model.run("pulsar-k8s/0", "cluster-status").results
        assert sorted(status["zookeeper"].values()) == ["follower"] * 4 + ["leader"]
        assert set(status["brokers"].values()) == {"ready"}
        grown = len(recorded.samples)

        # When units are removed one at a time, waiting in between
        for unit in ("pulsar-k8s/4", "pulsar-k8s/3"):
            started = time.monotonic()
            assert model.remove_unit("pulsar-k8s", num_units=1) == [unit]
            model.wait_for_idle(timeout=TIMEOUT)
            steps[f"remove {unit}"] = time.monotonic() - started

    # Then ZooKeeper runs as a quorum of three again
    status = model.run("pulsar-k8s/0", "cluster-status").results
    assert sorted(status["zookeeper"].values()) == ["follower", "follower", "leader"]
    assert set(status["brokers"].values()) == {"ready"}
    growing = EnsembleSamples(recorded.samples[:grown], recorded.failures)
    shrinking = EnsembleSamples(recorded.samples[grown:], [])
    _print_samples(f"3 -> 5 in {steps['3 -> 5']:.0f}s", growing)
    _print_samples(f"5 -> 3 in {steps['remove pulsar-k8s/4']:.0f}s + {steps['remove pulsar-k8s/3']:.0f}s", shrinking)
    assert growing.samples
    # And neither step took more than a minority of the published ensemble down at once: a removed
    # unit kept its server up until the survivors had restarted into the ensemble without it
    assert growing.below_quorum() == []
    assert shrinking.below_quorum() == []
    for unit in ("pulsar-k8s/4", "pulsar-k8s/3"):
        assert "left the ZooKeeper ensemble: every survivor serves without it" in model.debug_log(unit)
    # And every message the writer saw acknowledged is read back
    stop_writer(writer)
    found = audit(model, writer, "five")
    print(f"writer: {len(found.acked)} acknowledged, {found.failed} failed, {found.duplicates} read twice")
    assert found.lost == set(), sorted(found.lost)[:20]


def _client_grant(model: Model) -> dict[str, str]:
    relation = next(r for r in model.relations.values() if ("client", "pulsar") in r.endpoints)
    return relation.app_data["pulsar-k8s"]


def _client_token_secret(model: Model) -> str:
    return _client_grant(model)["secret-credentials"]


def test_scale_down_one_unit_at_a_time_shrinks_the_ensemble_and_keeps_the_data(model: Model) -> None:
    # Given the quorum of three from the test above, and messages produced through it
    model.run("client/0", "consume", {"topic": "shrink", "count": 0, "subscription": "later"})
    produced = model.run("client/0", "produce", {"topic": "shrink", "count": MESSAGES})
    assert produced.results == {"acked": str(MESSAGES), "failed": "0"}, produced.message
    # And leadership on the unit a scale-down removes first (the highest ordinal)
    model.elect_leader("pulsar-k8s/2")
    model.wait_for_idle(timeout=TIMEOUT)
    granted = _client_token_secret(model)

    # When units are removed one at a time, as `juju remove-unit --num-units 1` and waiting in between
    for unit in ("pulsar-k8s/2", "pulsar-k8s/1"):
        model.remove_unit("pulsar-k8s", num_units=1)
        model.wait_for_idle(timeout=TIMEOUT)

        # Then after each removal the survivors form the smaller ensemble, and serve
        status = model.run("pulsar-k8s/0", "cluster-status").results
        assert unit.replace("/", "-") not in status["zookeeper"]
        assert set(status["brokers"].values()) == {"ready"}
        # And the client keeps its grant, now listing the surviving brokers only
        assert _client_token_secret(model) == granted
        assert f"{unit.replace('/', '-')}.pulsar-k8s-endpoints" not in _client_grant(model)["service-url"]
        produced = run_while_topics_move(model, "produce", {"topic": "during-shrink", "count": 10})
        assert produced.results == {"acked": "10", "failed": "0"}, produced.message
    assert status["zookeeper"] == {"pulsar-k8s-0": "standalone"}
    # And every acknowledged message is still there, served by the last broker
    consumed = run_while_topics_move(model, "consume", {"topic": "shrink", "count": MESSAGES, "subscription": "later"})
    assert consumed.results == {"received": str(MESSAGES)}, consumed.message
