"""The README's main command: bring up an authenticated Pulsar cluster in the sandbox and use it.

juju deploy pulsar-k8s; juju deploy bookie-k8s -n 3; juju integrate pulsar-k8s bookie-k8s,
then a client application integrated over `pulsar` produces and consumes with its own
token, and an unauthenticated producer is refused; then `juju deploy loadgen-k8s -n 2;
juju integrate loadgen-k8s pulsar-k8s` and a short load test, whose results table it prints;
then change data capture: PostgreSQL (the sandbox's postgresql-k8s, PostgreSQL from Debian) and
`juju deploy cdc-k8s; juju integrate cdc-k8s postgresql-k8s; juju integrate cdc-k8s pulsar-k8s`,
rows inserted, updated and deleted, and the enriched change events read back from Pulsar.
Prints what it did and `juju status`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sandbox import Model, SandboxError

ROOT = Path(__file__).resolve().parent.parent
CHARMS = ROOT / "charms"
TEST_CHARMS = ROOT / "tests" / "sandbox" / "charms"
CLIENT = TEST_CHARMS / "pulsar-client-k8s"
POSTGRESQL = TEST_CHARMS / "postgresql-k8s"
MESSAGES = 10_000
LOAD_RATE = 5_000
LOAD_TIMEOUT = 180
CDC_TIMEOUT = 300
CHANGES = [
    "INSERT INTO customers VALUES (1, 'Ada', 'eu-west'), (2, 'Grace', 'us-east')",
    "UPDATE customers SET name = 'Ada Lovelace' WHERE id = 1",
    "DELETE FROM customers WHERE id = 2",
]


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
    run_change_data_capture(model)

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


def _psql(model: Model, statement: str) -> str:
    """What `juju ssh --container postgresql postgresql-k8s/0 psql ...` does, as the database's admin."""
    client = model.pebble("postgresql-k8s/0", "postgresql")
    socket_dir = "/tmp"  # noqa: S108 (the server's socket directory, in its pod)
    argv = ["psql", "-h", socket_dir, "-U", "postgres", "-d", "cdc", "-X", "-v", "ON_ERROR_STOP=1", "-c", statement]
    stdout, _ = client.exec(argv, user="postgres", timeout=60).wait_output()
    return stdout.strip()


def run_change_data_capture(model: Model) -> None:
    step("juju deploy postgresql-k8s; juju deploy cdc-k8s; juju integrate cdc-k8s postgresql-k8s")
    model.deploy(POSTGRESQL)
    model.deploy(CHARMS / "cdc-k8s")
    model.integrate("cdc-k8s", "postgresql-k8s")
    model.wait_for_idle(["postgresql-k8s"], timeout=600)
    step("psql: CREATE TABLE customers (the table cdc-k8s captures by default: public.customers)")
    print(_psql(model, "CREATE TABLE customers (id int PRIMARY KEY, name text, region text)"))
    step("juju integrate cdc-k8s pulsar-k8s")
    model.integrate("cdc-k8s", "pulsar-k8s")
    model.wait_for_idle(timeout=900)
    leader = model.leader("cdc-k8s") or "cdc-k8s/0"
    print(f"{leader}: {model.units[leader].workload_status.message}")

    for statement in CHANGES:
        step(f"psql: {statement}")
        print(_psql(model, statement))
    deadline = time.monotonic() + CDC_TIMEOUT
    while True:  # the pipeline runs on its own: wait until the four changes are enriched
        status = model.run(leader, "cdc-status")
        if status.status == "completed" and int(status.results.get("enriched", "0")) >= len(CHANGES) + 1:
            break
        if time.monotonic() > deadline:
            raise SandboxError(f"the changes were not enriched within {CDC_TIMEOUT}s: {status.results}")
        model.settle()
        time.sleep(3)
    step(f"juju run {leader} cdc-status")
    for key, value in sorted(status.results.items()):
        print(f"{key}: {value}")

    topic = "persistent://cdc-k8s/default/cdc.public.customers-enriched"
    for event in _read_enriched(model, leader, topic, len(CHANGES) + 1):
        print(json.dumps(event))


def _read_enriched(model: Model, unit: str, topic: str, count: int) -> list[dict[str, object]]:
    """The enriched events, read with the image's own CLI and the unit's token (from its 0600 file)."""
    service_url = json.loads(model.relation("cdc-k8s", "pulsar-k8s").app_data["pulsar-k8s"]["service-url"])
    argv = [
        "/pulsar/bin/pulsar-client",
        "--url",
        service_url,
        "--auth-plugin",
        "org.apache.pulsar.client.impl.auth.AuthenticationToken",
        "--auth-params",
        "file:///var/lib/cdc/pulsar-token",
        "read",
        "-m",
        "earliest",
        "-n",
        str(count),
        topic,
    ]
    step(f"juju ssh --container cdc {unit} {' '.join(argv)}")
    process = model.pebble(unit, "cdc").exec(argv, working_dir="/pulsar", timeout=120)
    stdout, _ = process.wait_output()
    events = []
    for line in stdout.splitlines():
        if "content:" not in line:
            continue
        change = json.loads(line.split("content:", 1)[1])
        events.append({key: change[key] for key in ("op", "before", "after", "metadata")})
    return events


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
