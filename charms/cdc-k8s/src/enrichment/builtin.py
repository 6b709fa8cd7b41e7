"""The built-in enrichment function: a Pulsar Python Function over Debezium change events.

The charm pushes this one file into the workload container and runs it with
`bin/function-localrunner`, class `<file name>.Enrichment`, on a Failover subscription with one
instance, and with the instance's own acknowledgement off (processing guarantees MANUAL, or
autoAck false): this function acknowledges each input itself. It imports only the standard
library, so the charm's unit tests can import it without pulsar-client.

Each input value is the JSON of a Debezium 1.9 PostgreSQL change envelope (`before`, `after`,
`source`, `op`, `ts_ms`, `transaction`). A valid envelope gets a `metadata` object and goes to
`<input topic>-enriched`, or to `<input topic>-enriched-<suffix>` when routing applies. Anything
else goes unchanged to the dead-letter topic with a one-line `reason` property. Either way the
input is acknowledged only once that send succeeded (at-least-once), and the output keeps the
input's partition key, so a key's changes stay on one partition of a partitioned output.

User config (`--user-config`, a JSON object):
    dead-letter-topic  str   full topic name; default `<input topic>-dead-letter`
    routing-field      str   dotted path into the envelope, e.g. `after.region`
    routing-map        dict  the field's value as a string -> topic suffix, e.g. {"eu-west": "eu"}
                             (a string holding such a JSON object is accepted too)
routing-field and routing-map go together. A configuration error sends every message to the
dead-letter topic with the error as its reason: loud, and nothing is lost.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Protocol

# Row operations of a Debezium 1.9 envelope, and what `before` / `after` must hold for each.
# An update's and a delete's `before` is null unless the table's REPLICA IDENTITY provides it.
ROW_SHAPES: dict[str, tuple[str, str]] = {
    "c": ("null", "object"),  # insert
    "r": ("null", "object"),  # snapshot read
    "u": ("object or null", "object"),  # update
    "d": ("object or null", "null"),  # delete
}
# A truncate (op "t") has no row: Debezium 1.9 emits it only with truncate.handling.mode=include.
# It is a real change of the table, so it is enriched like the others; `before`/`after` are null.
TRUNCATE = "t"

DEAD_LETTER_SUFFIX = "-dead-letter"
ENRICHED_SUFFIX = "-enriched"
PARTITION = re.compile(r"-partition-\d+$")
SUFFIX = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAX_REASON = 300

METRIC_ENRICHED = "enriched"
METRIC_DEAD_LETTERED = "dead_lettered"
METRIC_LAG = "source_lag_ms"
METRIC_SEND_FAILED = "publish_failed"


class Context(Protocol):
    """The part of the Python function instance's Context (`pulsar.Context`) used here."""

    def get_current_message_topic_name(self) -> str: ...
    def get_message_id(self) -> Any: ...
    def get_partition_key(self) -> str | None: ...
    def get_function_name(self) -> str: ...
    def get_input_topics(self) -> list[str]: ...
    def get_user_config_value(self, key: str) -> Any: ...
    def get_logger(self) -> Any: ...
    def record_metric(self, metric_name: str, metric_value: float) -> None: ...
    def publish(
        self,
        topic_name: str,
        message: bytes,
        serde_class_name: str = "serde.IdentitySerDe",
        properties: dict[str, str] | None = None,
        compression_type: Any = None,
        callback: Callable[[Any, Any], None] | None = None,
        message_conf: dict[str, Any] | None = None,
    ) -> None: ...
    def ack(self, msgid: Any, topic: str) -> None: ...


class Routing:
    """Where a change goes, by the value of one field of the envelope."""

    def __init__(self, path: tuple[str, ...], suffixes: Mapping[str, str]) -> None:
        self.path = path
        self.suffixes = dict(suffixes)

    def suffix_for(self, envelope: Mapping[str, Any]) -> str | None:
        """The topic suffix for this change, or None for the default output.

        A delete has no `after`: a path into `after` then reads `before`, so a delete follows
        the row it removes. With REPLICA IDENTITY DEFAULT `before` holds only the key columns,
        so a delete routes by a non-key field only when the table has REPLICA IDENTITY FULL.
        """
        path = self.path
        if path[0] == "after" and envelope.get("after") is None:
            path = ("before", *path[1:])
        node: Any = envelope
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        if isinstance(node, bool):
            value = "true" if node else "false"
        elif isinstance(node, (int, float)):
            value = json.dumps(node)
        elif isinstance(node, str):
            value = node
        else:
            return None
        return self.suffixes.get(value)


def parse_routing(routing_field: Any, routing_map: Any) -> Routing | None:
    """Routing from the user config, None when it is off; ValueError says what is wrong.

    The charm can call this too, to refuse a bad config before the function starts.
    """
    if routing_field in (None, "") and routing_map in (None, "", {}):
        return None
    if not isinstance(routing_field, str) or not routing_field:
        raise ValueError("routing-map is set but routing-field is not a dotted path")
    path = tuple(routing_field.split("."))
    if not all(path):
        raise ValueError(f"routing-field {routing_field!r} has an empty part")
    if routing_map in (None, ""):
        routing_map = {}  # a field without a map routes nothing: everything to the default output
    if isinstance(routing_map, str):
        try:
            routing_map = json.loads(routing_map)
        except ValueError as e:
            raise ValueError(f"routing-map is not JSON: {e}") from None
    if not isinstance(routing_map, dict):
        raise ValueError("routing-map must be an object of field value -> topic suffix")
    for value, suffix in routing_map.items():
        if not isinstance(suffix, str) or not SUFFIX.fullmatch(suffix) or PARTITION.search(f"-{suffix}"):
            raise ValueError(f"routing-map[{value!r}]: {suffix!r} is not a topic suffix (letters, digits, '_-.')")
    return Routing(path, routing_map)


def base_topic(topic: str) -> str:
    """The topic without the `-partition-N` that a partitioned topic's messages carry."""
    return PARTITION.sub("", topic)


def full_topic_name(name: str) -> str:
    """A topic name as the broker spells it (`x` -> `persistent://public/default/x`)."""
    if "://" in name:
        return name
    if name.count("/") == 2:
        return f"persistent://{name}"
    return f"persistent://public/default/{name}"


def consumer_topic(topic: str, input_topics: list[str]) -> str:
    """The name under which the instance keeps the consumer of `topic`, for `Context.ack`.

    `ack` finds the consumer by that name, or by the name without `-partition-N`. The name is
    the input as the function was given it: short (`orders`), or a regex for `--topics-pattern`,
    while the message carries the full name; ack by the full name then raises ValueError.
    """
    base = base_topic(topic)
    if topic in input_topics or base in input_topics:
        return topic
    for name in input_topics:
        if full_topic_name(name) == base:
            return name
    for name in input_topics:
        try:
            if re.fullmatch(name, base):
                return name
        except re.error:
            continue
    return topic


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for reasons."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fits(value: Any, shape: str) -> bool:
    return (value is None and "null" in shape) or (isinstance(value, dict) and "object" in shape)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def envelope_problem(doc: Any) -> str | None:
    """Why a decoded value is not a Debezium change envelope, or None when it is one."""
    if not isinstance(doc, dict):
        return f"value is a JSON {json_type(doc)}, not an object"
    op = doc.get("op")
    if op not in ROW_SHAPES and op != TRUNCATE:
        return f"op is {json.dumps(op)}, not one of c, r, u, d, t"
    source = doc.get("source")
    if not isinstance(source, dict):
        return f"source is {json_type(source) if 'source' in doc else 'missing'}, not an object"
    ts_ms = source.get("ts_ms")
    if not isinstance(ts_ms, int) or isinstance(ts_ms, bool):
        return f"source.ts_ms is {json_type(ts_ms) if 'ts_ms' in source else 'missing'}, not an integer"
    before_shape, after_shape = ROW_SHAPES.get(op, ("null", "null"))
    for key, shape in (("before", before_shape), ("after", after_shape)):
        if key not in doc and op != TRUNCATE:
            return f"{key} is missing"
        if not _fits(doc.get(key), shape):
            return f"op {op} needs {key} to be {shape}, not {json_type(doc[key])}"
    return None


def decode(value: Any) -> dict[str, Any] | str:
    """The envelope in a message value (bytes or str), or the reason there is none."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            return f"value is not UTF-8 ({e.reason} at byte {e.start})"
    elif isinstance(value, str):
        text = value
    else:
        return f"value is a Python {type(value).__name__}, not bytes or str"
    if not text.strip():
        # A Debezium tombstone after a delete has no value: tombstones.on.delete=false avoids them.
        return "value is empty (a tombstone?)"
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        return f"value is not JSON ({e})"
    return envelope_problem(doc) or doc


def raw_bytes(value: Any) -> bytes:
    """The input as it came, for the dead-letter topic."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8", "surrogatepass")


def one_line(text: str) -> str:
    """A reason fit for a message property: one line, bounded."""
    line = " ".join(text.split())
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 3] + "..."


def send_succeeded(result: Any) -> bool:
    """Whether a send callback's `pulsar.Result` is Ok.

    The result is a pybind11 enum member; compared by name so this module needs no pulsar import.
    """
    return getattr(result, "name", None) == "Ok"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Config:
    """The user config, read once: it does not change while the instance runs."""

    def __init__(self) -> None:
        self.dead_letter_topic: str | None = None
        self.routing: Routing | None = None
        self.error: str | None = None

    @classmethod
    def read(cls, context: Context) -> Config:
        dead_letter_topic = context.get_user_config_value("dead-letter-topic")
        config = cls()
        if isinstance(dead_letter_topic, str) and dead_letter_topic:
            config.dead_letter_topic = dead_letter_topic
        elif dead_letter_topic is not None:
            config.error = "dead-letter-topic must be a topic name"
        try:
            config.routing = parse_routing(
                context.get_user_config_value("routing-field"), context.get_user_config_value("routing-map")
            )
        except ValueError as e:
            config.error = str(e)
        return config


class Enrichment:
    """The function: the instance builds it with no arguments and calls `process` per message."""

    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        self.clock = clock
        self.config: Config | None = None
        self.ack_topics: dict[str, str] = {}

    def process(self, value: Any, context: Context) -> None:
        """Enrich one change, or dead-letter it; all output goes through `context.publish`."""
        if self.config is None:
            self.config = Config.read(context)
        topic = context.get_current_message_topic_name()
        envelope = decode(value)
        if isinstance(envelope, dict) and self.config.error is not None:
            envelope = f"function configuration: {self.config.error}"
        if isinstance(envelope, str):
            self._dead_letter(context, topic, raw_bytes(value), reason=envelope)
            return None

        suffix = self.config.routing.suffix_for(envelope) if self.config.routing else None
        processed_at = self.clock()
        source_ts_ms: int = envelope["source"]["ts_ms"]
        lag = processed_at - source_ts_ms  # negative only when the hosts' clocks disagree
        envelope["metadata"] = {
            "processed_at": processed_at,
            "enriched": True,
            "function_name": context.get_function_name(),
            "source_lag_ms": lag,
        }
        output = base_topic(topic) + ENRICHED_SUFFIX + (f"-{suffix}" if suffix else "")
        payload = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        self._send(context, topic, output, payload, {}, event_timestamp=source_ts_ms)
        context.record_metric(METRIC_ENRICHED, 1)
        context.record_metric(METRIC_LAG, lag)
        return None

    def _dead_letter(self, context: Context, topic: str, payload: bytes, reason: str) -> None:
        assert self.config is not None
        target = self.config.dead_letter_topic or base_topic(topic) + DEAD_LETTER_SUFFIX
        reason = one_line(reason)
        context.get_logger().warning("dead-lettering a message of %s: %s", topic, reason)
        self._send(context, topic, target, payload, {"reason": reason})
        context.record_metric(METRIC_DEAD_LETTERED, 1)

    def _send(
        self,
        context: Context,
        topic: str,
        output: str,
        payload: bytes,
        properties: dict[str, str],
        event_timestamp: int | None = None,
    ) -> None:
        """Publish, and acknowledge the input in the send callback once the broker has it.

        The message id and topic are taken now: when the callback runs, the context already
        describes a later message. The partition key is kept so that the output producer routes
        a key's changes to one partition; one instance and one producer per output topic send
        them in order. If `publish` itself raises (no producer: broker or auth down), the
        exception reaches the instance, which negatively acknowledges the input.
        """
        msgid = context.get_message_id()
        properties = {**properties, "source-topic": topic, "source-message-id": str(msgid)}
        message_conf: dict[str, Any] = {}
        key = context.get_partition_key()
        if key:
            message_conf["partition_key"] = key
        if event_timestamp:
            message_conf["event_timestamp"] = event_timestamp
        callback = partial(self._on_sent, context, msgid, self._ack_topic(context, topic), output)
        context.publish(output, payload, properties=properties, callback=callback, message_conf=message_conf)

    def _ack_topic(self, context: Context, topic: str) -> str:
        if topic not in self.ack_topics:
            try:
                inputs = list(context.get_input_topics())
            except Exception:  # noqa: BLE001  an older Context without input topics: ack by the name
                inputs = []
            self.ack_topics[topic] = consumer_topic(topic, inputs)
        return self.ack_topics[topic]

    @staticmethod
    def _on_sent(context: Context, msgid: Any, ack_topic: str, output: str, result: Any, _sent_id: Any) -> None:
        """Acknowledge the input once its output is stored; on a failed send, leave it unacked.

        The Python Context has no negative acknowledgement, so a failed input stays pending:
        the broker redelivers it after the consumer's ack timeout (the function's `timeoutMs`,
        the consumer's unacked_messages_timeout_ms) or when the consumer reconnects, e.g. after
        a restart. Without an ack timeout only a restart redelivers it, and a redelivered
        message can come after later changes of the same key.
        """
        try:
            if send_succeeded(result):
                context.ack(msgid, ack_topic)
                return
            context.record_metric(METRIC_SEND_FAILED, 1)
            context.get_logger().error("send to %s failed (%s): input %s stays unacknowledged", output, result, msgid)
        except Exception:  # noqa: BLE001  an exception from a send callback ends the client's process
            context.get_logger().exception("acknowledging input %s of %s failed", msgid, ack_topic)
