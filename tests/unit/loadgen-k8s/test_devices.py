"""loadgen-k8s: disjoint contiguous device-id slices, one per unit."""

from __future__ import annotations

import itertools

import pytest

from loadgen_k8s.managers.devices import device_id, device_slice, ordered_units, unit_number

APP = "loadgen-k8s"


def _units(*numbers: int) -> list[str]:
    return [f"{APP}/{n}" for n in numbers]


def _slices(device_count: int, units: list[str]) -> dict[str, range]:
    return {unit: device_slice(device_count, units, unit) for unit in units}


def _assert_partition(device_count: int, slices: dict[str, range]) -> None:
    """The slices, in unit-number order, are contiguous, cover 0..device_count-1 and differ by at most one."""
    ordered = [slices[unit] for unit in ordered_units(slices)]
    assert all(s.step == 1 for s in ordered)
    assert ordered[0].start == 0
    assert ordered[-1].stop == device_count
    for before, after in itertools.pairwise(ordered):
        assert before.stop == after.start
    assert sorted(n for s in ordered for n in s) == list(range(device_count))
    sizes = [len(s) for s in ordered]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the remainder goes to the lowest unit numbers


@pytest.mark.parametrize("count", range(1, 8))
@pytest.mark.parametrize("device_count", [0, 1, 5, 7, 100, 100_000, 100_003])
def test_slices_over_one_to_seven_units_cover_every_device_once(device_count: int, count: int) -> None:
    # Given 1..7 units
    units = _units(*range(count))

    # When each unit computes its slice
    slices = _slices(device_count, units)

    # Then the slices are disjoint, contiguous, cover every device and differ by at most one
    _assert_partition(device_count, slices)


def test_the_seed_split_is_even() -> None:
    # Given the seed: 100,000 devices over 3 replicas
    units = _units(0, 1, 2)

    # When the units compute their slices
    # Then the first takes the one device left over
    assert list(_slices(100_000, units).values()) == [range(0, 33334), range(33334, 66667), range(66667, 100000)]


def test_units_are_ordered_by_number_not_lexically() -> None:
    # Given units 1, 2, 9 and 10, listed in lexical order
    units = [f"{APP}/1", f"{APP}/10", f"{APP}/2", f"{APP}/9"]

    # When they compute their slices of 8 devices
    slices = _slices(8, units)

    # Then app/10 comes after app/9
    assert ordered_units(units) == _units(1, 2, 9, 10)
    assert slices == {
        f"{APP}/1": range(0, 2),
        f"{APP}/2": range(2, 4),
        f"{APP}/9": range(4, 6),
        f"{APP}/10": range(6, 8),
    }


def test_the_order_of_the_given_names_does_not_matter() -> None:
    # Given the same units listed in two orders, one with a repeat
    # When a unit computes its slice from each
    # Then it gets the same slice
    first = device_slice(1000, _units(3, 0, 7), f"{APP}/3")
    second = device_slice(1000, _units(7, 3, 0, 3), f"{APP}/3")
    assert first == second == range(334, 667)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ((0, 1, 2), (0, 1, 2, 3)),  # scale up
        ((0, 1, 2), (0, 2)),  # a unit removed from the middle
        ((0, 1, 2, 3, 4, 5, 6), (5, 6)),  # scale down to the newest units
        ((0,), (1, 2, 3, 4, 5, 6, 7)),  # replaced and grown
        ((8, 9), (8, 9, 10, 11)),  # past a digit boundary
    ],
)
def test_slices_after_a_scale_change_partition_the_devices(before: tuple[int, ...], after: tuple[int, ...]) -> None:
    # Given the slices of one test
    device_count = 100_003
    old = _slices(device_count, _units(*before))
    _assert_partition(device_count, old)

    # When units are added or removed before the next test
    new = _slices(device_count, _units(*after))

    # Then the next test's slices partition the devices again, one per current unit
    _assert_partition(device_count, new)
    assert set(new) == set(_units(*after))


def test_a_unit_not_in_the_list_is_refused() -> None:
    # Given units 0 and 1
    # When unit 2 asks for its slice
    # Then it is refused, naming the unit and the units
    with pytest.raises(ValueError, match=r"unit 'loadgen-k8s/2' is not one of the units \['loadgen-k8s/0', "):
        device_slice(100, _units(0, 1), f"{APP}/2")


def test_no_units_is_refused() -> None:
    # Given no units
    # When a unit asks for its slice
    # Then it is refused
    with pytest.raises(ValueError, match="is not one of the units"):
        device_slice(100, [], f"{APP}/0")


@pytest.mark.parametrize("name", ["loadgen-k8s", "loadgen-k8s/", "/3", "loadgen-k8s/x", "loadgen-k8s/-1", "app/٣"])
def test_names_that_are_not_unit_names_are_refused(name: str) -> None:
    # Given a name that is not app/<number>
    # When it is read as a unit name
    # Then it is refused
    with pytest.raises(ValueError, match="is not a unit name"):
        unit_number(name)
    with pytest.raises(ValueError, match="is not a unit name"):
        device_slice(10, [*_units(0), name], f"{APP}/0")


@pytest.mark.parametrize("device_count", [-1, True, 2.0])
def test_a_device_count_that_is_not_a_count_is_refused(device_count: object) -> None:
    # Given a negative, boolean or fractional device count
    # When a slice is computed
    # Then it is refused
    with pytest.raises(ValueError, match="is not a non-negative integer"):
        device_slice(device_count, _units(0), f"{APP}/0")  # type: ignore[arg-type]


def test_unit_numbers() -> None:
    # Given unit names, one of an application with a slash-free hyphenated name
    # When their numbers are read
    # Then they are the numbers after the last slash
    assert [unit_number(u) for u in ("a/0", "loadgen-k8s/10", "x-y/123")] == [0, 10, 123]


@pytest.mark.parametrize(
    ("n", "device_count", "expected"),
    [
        (42, 1_000_000, "device-000042"),
        (0, 100_000, "device-00000"),
        (99_999, 100_000, "device-99999"),
        (42, 100_001, "device-000042"),
        (0, 1, "device-0"),
        (9, 10, "device-9"),
        (9, 11, "device-09"),
    ],
)
def test_device_ids_are_zero_padded_to_the_width_of_the_last_id(n: int, device_count: int, expected: str) -> None:
    # Given a device number and the device count
    # When its id is formatted
    # Then it is padded to the width of device_count-1, so every id has the same length
    assert device_id(n, device_count) == expected


def test_device_ids_of_a_slice_are_distinct_and_of_one_width() -> None:
    # Given every device of a 1000-device test
    ids = [device_id(n, 1000) for n in range(1000)]

    # Then the ids are distinct, equally long and sort like their numbers
    assert len(set(ids)) == 1000
    assert {len(i) for i in ids} == {len("device-999")}
    assert ids == sorted(ids)


@pytest.mark.parametrize(("n", "device_count"), [(-1, 10), (10, 10), (0, 0)])
def test_device_numbers_outside_the_count_are_refused(n: int, device_count: int) -> None:
    # Given a device number outside 0..device_count-1
    # When its id is formatted
    # Then it is refused
    with pytest.raises(ValueError, match="is outside"):
        device_id(n, device_count)
