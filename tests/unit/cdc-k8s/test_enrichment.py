"""The built-in enrichment function, driven through a fake of the Python function Context."""

from __future__ import annotations

import ast
import base64
import enum
import importlib.util
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cdc_k8s.enrichment import builtin
from cdc_k8s.enrichment.builtin import Enrichment, consumer_topic, parse_routing

TOPIC = "persistent://cdc/default/shop.public.orders"
ENRICHED = f"{TOPIC}-enriched"
DEAD_LETTER = "persistent://cdc/default/cdc-dead-letter"
KEY = base64.b64encode(b'{"id":7}').decode()  # the partition key of a SEPARATED KeyValue message
NOW = 1_700_000_005_000
COMMIT = 1_700_000_004_250


class Result(enum.Enum):
    """Stands for pulsar.Result, a pybind11 enum whose members have a `name`."""

    Ok = 0
    Timeout = 6


class MessageId:
    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


@dataclass
class Published:
    topic: str
    payload: bytes
    properties: dict[str, str]
    callback: Any
    message_conf: dict[str, Any]

    def json(self) -> Any:
        return json.loads(self.payload)


class FakeContext:
    """Records what the function publishes, acks and measures; a test completes the sends."""

    def __init__(
        self,
        topic: str = TOPIC,
        key: str = KEY,
        user_config: dict[str, Any] | None = None,
        input_topics: list[str] | None = None,
    ) -> None:
        self.topic = topic
        self.key = key
        self.msgid = MessageId("(12,34,-1,-1)")
        self.user_config = {"dead-letter-topic": DEAD_LETTER} if user_config is None else user_config
        self.input_topics = [TOPIC] if input_topics is None else input_topics
        self.published: list[Published] = []
        self.metrics: list[tuple[str, float]] = []
        self.acks: list[tuple[Any, str]] = []
        self.config_reads = 0

    # the Context API the function uses
    def get_current_message_topic_name(self) -> str:
        return self.topic

    def get_message_id(self) -> Any:
        return self.msgid

    def get_partition_key(self) -> str:
        return self.key

    def get_function_name(self) -> str:
        return "cdc-enrichment"

    def get_input_topics(self) -> list[str]:
        return self.input_topics

    def get_user_config_value(self, key: str) -> Any:
        self.config_reads += 1
        return self.user_config.get(key)

    def get_logger(self) -> logging.Logger:
        return logging.getLogger("enrichment-test")

    def record_metric(self, metric_name: str, metric_value: float) -> None:
        self.metrics.append((metric_name, metric_value))

    def publish(
        self,
        topic_name: str,
        message: bytes,
        serde_class_name: str = "serde.IdentitySerDe",
        properties: dict[str, str] | None = None,
        compression_type: Any = None,
        callback: Any = None,
        message_conf: dict[str, Any] | None = None,
    ) -> None:
        assert isinstance(message, bytes)
        self.published.append(Published(topic_name, message, properties or {}, callback, message_conf or {}))

    def ack(self, msgid: Any, topic: str) -> None:
        self.acks.append((msgid, topic))

    # test helpers
    def complete(self, result: Result = Result.Ok, index: int = -1) -> None:
        self.published[index].callback(result, MessageId("(99,1,-1,-1)"))

    def metric(self, name: str) -> list[float]:
        return [value for metric, value in self.metrics if metric == name]

    @property
    def only(self) -> Published:
        assert len(self.published) == 1
        return self.published[0]


def source(**overrides: Any) -> dict[str, Any]:
    """The `source` block of a Debezium 1.9.7 PostgreSQL event (pgoutput)."""
    return {
        "version": "1.9.7.Final",
        "connector": "postgresql",
        "name": "shop",
        "ts_ms": COMMIT,
        "snapshot": "false",
        "db": "shop",
        "sequence": '["24023928","24024160"]',
        "schema": "public",
        "table": "orders",
        "txId": 555,
        "lsn": 24024160,
        "xmin": None,
        **overrides,
    }


ROW = {"id": 7, "region": "eu-west", "amount": "10.50", "note": "café"}
INSERT = {"before": None, "after": ROW, "source": source(), "op": "c", "ts_ms": COMMIT + 40, "transaction": None}
UPDATE = {
    "before": None,  # REPLICA IDENTITY DEFAULT: no old row on an update
    "after": {**ROW, "amount": "12.00"},
    "source": source(),
    "op": "u",
    "ts_ms": COMMIT + 40,
    "transaction": None,
}
DELETE = {
    "before": {"id": 7, "region": None, "amount": None, "note": None},  # only the key columns
    "after": None,
    "source": source(),
    "op": "d",
    "ts_ms": COMMIT + 40,
    "transaction": None,
}
READ = {
    "before": None,
    "after": ROW,
    "source": source(snapshot="true", txId=550, lsn=24000000, sequence='[null,"24000000"]'),
    "op": "r",
    "ts_ms": COMMIT + 40,
    "transaction": None,
}
TRUNCATE = {"before": None, "after": None, "source": source(), "op": "t", "ts_ms": COMMIT + 40, "transaction": None}


def run(value: Any, ctx: FakeContext | None = None) -> FakeContext:
    ctx = ctx or FakeContext()
    assert Enrichment(clock=lambda: NOW).process(value, ctx) is None
    return ctx


def encoded(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope).encode()


# ---------------------------------------------------------------- enrichment


@pytest.mark.parametrize("envelope", [INSERT, UPDATE, DELETE, READ, TRUNCATE], ids=["c", "u", "d", "r", "t"])
def test_a_change_goes_to_the_enriched_topic_with_metadata(envelope: dict[str, Any]) -> None:
    # Given a Debezium change envelope as the message value
    # When the function processes it
    ctx = run(encoded(envelope))

    # Then the envelope, unchanged, plus metadata goes to <input topic>-enriched
    out = ctx.only
    assert out.topic == ENRICHED
    assert out.json() == {
        **envelope,
        "metadata": {
            "processed_at": NOW,
            "enriched": True,
            "function_name": "cdc-enrichment",
            "source_lag_ms": NOW - COMMIT,
        },
    }
    # compact JSON, UTF-8
    assert b", " not in out.payload
    assert b": " not in out.payload
    # the key stays, so a row's changes keep their order on a partitioned output
    assert out.message_conf == {"partition_key": KEY, "event_timestamp": COMMIT}
    assert out.properties == {"source-topic": TOPIC, "source-message-id": "(12,34,-1,-1)"}
    assert ctx.metric("enriched") == [1]
    assert ctx.metric("source_lag_ms") == [750]
    assert ctx.metric("dead_lettered") == []


def test_str_input_is_enriched_like_bytes() -> None:
    # Given the same change as bytes and as str
    as_bytes = run(encoded(INSERT))
    as_str = run(json.dumps(INSERT))

    # Then both produce the same output
    assert as_str.only.topic == as_bytes.only.topic == ENRICHED
    assert as_str.only.payload == as_bytes.only.payload


def test_a_message_without_key_is_published_without_one() -> None:
    # Given a message that has no partition key (a truncate has none)
    ctx = FakeContext(key="")

    # When it is processed
    run(encoded(TRUNCATE), ctx)

    # Then no empty key is set on the output
    assert "partition_key" not in ctx.only.message_conf


def test_a_partitioned_input_topic_loses_its_partition_suffix() -> None:
    # Given a message from partition 3 of a partitioned input topic
    ctx = FakeContext(topic=f"{TOPIC}-partition-3")

    # When it is processed and its send succeeds
    run(encoded(UPDATE), ctx)
    ctx.complete()

    # Then it goes to the enriched topic of the whole topic, and is acked on its own partition
    assert ctx.only.topic == ENRICHED
    assert ctx.only.properties["source-topic"] == f"{TOPIC}-partition-3"
    assert ctx.acks == [(ctx.msgid, f"{TOPIC}-partition-3")]


def test_the_user_config_is_read_once() -> None:
    # Given one function instance
    function, ctx = Enrichment(clock=lambda: NOW), FakeContext()

    # When it processes two messages
    function.process(encoded(INSERT), ctx)
    reads = ctx.config_reads
    function.process(encoded(UPDATE), ctx)

    # Then the second message did not read the config again
    assert reads > 0
    assert ctx.config_reads == reads


# ---------------------------------------------------------------- routing

ROUTING = {"dead-letter-topic": DEAD_LETTER, "routing-field": "after.region", "routing-map": {"eu-west": "eu"}}


@pytest.mark.parametrize(
    ("envelope", "topic"),
    [
        (INSERT, f"{ENRICHED}-eu"),  # hit
        ({**INSERT, "after": {**ROW, "region": "us-east"}}, ENRICHED),  # value not in the map
        ({**INSERT, "after": {"id": 7}}, ENRICHED),  # field missing
        ({**INSERT, "after": {**ROW, "region": None}}, ENRICHED),  # field null
        ({**DELETE, "before": ROW}, f"{ENRICHED}-eu"),  # a delete routes by its before
        (DELETE, ENRICHED),  # REPLICA IDENTITY DEFAULT: before has no region
        (TRUNCATE, ENRICHED),  # no row at all
    ],
    ids=["hit", "miss", "missing", "null", "delete-full", "delete-default", "truncate"],
)
def test_routing_by_a_field_of_the_row(envelope: dict[str, Any], topic: str) -> None:
    # Given routing by after.region with eu-west -> eu
    ctx = FakeContext(user_config=ROUTING)

    # When a change is processed
    run(encoded(envelope), ctx)

    # Then it goes to the routed topic when its value is in the map, else to the default
    assert ctx.only.topic == topic
    assert ctx.metric("enriched") == [1]


def test_routing_map_may_arrive_as_a_json_string_and_match_numbers() -> None:
    # Given routing on a numeric field, its map given as a JSON string
    config = {"routing-field": "source.txId", "routing-map": '{"555": "tx"}'}
    ctx = FakeContext(user_config=config)

    # When a change of transaction 555 is processed
    run(encoded(INSERT), ctx)

    # Then the number matched as its JSON text
    assert ctx.only.topic == f"{ENRICHED}-tx"


@pytest.mark.parametrize(
    ("field", "mapping", "error"),
    [
        (None, {"a": "b"}, "routing-field"),
        ("after..region", {"a": "b"}, "empty part"),
        ("after.region", "{not json", "not JSON"),
        ("after.region", ["eu"], "routing-map must be an object"),
        ("after.region", {"eu-west": "eu/west"}, "not a topic suffix"),
        ("after.region", {"eu-west": "eu-partition-1"}, "not a topic suffix"),
        ("after.region", {"eu-west": 3}, "not a topic suffix"),
    ],
)
def test_a_bad_routing_config_is_refused(field: Any, mapping: Any, error: str) -> None:
    # When the routing config is parsed
    with pytest.raises(ValueError, match=error):
        parse_routing(field, mapping)


def test_no_routing_config_means_no_routing() -> None:
    # The charm passes an empty field and map when routing is off
    assert parse_routing(None, None) is None
    assert parse_routing("", {}) is None


def test_a_field_without_a_map_routes_everything_to_the_default() -> None:
    ctx = FakeContext(user_config={"routing-field": "after.region", "routing-map": ""})
    run(encoded(INSERT), ctx)
    assert ctx.only.topic == ENRICHED


def test_a_suffix_may_hold_dots_and_dashes_as_the_charm_allows() -> None:
    routing = parse_routing("after.region", {"eu-west": "eu.west-1"})
    assert routing is not None
    assert routing.suffix_for(INSERT) == "eu.west-1"


def test_a_bad_config_dead_letters_every_message() -> None:
    # Given a routing map with a suffix that is no topic name
    ctx = FakeContext(user_config={**ROUTING, "routing-map": {"eu-west": "eu west"}})

    # When a valid change is processed
    run(encoded(INSERT), ctx)

    # Then it is not lost and not misrouted: it goes to the dead-letter topic, saying why
    assert ctx.only.topic == DEAD_LETTER
    assert ctx.only.properties["reason"].startswith("function configuration: routing-map['eu-west']")
    assert ctx.only.payload == encoded(INSERT)
    assert ctx.metric("dead_lettered") == [1]


# ---------------------------------------------------------------- dead letters


def without(envelope: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in envelope.items() if k != key}


BAD_INPUTS = [
    (b"\xff\xfe{}", "value is not UTF-8 (invalid start byte at byte 0)"),
    (b"", "value is empty (a tombstone?)"),
    (b"{not json", "value is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
    (b'{"op": NaN}', "value is not JSON (NaN is not JSON)"),
    (b"[1, 2]", "value is a JSON array, not an object"),
    (b'"c"', "value is a JSON string, not an object"),
    (encoded(without(INSERT, "op")), "op is null, not one of c, r, u, d, t"),
    (encoded({**INSERT, "op": "m"}), 'op is "m", not one of c, r, u, d, t'),
    (encoded(without(INSERT, "source")), "source is missing, not an object"),
    (encoded({**INSERT, "source": "shop"}), "source is string, not an object"),
    (encoded({**INSERT, "source": without(source(), "ts_ms")}), "source.ts_ms is missing, not an integer"),
    (encoded({**INSERT, "source": source(ts_ms="1700000004250")}), "source.ts_ms is string, not an integer"),
    (encoded({**INSERT, "source": source(ts_ms=1.5)}), "source.ts_ms is number, not an integer"),
    (encoded({**INSERT, "source": source(ts_ms=True)}), "source.ts_ms is boolean, not an integer"),
    (encoded(without(INSERT, "after")), "after is missing"),
    (encoded(without(UPDATE, "before")), "before is missing"),
    (encoded({**INSERT, "after": None}), "op c needs after to be object, not null"),
    (encoded({**READ, "before": ROW}), "op r needs before to be null, not object"),
    (encoded({**DELETE, "after": ROW}), "op d needs after to be null, not object"),
    (encoded({**UPDATE, "after": [1]}), "op u needs after to be object, not array"),
    (encoded({**TRUNCATE, "after": ROW}), "op t needs after to be null, not object"),
]


@pytest.mark.parametrize(("value", "reason"), BAD_INPUTS)
def test_what_is_not_a_change_envelope_goes_to_the_dead_letter_topic(value: bytes, reason: str) -> None:
    # Given a message value that is not a Debezium change envelope
    # When the function processes it (it must not raise)
    ctx = run(value)

    # Then it goes unchanged to the dead-letter topic, with the reason and where it came from
    out = ctx.only
    assert out.topic == DEAD_LETTER
    assert out.payload == value
    assert out.properties == {"reason": reason, "source-topic": TOPIC, "source-message-id": "(12,34,-1,-1)"}
    assert out.message_conf == {"partition_key": KEY}
    assert ctx.metric("dead_lettered") == [1]
    assert ctx.metric("enriched") == []


def test_a_bad_str_value_is_dead_lettered_as_its_utf8() -> None:
    # Given a str value that is not JSON
    ctx = run("café, not json")

    # Then its UTF-8 bytes go to the dead-letter topic
    assert ctx.only.payload == "café, not json".encode()
    assert ctx.only.properties["reason"].startswith("value is not JSON")


def test_a_value_of_another_type_is_dead_lettered() -> None:
    # Given a value the identity SerDe never gives (another SerDe configured by mistake)
    ctx = run(None)

    # Then it still goes to the dead-letter topic, saying what it was
    assert ctx.only.topic == DEAD_LETTER
    assert ctx.only.properties["reason"] == "value is a Python NoneType, not bytes or str"


def test_a_reason_is_one_bounded_line() -> None:
    # Given JSON nested too deep to decode, and an op with a long multi-line value
    deep = run(b"[" * 100_000)
    long_op = run(encoded({**INSERT, "op": "x\n" * 500}))

    # Then each reason is one line of at most 300 characters
    for ctx in (deep, long_op):
        reason = ctx.only.properties["reason"]
        assert "\n" not in reason
        assert len(reason) <= 300
        assert ctx.only.topic == DEAD_LETTER


def test_the_dead_letter_topic_defaults_next_to_the_input() -> None:
    # Given no dead-letter-topic in the user config, and a partitioned input
    ctx = FakeContext(topic=f"{TOPIC}-partition-0", user_config={})

    # When a bad value is processed
    run(b"nope", ctx)

    # Then it goes to <input topic>-dead-letter
    assert ctx.only.topic == f"{TOPIC}-dead-letter"


# ---------------------------------------------------------------- delivery


@pytest.mark.parametrize("value", [encoded(INSERT), b"not json"], ids=["enriched", "dead-lettered"])
def test_the_input_is_acked_only_after_its_send_succeeded(value: bytes) -> None:
    # Given a processed message whose send is still in flight
    ctx = run(value)
    assert ctx.acks == []

    # When the broker confirms the send
    ctx.complete(Result.Ok)

    # Then the input is acknowledged, by the id and topic it had
    assert ctx.acks == [(ctx.msgid, TOPIC)]


@pytest.mark.parametrize("value", [encoded(INSERT), b"not json"], ids=["enriched", "dead-lettered"])
def test_a_failed_send_leaves_the_input_unacked(value: bytes) -> None:
    # Given a processed message
    ctx = run(value)

    # When its send fails
    ctx.complete(Result.Timeout)

    # Then the input is not acknowledged (the broker redelivers it) and the failure is counted
    assert ctx.acks == []
    assert ctx.metric("publish_failed") == [1]


def test_the_callback_acks_the_message_it_was_sent_for() -> None:
    # Given two messages processed before either send completes
    function, ctx = Enrichment(clock=lambda: NOW), FakeContext()
    first = ctx.msgid
    function.process(encoded(INSERT), ctx)
    ctx.msgid = second = MessageId("(12,35,-1,-1)")
    function.process(encoded(UPDATE), ctx)

    # When the sends complete
    ctx.complete(index=0)
    ctx.complete(index=1)

    # Then each input is acked, though the context now describes the second
    assert ctx.acks == [(first, TOPIC), (second, TOPIC)]


def test_an_error_while_acking_does_not_escape_the_callback() -> None:
    # Given a context whose ack raises (the client would end the process on an escaping error)
    ctx = run(encoded(INSERT))

    def broken_ack(msgid: Any, topic: str) -> None:
        raise ValueError(f"Invalid topicname {topic}")

    ctx.ack = broken_ack  # type: ignore[method-assign]

    # When the send completes, the callback returns normally
    ctx.complete(Result.Ok)


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ([TOPIC], TOPIC),  # the full name
        (["cdc/default/shop.public.orders"], "cdc/default/shop.public.orders"),  # tenant/ns/name
        (["shop.public.orders"], TOPIC),  # a short name outside public/default: not that consumer
        ([r"persistent://cdc/default/shop\.public\..*"], r"persistent://cdc/default/shop\.public\..*"),  # a pattern
        (["[", TOPIC], TOPIC),  # a name that is no regex is skipped
        ([], TOPIC),
    ],
)
def test_the_ack_names_the_consumer_as_the_instance_keys_it(inputs: list[str], expected: str) -> None:
    assert consumer_topic(TOPIC, inputs) == expected


def test_a_short_input_name_in_public_default_acks_by_that_name() -> None:
    # Given a function given its input by short name, reading partition 1 of it
    topic = "persistent://public/default/orders-partition-1"

    # Then the ack names the consumer as the instance keyed it
    assert consumer_topic(topic, ["orders"]) == "orders"


# ---------------------------------------------------------------- packaging


def test_the_module_imports_only_the_standard_library() -> None:
    # Given the module's source
    tree = ast.parse(Path(builtin.__file__).read_text())

    # Then every import is of the standard library (it runs in the function instance as one file)
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


def test_the_module_loads_from_its_file_alone() -> None:
    # Given the module file loaded under another name and not registered in sys.modules,
    # as the charm checks a module and as the instance imports it from its own directory
    spec = importlib.util.spec_from_file_location("candidate", builtin.__file__)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)

    # When it runs
    spec.loader.exec_module(module)

    # Then it defines the function class
    assert callable(module.Enrichment().process)


def test_the_instance_can_build_the_function_without_arguments() -> None:
    # The Python instance calls the class with no arguments, then process(value, context)
    ctx = FakeContext()
    Enrichment().process(encoded(INSERT), ctx)
    assert ctx.only.json()["metadata"]["processed_at"] > COMMIT
