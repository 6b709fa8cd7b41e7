"""Benchmark the sandbox: its own overhead per event, and the time to start a pod.

Overhead per event: a unit of the greeter test charm receives update-status, which the
charm does not observe, so the charm does no work of its own. For each event we record
  total  - from the model building the unit's State to absorbing the result;
  ops    - ops.testing's Context.run inside the unit agent (ops' dispatch, the same
           machinery Juju's dispatch runs);
and, as the reference measured in the same run, the same Context.run of the same charm
in this process with no sandbox around it. The sandbox's overhead is total - ops.

Pod start: pod network set-up, then Pebble up and answering (what `juju deploy` waits for
before pebble-ready), then the unit agent ready.

Prints figures only; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import ops
from ops import testing

from sandbox import Model, pods, sequences
from sandbox.paths import Artifacts
from sandbox.wire import EventSpec

ROOT = Path(__file__).resolve().parent.parent
GREETER = ROOT / "tests" / "sandbox" / "charms" / "greeter-k8s"


def _ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:7.1f} ms  p90 {_p90(values) * 1000:7.1f} ms"


def _p90(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.9) - 1] if len(values) >= 10 else max(values)


def reference_in_process(events: int) -> list[float]:
    """The same charm and event through ops.testing directly, with no sandbox."""
    sys.path[:0] = [str(GREETER / "src")]
    import charm

    ctx = testing.Context(charm.GreeterCharm, app_name="ref", unit_id=0)
    state = testing.State(containers={testing.Container("web", can_connect=False)})
    times = []
    for _ in range(events):
        started = time.perf_counter()
        ctx.run(ctx.on.update_status(), state)
        times.append(time.perf_counter() - started)
    return times


def pod_start_times(model: Model, count: int) -> list[float]:
    """Network namespace, veth and address, then a container's Pebble answering."""
    artifacts = Artifacts.load()
    times = []
    for index in range(count):
        root = model.root / "pods" / f"podstart-{index}"
        pod = pods.Pod(model.name, f"podstart/{index}", 200 + index, root)
        started = time.perf_counter()
        pod.create_network()
        container = pod.start_container("web", artifacts.pebble, pods.ImageTree(), {})
        pod.wait_pebble(container)
        ops.pebble.Client(socket_path=str(container.socket)).get_system_info()
        times.append(time.perf_counter() - started)
        pod.delete()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description="sandbox overhead benchmark")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--pods", type=int, default=6)
    args = parser.parse_args()

    model = Model.create("bench", update_status_interval=3600)
    try:
        pod_starts = []
        for index in range(args.pods):
            started = time.perf_counter()
            model.deploy(GREETER, f"pod{index}")
            pod_starts.append(time.perf_counter() - started)
        model.wait_for_idle(timeout=120)

        unit = model.units["pod0/0"]
        model.event_records.clear()
        for _ in range(args.events):
            sequences.queue(model.state, unit, EventSpec("update_status"))
            model.settle(units=[unit.name])
        records = [r for r in model.event_records if r.kind == "update_status"]
        totals = [r.total_seconds for r in records]
        ops_times = [r.charm_seconds for r in records]
        overheads = [r.total_seconds - r.charm_seconds for r in records]
        pod_starts_bare = pod_start_times(model, args.pods)
    finally:
        model.destroy()
    reference = reference_in_process(args.events)

    print(f"ops {ops.__version__}, {len(records)} update-status events on one unit, {args.pods} pods")
    print(f"event, end to end through the sandbox : {_ms(totals)}")
    print(f"  of which ops.testing run in the agent: {_ms(ops_times)}")
    print(f"  sandbox overhead (total - ops)       : {_ms(overheads)}")
    print(f"reference: same event in-process       : {_ms(reference)}")
    ratio = statistics.median(totals) / statistics.median(reference)
    print(f"ratio sandbox event / in-process event : {ratio:.1f}x")
    print(f"pod start (netns + Pebble answering)   : {_ms(pod_starts_bare)}")
    print(f"deploy of one unit (pod, Pebble, agent, install..pebble-ready hooks): {_ms(pod_starts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
