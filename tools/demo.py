"""The README's main command: bring up the demo deployment in the sandbox and report it.

Today the Pulsar charms are skeletons (their bring-up is the next piece of work), so the
demo deploys them as a user would and shows where each stands, then shows the sandbox's
mechanics end to end with its test charm: relation data both ways, a secret, an action
across pods, and a pod restart that keeps storage.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sandbox import Model, SandboxError

ROOT = Path(__file__).resolve().parent.parent
CHARMS = ROOT / "charms"
GREETER = ROOT / "tests" / "sandbox" / "charms" / "greeter-k8s"


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def run_demo(model: Model) -> None:
    started = time.monotonic()
    step("juju deploy pulsar-k8s; juju deploy bookie-k8s -n 3; juju integrate pulsar-k8s bookie-k8s")
    model.deploy(CHARMS / "pulsar-k8s")
    model.deploy(CHARMS / "bookie-k8s", num_units=3)
    model.integrate("pulsar-k8s", "bookie-k8s")
    step("juju deploy loadgen-k8s; juju integrate loadgen-k8s pulsar-k8s; juju deploy cdc-k8s")
    model.deploy(CHARMS / "loadgen-k8s")
    model.integrate("loadgen-k8s", "pulsar-k8s")
    model.deploy(CHARMS / "cdc-k8s")
    model.wait_for_idle(status=None, timeout=180)
    elapsed = time.monotonic() - started
    print(f"every unit settled in {elapsed:.1f}s; each read Pulsar's version from its own pod")

    step("sandbox mechanics with the test charm: deploy greeter x2, integrate")
    model.deploy(GREETER, "greeter", num_units=2)
    model.deploy(GREETER, "listener", config={"message": "hi"})
    relation = model.integrate("greeter:greeting", "listener:upstream")
    model.wait_for_idle(["greeter", "listener"], timeout=120)
    data = model.relation_data(relation.id)
    print(f"greeter app data: {dict(data.app_data['greeter'])}")
    print(f"listener/0 unit data: {dict(data.unit_data['listener/0'])}")

    step("juju run listener/0 fetch url=http://<greeter/0 fqdn>:8080/ (across pods, by FQDN)")
    fetched = model.run("listener/0", "fetch", {"url": f"http://{model.fqdn('greeter/0')}:8080/"})
    print(f"{fetched.status}: {fetched.results}")

    step("write a file on storage and one outside it, restart the pod, read both back")
    model.run("listener/0", "write-files", {"content": "survives"})
    model.restart_pod("listener/0")
    model.wait_for_idle(["listener"], timeout=120)
    print(model.run("listener/0", "read-files").results)

    step("juju status")
    print(model.status(), end="")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--destroy", action="store_true", help="destroy the model at the end")
    args = parser.parse_args()
    try:
        model = Model.create(args.model)
        run_demo(model)
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
