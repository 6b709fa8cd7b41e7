"""The README's main command: bring up an authenticated Pulsar cluster in the sandbox and use it.

juju deploy pulsar-k8s; juju deploy bookie-k8s -n 3; juju integrate pulsar-k8s bookie-k8s,
then a client application integrated over `pulsar` produces and consumes with its own
token, and an unauthenticated producer is refused; then `juju deploy loadgen-k8s -n 2;
juju integrate loadgen-k8s pulsar-k8s` and a short load test, whose results table it prints.
Prints what it did and `juju status`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sandbox import Model, SandboxError

ROOT = Path(__file__).resolve().parent.parent
CHARMS = ROOT / "charms"
CLIENT = ROOT / "tests" / "sandbox" / "charms" / "pulsar-client-k8s"
MESSAGES = 10_000
LOAD_RATE = 5_000
LOAD_TIMEOUT = 180


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def run_demo(model: Model, pulsar_units: int) -> None:
    started = time.monotonic()
    step(f"juju deploy pulsar-k8s -n {pulsar_units}; juju deploy bookie-k8s -n 3; juju integrate pulsar-k8s bookie-k8s")
    model.deploy(CHARMS / "pulsar-k8s", num_units=pulsar_units)
    model.deploy(CHARMS / "bookie-k8s", num_units=3)
    model.integrate("pulsar-k8s", "bookie-k8s")
    step("juju deploy pulsar-client-k8s client; juju integrate client pulsar-k8s")
    model.deploy(CLIENT, "client")
    model.integrate("client", "pulsar-k8s")
    model.wait_for_idle(timeout=900)
    print(f"every unit active {time.monotonic() - started:.1f}s after the first deploy; no manual step")

    step("juju run pulsar-k8s/leader cluster-status")
    leader = model.leader("pulsar-k8s") or "pulsar-k8s/0"
    for key, value in sorted(model.run(leader, "cluster-status").results.items()):
        print(f"{key}: {value}")

    step(f"juju run client/0 produce topic=readings count={MESSAGES}   (with the client's own token)")
    print(model.run("client/0", "produce", {"topic": "readings", "count": MESSAGES}).results)
    step(f"juju run client/0 consume topic=readings count={MESSAGES}")
    print(model.run("client/0", "consume", {"topic": "readings", "count": MESSAGES}).results)
    step("juju run client/0 produce topic=readings count=1 authenticate=false   (must be refused)")
    refused = model.run("client/0", "produce", {"topic": "readings", "count": 1, "authenticate": False})
    print(f"{refused.status}: {refused.message}")
    step("juju run client/0 produce namespace=public/default   (another namespace: must be refused)")
    refused = model.run("client/0", "produce", {"topic": "readings", "count": 1, "namespace": "public/default"})
    print(f"{refused.status}: {refused.message}")

    run_load_test(model)

    step("juju status")
    print(model.status(), end="")


def run_load_test(model: Model) -> None:
    step("juju deploy loadgen-k8s -n 2; juju integrate loadgen-k8s pulsar-k8s")
    model.deploy(CHARMS / "loadgen-k8s", num_units=2)
    model.integrate("loadgen-k8s", "pulsar-k8s")
    model.wait_for_idle(["loadgen-k8s"], timeout=300)
    leader = model.leader("loadgen-k8s") or "loadgen-k8s/0"
    params = {"rate": LOAD_RATE, "duration": "20s", "warm-up": "5s", "payload": "iot-avro"}
    step(f"juju run {leader} start-load-test rate={LOAD_RATE} duration=20s warm-up=5s payload=iot-avro")
    started = model.run(leader, "start-load-test", params)
    if started.status != "completed":
        raise SandboxError(f"start-load-test failed: {started.message}")
    test_id = started.results["test-id"]
    print(started.results["message"])
    deadline = time.monotonic() + LOAD_TIMEOUT
    while True:
        model.settle()
        results = model.run(leader, "load-test-results", {"test-id": test_id})
        if results.status == "completed" and "table" in results.results:
            break
        if time.monotonic() > deadline:
            raise SandboxError(f"load test {test_id} gave no results in {LOAD_TIMEOUT}s: {results.results}")
        time.sleep(2)
    step(f"juju run {leader} load-test-results test-id={test_id}")
    print(results.results["table"])
    print(f"files (juju scp {leader}:<path> .): {results.results['files']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--pulsar-units", type=int, default=1, help="1, or 3 for a ZooKeeper quorum")
    parser.add_argument("--destroy", action="store_true", help="destroy the model at the end")
    args = parser.parse_args()
    try:
        model = Model.create(args.model)
        run_demo(model, args.pulsar_units)
    except SandboxError as error:
        print(f"ERROR {error}", file=sys.stderr)
        return 1
    if args.destroy:
        model.destroy()
        print(f"\nmodel {args.model} destroyed")
    else:
        verbs = "status | run | restart-pod | destroy"
        print(f"\nThe model is still up: python -m sandbox -m {args.model} {verbs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
