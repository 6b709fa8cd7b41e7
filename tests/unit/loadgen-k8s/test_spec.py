"""loadgen-k8s: the load-test specification parsed from start-load-test's params."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from loadgen_k8s.managers.spec import (
    DEFAULTS,
    Compression,
    Engine,
    InvalidParamsError,
    LoadTestSpec,
    Payload,
    parse_duration,
    per_unit_rate,
)

CHARMCRAFT = Path(__file__).resolve().parents[3] / "charms" / "loadgen-k8s" / "charmcraft.yaml"

# name: (lowest, highest) of every integer parameter
INT_BOUNDS = {
    "size": (1, 1048576),
    "partitions": (1, 1024),
    "device-count": (1, 10_000_000),
    "batch-delay-ms": (0, 10_000),
    "batch-max-messages": (1, 100_000),
    "batch-max-bytes": (1024, 5242880),
    "producers-per-unit": (1, 32),
}
INT_FIELDS = {
    "size": "size",
    "partitions": "partitions",
    "device-count": "device_count",
    "batch-delay-ms": "batch_delay_ms",
    "batch-max-messages": "batch_max_messages",
    "batch-max-bytes": "batch_max_bytes",
    "producers-per-unit": "producers_per_unit",
}
WITH_BYTES = {"payload": "bytes"}  # size is kept for bytes payloads only


def _refused(params: dict[str, object]) -> str:
    with pytest.raises(InvalidParamsError) as refused:
        LoadTestSpec.parse(params)
    return str(refused.value)


def test_defaults_follow_the_seed_platform() -> None:
    # Given no parameters at all
    # When they are parsed
    spec = LoadTestSpec.parse({})

    # Then the defaults are those of the seed: 100,000 devices, AVRO, LZ4, our Java engine
    assert spec == LoadTestSpec(
        rate=1000,
        duration_s=60,
        warm_up_s=10,
        payload=Payload.IOT_AVRO,
        size=None,
        topic="sensor-readings",
        partitions=8,
        device_count=100_000,
        keys=True,
        batch_delay_ms=1,
        batch_max_messages=1000,
        batch_max_bytes=131072,
        compression=Compression.LZ4,
        producers_per_unit=1,
        consumers=True,
        engine=Engine.JAVA,
    )
    assert not spec.find_max
    assert spec.batching


def test_juju_filled_defaults_parse_like_missing_ones() -> None:
    # Given the params Juju passes when the user types none (the schema's defaults)
    schema = yaml.safe_load(CHARMCRAFT.read_text())["actions"]["start-load-test"]["params"]
    filled = {name: param["default"] for name, param in schema.items()}

    # When they are parsed
    # Then the spec equals the one built from no params at all
    assert LoadTestSpec.parse(filled) == LoadTestSpec.parse({})


def test_charmcraft_declares_exactly_the_parsed_parameters_and_bounds() -> None:
    # Given the start-load-test schema in charmcraft.yaml
    action = yaml.safe_load(CHARMCRAFT.read_text())["actions"]["start-load-test"]
    schema = action["params"]

    # Then it declares the parameters the spec parses, with the same defaults and bounds
    assert action["additionalProperties"] is False
    assert set(schema) == set(DEFAULTS)
    for name, default in DEFAULTS.items():
        assert schema[name]["default"] == default, name
    for name, (low, high) in INT_BOUNDS.items():
        assert (schema[name]["type"], schema[name]["minimum"], schema[name]["maximum"]) == ("integer", low, high)
    assert schema["payload"]["enum"] == [p.value for p in Payload]
    assert schema["compression"]["enum"] == [c.value for c in Compression]
    assert schema["engine"]["enum"] == [e.value for e in Engine]
    assert schema["keys"]["type"] == schema["consumers"]["type"] == "boolean"


def test_the_seed_configuration_is_accepted() -> None:
    # Given the seed's configuration: 3 units at 250k msg/s each, for 5 minutes, AVRO
    params = {"rate": 750000, "duration": "5m", "payload": "iot-avro"}

    # When it is parsed
    spec = LoadTestSpec.parse(params)

    # Then the total rate and the duration are kept
    assert (spec.rate, spec.duration_s, spec.payload) == (750000, 300, Payload.IOT_AVRO)


@pytest.mark.parametrize(("value", "expected"), [(1, 1), ("1", 1), (10_000_000, 10_000_000), ("750000", 750000)])
def test_rate_accepts_integers_and_digit_strings_within_bounds(value: object, expected: int) -> None:
    # Given a rate as an integer (a --params file) or a digit string (the declared string type)
    # When it is parsed
    # Then it is the total rate
    assert LoadTestSpec.parse({"rate": value}).rate == expected


def test_rate_max_finds_the_maximum() -> None:
    # Given rate=max
    # When it is parsed
    spec = LoadTestSpec.parse({"rate": "max"})

    # Then the spec asks for the search of the highest sustainable rate
    assert spec.rate is None
    assert spec.find_max


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (0, "the integer 0"),
        (10_000_001, "the integer 10000001"),
        (-5, "the integer -5"),
        ("0", "a string"),
        ("MAX", "a string"),
        ("fast", "a string"),
        ("1e6", "a string"),
        ("", "a string"),
        (True, "a boolean"),
        (1.5, "a value of type float"),
        (None, "a value of type NoneType"),
    ],
)
def test_rate_out_of_range_or_of_the_wrong_type_is_refused(value: object, kind: str) -> None:
    # Given a rate that is neither an integer within bounds nor "max"
    # When it is parsed
    message = _refused({"rate": value})

    # Then the message names the parameter, the value and what is allowed
    assert message == f"rate={value!r}: expected a total rate in msg/s from 1 to 10000000, or 'max', got {kind}"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90),
        ("90", 90),
        ("90s", 90),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2m30s", 150),
        (" 45s ", 45),
        ("0s", 0),
    ],
)
def test_duration_forms(value: object, seconds: int) -> None:
    # Given a duration as bare seconds or with an h/m/s unit
    # When it is parsed
    # Then it is that many seconds
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "s", "5x", "1.5m", "5 m", "m5", "1d", "-5", "5m1h", -1, True, 2.0, None])
def test_what_is_not_a_duration(value: object) -> None:
    # Given a value that is no duration
    # When it is parsed
    # Then it is refused
    with pytest.raises(ValueError, match=r"negative|not a duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("name", "field", "low", "high"),
    [("duration", "duration_s", 5, 86400), ("warm-up", "warm_up_s", 0, 3600)],
)
def test_durations_within_bounds_are_accepted(name: str, field: str, low: int, high: int) -> None:
    # Given a duration at each bound, as seconds and as a string
    # When it is parsed
    # Then it is kept in seconds
    for value in (low, high, f"{low}s", f"{high}"):
        assert getattr(LoadTestSpec.parse({name: value}), field) == int(str(value).rstrip("s"))
    assert LoadTestSpec.parse({"duration": "24h"}).duration_s == 86400


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("duration", 4),
        ("duration", "4s"),
        ("duration", "24h1s"),
        ("duration", "25h"),
        ("duration", "soon"),
        ("duration", True),
        ("duration", 60.0),
        ("warm-up", -1),
        ("warm-up", "61m"),
        ("warm-up", "1h1s"),
        ("warm-up", False),
        ("warm-up", ["10s"]),
    ],
)
def test_durations_out_of_range_or_of_the_wrong_type_are_refused(name: str, value: object) -> None:
    # Given a duration out of range or not a duration
    # When it is parsed
    message = _refused({name: value})

    # Then the message names the parameter, the value and the allowed range and forms
    assert message.startswith(f"{name}={value!r}: expected a duration from ")
    assert "90s, 5m, 1h" in message


@pytest.mark.parametrize("name", sorted(INT_BOUNDS))
def test_integer_parameters_at_their_bounds_are_accepted(name: str) -> None:
    # Given an integer parameter at its lowest and its highest value
    low, high = INT_BOUNDS[name]
    for value in (low, high):
        # When it is parsed (with a bytes payload, which keeps the size)
        spec = LoadTestSpec.parse({**WITH_BYTES, name: value})

        # Then the spec holds it
        assert getattr(spec, INT_FIELDS[name]) == value


@pytest.mark.parametrize("name", sorted(INT_BOUNDS))
def test_integer_parameters_out_of_range_are_refused(name: str) -> None:
    # Given an integer parameter just outside its bounds
    low, high = INT_BOUNDS[name]
    for value in (low - 1, high + 1):
        # When it is parsed
        message = _refused({name: value})

        # Then the message names the parameter, the value and the range
        assert message == f"{name}={value}: expected an integer from {low} to {high}, got the integer {value}"


@pytest.mark.parametrize("name", sorted(INT_BOUNDS))
@pytest.mark.parametrize(
    ("value", "kind"),
    [("8", "a string"), (True, "a boolean"), (False, "a boolean"), (8.0, "a value of type float"), (None, None)],
)
def test_integer_parameters_of_the_wrong_type_are_refused(name: str, value: object, kind: str | None) -> None:
    # Given an integer parameter given a string, a boolean, a float or null
    # When it is parsed
    message = _refused({name: value})

    # Then the message says what was expected and what was given
    low, high = INT_BOUNDS[name]
    kind = kind or "a value of type NoneType"
    assert message == f"{name}={value!r}: expected an integer from {low} to {high}, got {kind}"


@pytest.mark.parametrize(
    ("name", "field", "values"),
    [
        ("payload", "payload", list(Payload)),
        ("compression", "compression", list(Compression)),
        ("engine", "engine", list(Engine)),
    ],
)
def test_every_choice_is_accepted(name: str, field: str, values: list[object]) -> None:
    # Given each allowed value of a choice (pulsar-perf with bytes, which is all it sends)
    for value in values:
        # When it is parsed
        spec = LoadTestSpec.parse({**WITH_BYTES, name: str(value)})

        # Then the spec holds the enum member
        assert getattr(spec, field) is value


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("payload", "avro", "one of iot-avro, iot-json, bytes"),
        ("payload", "IOT-AVRO", "one of iot-avro, iot-json, bytes"),
        ("payload", 1, "one of iot-avro, iot-json, bytes"),
        ("compression", "lz4", "one of LZ4, NONE, ZLIB, ZSTD, SNAPPY"),
        ("compression", "GZIP", "one of LZ4, NONE, ZLIB, ZSTD, SNAPPY"),
        ("compression", None, "one of LZ4, NONE, ZLIB, ZSTD, SNAPPY"),
        ("engine", "python", "one of java, pulsar-perf"),
        ("engine", True, "one of java, pulsar-perf"),
    ],
)
def test_choices_outside_their_values_are_refused(name: str, value: object, allowed: str) -> None:
    # Given a choice parameter with a value it does not have
    # When it is parsed
    message = _refused({name: value})

    # Then the message lists the allowed values
    assert message.startswith(f"{name}={value!r}: expected {allowed}, got ")


@pytest.mark.parametrize(("name", "field"), [("keys", "keys"), ("consumers", "consumers")])
def test_switches_take_booleans_only(name: str, field: str) -> None:
    # Given a switch set either way
    # When it is parsed
    # Then the spec holds it
    assert getattr(LoadTestSpec.parse({name: False}), field) is False
    assert getattr(LoadTestSpec.parse({name: True}), field) is True

    # And a non-boolean is refused with what is allowed
    for value in (1, 0, "true", "yes", None):
        assert _refused({name: value}).startswith(f"{name}={value!r}: expected true or false, got ")


def test_size_is_kept_for_bytes_payloads_only() -> None:
    # Given a size with a bytes payload and with an IoT payload
    # When they are parsed
    as_bytes = LoadTestSpec.parse({"payload": "bytes", "size": 1024})
    as_avro = LoadTestSpec.parse({"payload": "iot-avro", "size": 1024})
    as_json = LoadTestSpec.parse({"payload": "iot-json"})

    # Then only the bytes payload has a size (the IoT ones are as large as they encode)
    assert (as_bytes.size, as_avro.size, as_json.size) == (1024, None, None)


def test_size_is_validated_whatever_the_payload() -> None:
    # Given an out-of-range size with an IoT payload
    # When it is parsed
    # Then it is refused all the same
    assert _refused({"payload": "iot-json", "size": 0}).startswith("size=0: ")


@pytest.mark.parametrize("payload", ["iot-avro", "iot-json"])
def test_pulsar_perf_sends_bytes_payloads_only(payload: str) -> None:
    # Given the reference engine with an IoT payload
    # When it is parsed
    message = _refused({"engine": "pulsar-perf", "payload": payload})

    # Then the message says pulsar-perf sends bytes only and what to use instead
    assert message == (
        f"engine='pulsar-perf' with payload={payload!r}: pulsar-perf sends bytes payloads only, "
        "use payload=bytes (with a size) or engine=java"
    )


def test_batch_delay_zero_turns_batching_off() -> None:
    # Given a batch delay of 0 ms
    # When it is parsed
    # Then batching is off
    assert not LoadTestSpec.parse({"batch-delay-ms": 0}).batching


@pytest.mark.parametrize("topic", ["sensor-readings", "a", "iot_v2.readings", "T" * 64, "0day"])
def test_topic_names_are_accepted(topic: str) -> None:
    # Given a valid local topic name
    # When it is parsed
    # Then the spec holds it
    assert LoadTestSpec.parse({"topic": topic}).topic == topic


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "a/b",
        "persistent://t/n/x",
        "-leading",
        "with space",
        "readings-partition-0",
        "T" * 65,
        "k=v:1",
        "é",
        7,
        None,
    ],
)
def test_invalid_topic_names_are_refused(topic: object) -> None:
    # Given a topic name Pulsar would refuse or read as something else
    # When it is parsed
    message = _refused({"topic": topic})

    # Then the message names the parameter, the value and the allowed form
    assert message.startswith(f"topic={topic!r}: expected a topic name of 1 to 64 characters")


def test_unknown_parameters_are_refused() -> None:
    # Given parameters the action does not declare
    # When they are parsed
    message = _refused({"rate": 10, "ratee": 10, "partition": 3})

    # Then the message names them and lists the known ones
    assert message.startswith("unknown parameters partition, ratee: expected some of rate, duration, warm-up,")


def test_the_spec_is_frozen() -> None:
    # Given a parsed spec
    spec = LoadTestSpec.parse({})

    # When a field is assigned
    # Then it is refused
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.rate = 5  # type: ignore[misc]


@pytest.mark.parametrize("units", range(1, 8))
@pytest.mark.parametrize("total", [0, 1, 6, 7, 1000, 750000, 1_000_003])
def test_per_unit_rates_sum_to_the_total(total: int, units: int) -> None:
    # Given a total rate and a number of units
    # When it is split across the units
    shares = [per_unit_rate(total, units, index) for index in range(units)]

    # Then the shares sum to the total, differ by at most one, and the larger ones come first
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)


def test_the_remainder_of_a_rate_goes_to_the_lowest_indexes() -> None:
    # Given 1000 msg/s over 3 units
    # When it is split
    # Then unit 0 takes the remainder
    assert [per_unit_rate(1000, 3, index) for index in range(3)] == [334, 333, 333]
    assert [per_unit_rate(750000, 3, index) for index in range(3)] == [250000, 250000, 250000]


@pytest.mark.parametrize(("total", "units", "index"), [(-1, 3, 0), (10, 0, 0), (10, 3, 3), (10, 3, -1)])
def test_impossible_rate_splits_are_refused(total: int, units: int, index: int) -> None:
    # Given a negative total, no units, or an index outside the units
    # When the rate is split
    # Then it is refused
    with pytest.raises(ValueError, match=r"negative|at least one|outside"):
        per_unit_rate(total, units, index)
