"""The specification of a load test, parsed and validated from `start-load-test`'s params.

Pure logic: no ops. `LoadTestSpec.parse` takes the action's params (Juju has already
filled the schema's defaults, but a missing parameter falls back to the same default here)
and either returns a frozen, typed spec or raises `InvalidParamsError`, whose message names
the parameter, the value given and what is allowed, so the action can fail with it verbatim.

The parameter names, defaults and bounds below are the ones `charmcraft.yaml` declares.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

_Choice = TypeVar("_Choice", bound=enum.StrEnum)


class InvalidParamsError(ValueError):
    """A `start-load-test` parameter is unknown, of the wrong type or out of range."""


class Payload(enum.StrEnum):
    IOT_AVRO = "iot-avro"
    IOT_JSON = "iot-json"
    BYTES = "bytes"


class Compression(enum.StrEnum):
    LZ4 = "LZ4"
    NONE = "NONE"
    ZLIB = "ZLIB"
    ZSTD = "ZSTD"
    SNAPPY = "SNAPPY"


class Engine(enum.StrEnum):
    JAVA = "java"
    PULSAR_PERF = "pulsar-perf"


RATE_MAX = "max"  # `rate=max`: find the highest rate the cluster sustains
RATE_BOUNDS = (1, 10_000_000)  # msg/s for the whole application
DURATION_BOUNDS = (5, 24 * 3600)  # seconds
WARM_UP_BOUNDS = (0, 3600)  # seconds
SIZE_BOUNDS = (1, 1024 * 1024)  # bytes, payload=bytes only
PARTITIONS_BOUNDS = (1, 1024)
DEVICE_COUNT_BOUNDS = (1, 10_000_000)
BATCH_DELAY_MS_BOUNDS = (0, 10_000)  # 0 turns batching off
BATCH_MAX_MESSAGES_BOUNDS = (1, 100_000)
BATCH_MAX_BYTES_BOUNDS = (1024, 5 * 1024 * 1024)  # Pulsar's default maximum message size
PRODUCERS_PER_UNIT_BOUNDS = (1, 32)
TOPIC_MAX_LENGTH = 64  # the `pulsar` interface's name rule: pulsar-k8s creates the topic

DEFAULTS: dict[str, object] = {
    "rate": 1000,
    "duration": "60s",
    "warm-up": "10s",
    "payload": Payload.IOT_AVRO.value,
    "size": 100,
    "topic": "sensor-readings",
    "partitions": 8,
    "device-count": 100_000,
    "keys": True,
    "batch-delay-ms": 1,
    "batch-max-messages": 1000,
    "batch-max-bytes": 128 * 1024,
    "compression": Compression.LZ4.value,
    "producers-per-unit": 1,
    "consumers": True,
    "engine": Engine.JAVA.value,
}

# A topic's local name (the namespace comes from the pulsar relation), as the `pulsar`
# interface accepts it, and none of the "-partition-N" suffix Pulsar reserves for partitions.
_TOPIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s?)?$")
_DURATION_FORMS = "seconds as an integer, or a string such as 90, 90s, 5m, 1h, 1h30m"


def _fail(name: str, value: object, allowed: str) -> InvalidParamsError:
    return InvalidParamsError(f"{name}={value!r}: expected {allowed}, got {_kind(value)}")


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, str):
        return "a string"
    return f"a value of type {type(value).__name__}"


def _int(params: Mapping[str, object], name: str, bounds: tuple[int, int]) -> int:
    value = params.get(name, DEFAULTS[name])
    low, high = bounds
    allowed = f"an integer from {low} to {high}"
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(name, value, allowed)
    return value


def _bool(params: Mapping[str, object], name: str) -> bool:
    value = params.get(name, DEFAULTS[name])
    if not isinstance(value, bool):
        raise _fail(name, value, "true or false")
    return value


def _choice(params: Mapping[str, object], name: str, choices: type[_Choice]) -> _Choice:
    value = params.get(name, DEFAULTS[name])
    allowed = "one of " + ", ".join(member.value for member in choices)
    if not isinstance(value, str) or value not in {member.value for member in choices}:
        raise _fail(name, value, allowed)
    return choices(value)


def _rate(params: Mapping[str, object]) -> int | None:
    value = params.get("rate", DEFAULTS["rate"])
    low, high = RATE_BOUNDS
    allowed = f"a total rate in msg/s from {low} to {high}, or {RATE_MAX!r}"
    if value == RATE_MAX:
        return None
    # Declared [integer, string] in charmcraft.yaml; a string of digits is the same rate.
    number = int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else value
    if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
        raise _fail("rate", value, allowed)
    return number


def parse_duration(value: object) -> int:
    """Seconds in a duration given as an integer or as `90`, `90s`, `5m`, `1h`, `1h30m`.

    Raises ValueError (without naming a parameter) when the value is not a duration.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return value
    if not isinstance(value, str) or not (match := _DURATION.match(value.strip())) or not value.strip():
        raise ValueError(f"{value!r} is not a duration")
    hours, minutes, seconds = (int(match.group(unit) or 0) for unit in "hms")
    return hours * 3600 + minutes * 60 + seconds


def _duration(params: Mapping[str, object], name: str, bounds: tuple[int, int]) -> int:
    value = params.get(name, DEFAULTS[name])
    low, high = bounds
    allowed = f"a duration from {low}s to {high}s ({_DURATION_FORMS})"
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise _fail(name, value, allowed) from None
    if not low <= seconds <= high:
        raise _fail(name, value, allowed)
    return seconds


def _topic(params: Mapping[str, object]) -> str:
    value = params.get("topic", DEFAULTS["topic"])
    allowed = (
        f"a topic name of 1 to {TOPIC_MAX_LENGTH} characters: letters, digits and _ . -, "
        "starting with a letter or digit, without '-partition-'"
    )
    if not isinstance(value, str) or len(value) > TOPIC_MAX_LENGTH or not _TOPIC.match(value) or "-partition-" in value:
        raise _fail("topic", value, allowed)
    return value


@dataclass(frozen=True)
class LoadTestSpec:
    """What one load test does, for the whole application.

    `rate` is the total target in msg/s across every unit, or None for `rate=max` (find the
    highest rate the cluster sustains). Durations are in seconds; `warm_up_s` runs before the
    measured `duration_s` and is not counted. `size` is the payload size in bytes for
    `payload=bytes` and None for the IoT payloads (whose size is what they encode to).
    `batch_delay_ms=0` turns batching off.
    """

    rate: int | None
    duration_s: int
    warm_up_s: int
    payload: Payload
    size: int | None
    topic: str
    partitions: int
    device_count: int
    keys: bool
    batch_delay_ms: int
    batch_max_messages: int
    batch_max_bytes: int
    compression: Compression
    producers_per_unit: int
    consumers: bool
    engine: Engine

    @property
    def find_max(self) -> bool:
        return self.rate is None

    @property
    def batching(self) -> bool:
        return self.batch_delay_ms > 0

    def to_params(self) -> dict[str, object]:
        """The spec as `start-load-test` params, canonical: `parse(spec.to_params()) == spec`."""
        return {
            "rate": RATE_MAX if self.rate is None else self.rate,
            "duration": f"{self.duration_s}s",
            "warm-up": f"{self.warm_up_s}s",
            "payload": self.payload.value,
            "size": self.size if self.size is not None else DEFAULTS["size"],
            "topic": self.topic,
            "partitions": self.partitions,
            "device-count": self.device_count,
            "keys": self.keys,
            "batch-delay-ms": self.batch_delay_ms,
            "batch-max-messages": self.batch_max_messages,
            "batch-max-bytes": self.batch_max_bytes,
            "compression": self.compression.value,
            "producers-per-unit": self.producers_per_unit,
            "consumers": self.consumers,
            "engine": self.engine.value,
        }

    @classmethod
    def parse(cls, params: Mapping[str, object]) -> LoadTestSpec:
        """Validate `start-load-test`'s params; raises InvalidParamsError naming the first bad one."""
        if unknown := sorted(set(params) - set(DEFAULTS)):
            raise InvalidParamsError(
                f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
                f"expected some of {', '.join(DEFAULTS)}"
            )
        payload = _choice(params, "payload", Payload)
        size = _int(params, "size", SIZE_BOUNDS)
        engine = _choice(params, "engine", Engine)
        if engine is Engine.PULSAR_PERF and payload is not Payload.BYTES:
            raise InvalidParamsError(
                f"engine='pulsar-perf' with payload={payload.value!r}: pulsar-perf sends bytes payloads only, "
                "use payload=bytes (with a size) or engine=java"
            )
        return cls(
            rate=_rate(params),
            duration_s=_duration(params, "duration", DURATION_BOUNDS),
            warm_up_s=_duration(params, "warm-up", WARM_UP_BOUNDS),
            payload=payload,
            size=size if payload is Payload.BYTES else None,
            topic=_topic(params),
            partitions=_int(params, "partitions", PARTITIONS_BOUNDS),
            device_count=_int(params, "device-count", DEVICE_COUNT_BOUNDS),
            keys=_bool(params, "keys"),
            batch_delay_ms=_int(params, "batch-delay-ms", BATCH_DELAY_MS_BOUNDS),
            batch_max_messages=_int(params, "batch-max-messages", BATCH_MAX_MESSAGES_BOUNDS),
            batch_max_bytes=_int(params, "batch-max-bytes", BATCH_MAX_BYTES_BOUNDS),
            compression=_choice(params, "compression", Compression),
            producers_per_unit=_int(params, "producers-per-unit", PRODUCERS_PER_UNIT_BOUNDS),
            consumers=_bool(params, "consumers"),
            engine=engine,
        )


def per_unit_rate(total: int, units: int, unit_index: int) -> int:
    """The share of unit `unit_index` in a total rate: equal parts, the remainder one each to the lowest indexes.

    The shares of units 0..units-1 sum to `total` exactly.
    """
    if isinstance(total, bool) or total < 0:
        raise ValueError(f"total rate {total!r} is negative")
    if units < 1:
        raise ValueError(f"{units} units: at least one is needed")
    if not 0 <= unit_index < units:
        raise ValueError(f"unit index {unit_index} is outside 0..{units - 1}")
    base, remainder = divmod(total, units)
    return base + (1 if unit_index < remainder else 0)
