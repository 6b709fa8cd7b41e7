"""Which simulated devices each unit sends for: disjoint contiguous slices of the device ids.

Pure logic: no ops. The units are the application's unit names (from the peer relation),
ordered by unit number, so `app/10` comes after `app/9`. The slices cover 0..device_count-1
exactly, and their sizes differ by at most one (the lowest-numbered units take the
remainder, as `spec.per_unit_rate` gives them the remainder of the rate). A test computes
its slices once, when it starts; a scale change alters the slices of the next test only.
"""

from __future__ import annotations

from collections.abc import Iterable

DEVICE_ID_PREFIX = "device-"


def unit_number(unit: str) -> int:
    """The number of a unit name such as `loadgen-k8s/10`; raises ValueError for other names."""
    app, slash, number = unit.rpartition("/")
    if not slash or not app or not number.isascii() or not number.isdigit():
        raise ValueError(f"{unit!r} is not a unit name such as app/0")
    return int(number)


def ordered_units(units: Iterable[str]) -> list[str]:
    """The unit names, without repeats, in unit-number order (`app/9` before `app/10`)."""
    return sorted(set(units), key=unit_number)


def device_slice(device_count: int, units: Iterable[str], unit: str) -> range:
    """The device numbers `unit` sends for, out of 0..device_count-1 split across `units`."""
    if isinstance(device_count, bool) or not isinstance(device_count, int) or device_count < 0:
        raise ValueError(f"device count {device_count!r} is not a non-negative integer")
    ordered = ordered_units(units)
    if unit not in ordered:
        raise ValueError(f"unit {unit!r} is not one of the units {ordered}")
    index = ordered.index(unit)
    base, remainder = divmod(device_count, len(ordered))
    start = index * base + min(index, remainder)
    return range(start, start + base + (1 if index < remainder else 0))


def device_id(n: int, device_count: int) -> str:
    """The id of device number `n`, zero-padded to the width of device_count-1: `device-000042`."""
    if not 0 <= n < device_count:
        raise ValueError(f"device number {n} is outside 0..{device_count - 1}")
    width = len(str(device_count - 1))
    return f"{DEVICE_ID_PREFIX}{n:0{width}d}"
