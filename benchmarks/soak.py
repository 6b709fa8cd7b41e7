"""Benchmark: a soak of pulsar-k8s x3 and bookie-k8s x4 under continuous writes, a fault a minute.

A client writes 40 messages a second for the whole run, recording every acknowledgement. Each
minute a fault is drawn from the list below (seeded, so a run can be repeated), and the model
is driven until every unit is active again. At the end an audit subscription, made before the
first message, reads everything back: an acknowledged message it cannot read is lost.

Faults, as an operator or the platform causes them:
- kill-zookeeper-leader: SIGKILL the ZooKeeper server that leads the ensemble
- kill-broker: SIGKILL one broker
- kill-bookie: SIGKILL one bookie
- freeze-bookie: SIGSTOP one bookie for longer than its ZooKeeper session, then SIGCONT
- cut-broker-network: cut one pulsar-k8s pod (not the ZooKeeper leader's) off for 60 s
- replace-bookie: `juju remove-unit bookie-k8s` (a decommission), then `juju add-unit` again
  (a decommission still waiting after 10 minutes ends the faults: the report names it, and the
  audit still runs)

Prints, for each fault, how long after it ended a unit was last seen not active or a Pebble
check not up (sampled twice a second until all has been healthy for 30 s); then the messages
acknowledged, failed (a send that timed out while a broker moved), lost (must be 0), read
twice, and the longest stretch with no acknowledgement. Figures only; nothing here asserts.

Run inside `tox exec -e sandbox --` (about 20 minutes for the default 15 faults).
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ops

from sandbox import Model, WaitTimeoutError
from tests.sandbox.writers import audit, client_token, start_writer, stop_writer, writer_progress

ROOT = Path(__file__).resolve().parent.parent
CHARMS = ROOT / "charms"
TEST_CHARMS = ROOT / "tests" / "sandbox" / "charms"
PULSAR_UNITS = ("pulsar-k8s/0", "pulsar-k8s/1", "pulsar-k8s/2")
BOOKIE_APP = "bookie-k8s"
TOPIC = "soak"
PROGRESS = "/tmp/soak-progress.json"  # noqa: S108 - in the client's container, its own /tmp
RATE = 40
# Past the bookie's ZooKeeper session (10 s) and the brokers' write timeout to it (30 s,
# after which they replace it in their ledgers' ensembles), with a margin.
FREEZE = 45.0
NETWORK_CUT = 60.0
RECOVERY_TIMEOUT = 900.0
DECOMMISSION_TIMEOUT = 600.0
# Healthy this long in a row counts as recovered (longer than a check's period and threshold).
SETTLE = 30.0


class StuckFaultError(Exception):
    """A fault the cluster did not get through: the soak injects no more, and reports it."""


@dataclass
class FaultRecord:
    name: str
    target: str
    started: float  # seconds since the writer started
    back_to_active: float = float("nan")  # seconds from the fault's end to every unit active


@dataclass
class Outages:
    """The writer's acknowledgements, sampled each second: the longest stretch with none."""

    longest: float = 0.0
    longest_at: float = 0.0
    samples: int = 0
    errors: list[str] = field(default_factory=list)


def _healthy(model: Model) -> bool:
    """Every unit and the cluster's applications active, and every check of every workload container up."""
    if not all(isinstance(unit.workload_status, ops.ActiveStatus) for unit in model.units.values()):
        return False
    if not all(model.apps[app].status.name == "active" for app in ("pulsar-k8s", BOOKIE_APP)):
        return False
    for name, unit in model.units.items():
        for container in unit.pod.containers:
            try:
                checks = model.pebble(name, container).get_checks()
            except (ops.pebble.ConnectionError, ops.pebble.APIError):  # the container is restarting
                return False
            if any(check.status != ops.pebble.CheckStatus.UP for check in checks):
                return False
    return True


def _recover(model: Model, settle: float) -> float:
    """Drive the model until it has been healthy for `settle` seconds; return when it last was not.

    Sampled about twice a second from the fault's end: a fault whose effect the checks only see
    after a few seconds still counts, and a unit that flaps after looking healthy too.
    """
    ended = time.monotonic()
    last_unhealthy = ended

    def settled(model: Model) -> bool:
        nonlocal last_unhealthy
        now = time.monotonic()
        if not _healthy(model):
            last_unhealthy = now
        return now - last_unhealthy >= settle

    model.drive_until(settled, timeout=RECOVERY_TIMEOUT)
    return last_unhealthy - ended


def _zookeeper_leader(model: Model) -> str:
    """The pulsar-k8s unit whose ZooKeeper leads, from the leader's cluster-status action."""
    leader = model.leader("pulsar-k8s") or PULSAR_UNITS[0]
    roles = model.run(leader, "cluster-status").results["zookeeper"]
    return next(unit for unit in PULSAR_UNITS if roles.get(unit.replace("/", "-")) == "leader")


def _drive_for(model: Model, seconds: float) -> None:
    """Keep the model running its hooks for `seconds`."""
    end = time.monotonic() + seconds
    model.drive_until(lambda _: time.monotonic() >= end, timeout=seconds + 60)


def _bookies(model: Model) -> list[str]:
    return sorted(name for name in model.units if name.startswith(f"{BOOKIE_APP}/"))


def _fault(model: Model, name: str, rng: random.Random) -> tuple[str, Callable[[], None]]:
    """The fault's target, and what causes it (returns once the fault is over)."""
    if name == "kill-zookeeper-leader":
        target = _zookeeper_leader(model)
        return target, lambda: model.signal_service(target, "pulsar", "zookeeper", "SIGKILL")
    if name == "kill-broker":
        target = rng.choice(PULSAR_UNITS)
        return target, lambda: model.signal_service(target, "pulsar", "broker", "SIGKILL")
    if name == "kill-bookie":
        target = rng.choice(_bookies(model))
        return target, lambda: model.signal_service(target, "bookie", "bookie", "SIGKILL")
    if name == "freeze-bookie":
        target = rng.choice(_bookies(model))

        def freeze() -> None:
            with model.service_stopped(target, "bookie", "bookie"):
                _drive_for(model, FREEZE)

        return target, freeze
    if name == "cut-broker-network":
        leader = _zookeeper_leader(model)
        target = rng.choice([unit for unit in PULSAR_UNITS if unit != leader])

        def cut() -> None:
            with model.network_cut(target):
                _drive_for(model, NETWORK_CUT)

        return target, cut
    if name == "replace-bookie":
        removed = _bookies(model)[-1]

        def replace() -> None:
            model.remove_unit(BOOKIE_APP, num_units=1, settle=False)
            try:
                model.drive_until(lambda m: removed not in m.units, timeout=DECOMMISSION_TIMEOUT)
            except WaitTimeoutError:
                status = model.units[removed].workload_status
                waited = f"{DECOMMISSION_TIMEOUT:.0f} s"
                raise StuckFaultError(f"{removed} not removed after {waited}: {status.message}") from None
            model.add_unit(BOOKIE_APP, num_units=1)

        return removed, replace
    raise ValueError(name)


FAULTS = (
    "kill-zookeeper-leader",
    "kill-broker",
    "kill-bookie",
    "freeze-bookie",
    "cut-broker-network",
    "replace-bookie",
)


def _watch_writer(model: Model, started: float, outages: Outages, stop: threading.Event) -> None:
    """Sample the writer's acknowledged count each second; keep the longest stretch without a new one."""
    last_count, last_change = -1, time.monotonic()
    while not stop.wait(1.0):
        try:
            acked = writer_progress(model, PROGRESS)["acked"]
        except Exception as error:  # noqa: BLE001 - the file is not there yet, or the pod is busy
            outages.errors.append(f"{type(error).__name__}: {error}")
            continue
        now = time.monotonic()
        outages.samples += 1
        if acked != last_count:
            last_count, last_change = acked, now
        elif now - last_change > outages.longest:
            outages.longest, outages.longest_at = now - last_change, last_change - started


def _deploy(model: Model) -> None:
    model.deploy(CHARMS / "pulsar-k8s", num_units=len(PULSAR_UNITS))
    model.deploy(CHARMS / "bookie-k8s", num_units=4)
    model.integrate("pulsar-k8s", "bookie-k8s")
    model.deploy(TEST_CHARMS / "pulsar-client-k8s", "client")
    model.integrate("client", "pulsar-k8s")
    model.wait_for_idle(timeout=1200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", type=int, default=15, help="how many faults, one a minute (default 15)")
    parser.add_argument("--every", type=float, default=60.0, help="seconds from one fault to the next")
    parser.add_argument("--seed", type=int, default=12, help="the draw of faults and targets")
    parser.add_argument("--model", default="b-soak")
    parser.add_argument("--keep", action="store_true", help="leave the model for inspection")
    args = parser.parse_args()
    rng = random.Random(args.seed)  # noqa: S311 - a repeatable draw of faults, not a secret

    model = Model.create(args.model, update_status_interval=300)
    try:
        started_deploy = time.monotonic()
        _deploy(model)
        print(f"deployed in {time.monotonic() - started_deploy:.0f} s", flush=True)
        token = client_token(model)
        # Enough messages for every fault, its recovery, and a margin.
        count = int(RATE * (args.faults * (args.every + 120) + 300))
        writer = start_writer(model, token, TOPIC, count, timeout=count / RATE + 600, progress=PROGRESS)
        started = time.monotonic()
        outages, stop_watch = Outages(), threading.Event()
        watcher = threading.Thread(target=_watch_writer, args=(model, started, outages, stop_watch), daemon=True)
        watcher.start()
        _drive_for(model, 20)  # the writer's steady state before the first fault

        records: list[FaultRecord] = []
        stuck = ""
        # Each fault once before any repeats, in a seeded order.
        names = [name for _ in range(-(-args.faults // len(FAULTS))) for name in rng.sample(FAULTS, len(FAULTS))]
        for name in names[: args.faults]:
            due = time.monotonic() + args.every
            target, cause = _fault(model, name, rng)
            record = FaultRecord(name, target, time.monotonic() - started)
            print(f"{record.started:7.0f} s  {name} on {target}", flush=True)
            try:
                cause()
            except StuckFaultError as error:
                stuck = f"{name} at {record.started:.0f} s: {error}"
                print(f"{'':9}STUCK: {error}; no more faults", flush=True)
                break
            record.back_to_active = _recover(model, SETTLE)
            records.append(record)
            print(f"{'':9}back to all-active in {record.back_to_active:.1f} s", flush=True)
            if (left := due - time.monotonic()) > 0:
                _drive_for(model, left)

        stop_writer(writer)
        stop_watch.set()
        watcher.join()
        found = audit(model, writer, TOPIC)
        minutes = (time.monotonic() - started) / 60
        _report(records, found.acked, found.failed, found.lost, found.duplicates, outages, minutes)
        if stuck:
            print(f"STUCK: {stuck}")
    finally:
        if not args.keep:
            model.destroy()


def _report(
    records: list[FaultRecord],
    acked: set[int],
    failed: int,
    lost: set[int],
    duplicates: int,
    outages: Outages,
    minutes: float,
) -> None:
    print()
    print(f"{'fault':24} {'target':16} {'at (s)':>8} {'back to all-active (s)':>24}")
    for record in records:
        print(f"{record.name:24} {record.target:16} {record.started:8.0f} {record.back_to_active:24.1f}")
    print()
    print(f"soak: {minutes:.1f} min of writes at {RATE} msg/s, {len(records)} faults")
    print(f"acknowledged: {len(acked)}")
    print(f"failed sends: {failed}")
    print(f"lost (acknowledged, not readable): {len(lost)}")
    print(f"read twice: {duplicates}")
    print(f"longest stretch with no acknowledgement: {outages.longest:.1f} s (from {outages.longest_at:.0f} s)")
    if records:
        slowest = max(records, key=lambda r: r.back_to_active)
        print(f"slowest return to all-active: {slowest.back_to_active:.1f} s ({slowest.name})")
    if outages.errors:
        print(
            f"writer progress unreadable {len(outages.errors)} times of {outages.samples}; first: {outages.errors[0]}"
        )
    if lost:
        print(f"LOST: {sorted(lost)[:50]}")


if __name__ == "__main__":
    main()
