"""A writer that keeps producing from the test client's pod while a test changes the cluster.

It records every message the brokers acknowledged; an audit subscription, made before the
first message, reads them back at the end: an acknowledged message it cannot read is lost.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import ops

from sandbox import Model
from sandbox.scheduler import ActionResult

CLIENT = ("client/0", "client")
IMAGE_UID = 10000
RATE = 40  # messages a second


@dataclass(frozen=True)
class Audit:
    """What a writer saw, and what the audit subscription read back."""

    acked: set[int]
    failed: int
    lost: set[int]
    duplicates: int


def grant(model: Model) -> dict[str, str]:
    """What pulsar-k8s granted the client (its application databag, decoded)."""
    relation = model.relation("pulsar-k8s", "client")
    return {key: json.loads(value) for key, value in relation.app_data["pulsar-k8s"].items()}


def client_token(model: Model) -> str:
    """The client's token, from the secret pulsar-k8s granted it (its latest revision)."""
    secret_id = grant(model)["secret-credentials"]
    secret = next(s for s in model.secrets.values() if s.id == secret_id)
    return secret.revisions[secret.latest]["token"]


def start_writer(
    model: Model, token: str, topic: str, count: int, timeout: float = 600, progress: str | None = None
) -> ops.pebble.ExecProcess[str]:
    """A producer in the client's pod writing `count` messages at 40/s, recording every acknowledgement.

    An audit subscription on the topic exists before it writes, so every message stays to be read.
    With `progress` (a path in the client's container) it keeps its counts so far there.
    """
    connection = grant(model)
    model.run(CLIENT[0], "consume", {"topic": topic, "count": 0, "subscription": "audit"})
    request = {
        "mode": "produce", "url": connection["service-url"], "token": token, "ca": connection.get("tls-ca"),
        "topic": f"persistent://client/default/{topic}", "count": count, "rate": RATE, "progress": progress,
    }  # fmt: skip
    return model.pebble(*CLIENT).exec(
        ["python3", "/pulsar/tester/client.py"],
        stdin=json.dumps(request),
        user_id=IMAGE_UID,
        group_id=0,
        timeout=timeout,
    )


def writer_progress(model: Model, path: str) -> dict[str, int]:
    """The writer's counts so far (sent, acked, failed), from its `progress` file."""
    return json.loads(model.pebble(*CLIENT).pull(path).read())


def stop_writer(writer: ops.pebble.ExecProcess[str]) -> None:
    """Ask the writer to stop sending; it still waits for the outcome of what it sent."""
    writer.send_signal("SIGTERM")


def audit(model: Model, writer: ops.pebble.ExecProcess[str], topic: str) -> Audit:
    """Once the writer is done: what it saw acknowledged and failed, and what the audit reads of it."""
    output, _ = writer.wait_output()
    written = json.loads(output.strip().splitlines()[-1])
    acked = set(written["acked-indices"])
    # A send that timed out may still have been stored: read up to every message sent.
    params = {"topic": topic, "count": len(acked) + written["failed"], "subscription": "audit", "indices": True}
    consumed = model.run(CLIENT[0], "consume", params)
    assert consumed.status == "completed", consumed.message
    read = set(json.loads(consumed.results["indices"]))
    return Audit(acked, written["failed"], acked - read, int(consumed.results["duplicates"]))


def acknowledged_and_lost(model: Model, writer: ops.pebble.ExecProcess[str], topic: str) -> tuple[set[int], set[int]]:
    """Once the writer is done: the indices it saw acknowledged, and those of them the audit cannot read."""
    found = audit(model, writer, topic)
    return found.acked, found.lost


def run_while_topics_move(model: Model, action: str, params: dict[str, object], within: float = 90.0) -> ActionResult:
    """Run a client action, again while it fails because its topic is moving to a broker.

    Right after the ensemble changes a broker can lose its ZooKeeper session for a moment and
    give up its bundles (growing through two servers has no fault tolerance), and a removed
    broker's ownership lasts until its session expires, so a lookup times out or points at the
    removed broker until another broker owns the bundle. When a lone pulsar-k8s pod restarts,
    its standalone ZooKeeper restarts with it: bookies whose sessions expired meanwhile are
    unknown to the broker until they register again (seen: two of three, for 8 s, every unit
    active), and the broker cannot recover the topic's last ledger until then, so the first
    lookup outlasts the test client's 15 s operation timeout (half Pulsar's default). Clients
    retry; so do these tests, and only on those two failures: any other (authorization above
    all) is final at once.
    """
    deadline = time.monotonic() + within
    while True:
        result = model.run(CLIENT[0], action, params)
        transient = "TimeOut" in result.message or "ConnectError" in result.message
        if result.status == "completed" or not transient or time.monotonic() > deadline:
            return result
        time.sleep(5)
