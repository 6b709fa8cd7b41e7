"""`PeerData`: a peer relation's typed databags, read once per event, written back on change."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import ops
import pytest
from ops import testing

from pulsar_k8s.charms.pulsar_k8s.v0.pulsar_workload import PeerData

META = {"name": "peer-data-test", "peers": {"mates": {"interface": "mates"}}}


@dataclasses.dataclass
class _App:
    members: list[str] = dataclasses.field(default_factory=list)
    holder: str = dataclasses.field(default="", metadata={"alias": "the-holder"})


@dataclasses.dataclass
class _Unit:
    host: str = ""
    count: int = 0


class _Charm(ops.CharmBase):
    """A charm that observes nothing: only the test touches the databags."""


Data = PeerData[_App, _Unit]


def _run(
    relation: testing.PeerRelation | None, body: Callable[[Data], Any], leader: bool = True
) -> tuple[Any, testing.PeerRelation | None]:
    """Build PeerData in an event, run `body` on it; return its result and the relation after."""
    ctx = testing.Context(_Charm, meta=META)
    state = testing.State(relations={relation} if relation else set(), leader=leader)
    with ctx(ctx.on.update_status(), state) as manager:
        charm = manager.charm
        data = PeerData(charm.model.get_relation("mates"), _App, _Unit, charm.app, charm.unit)
        result = body(data)
        out = manager.run()
    return result, out.get_relation(relation.id) if relation else None


def test_the_databags_decode_into_their_dataclasses() -> None:
    relation = testing.PeerRelation(
        "mates",
        local_app_data={"members": '["a", "b"]', "the-holder": '"u/1"'},
        local_unit_data={"host": '"h0"', "count": "3"},
    )
    data, _ = _run(relation, lambda d: d)
    assert data.app_data == _App(members=["a", "b"], holder="u/1")
    assert data.unit_data == _Unit(host="h0", count=3)
    assert data.error is None
    assert data.leftover_app_keys == []


def test_without_the_relation_or_with_empty_bags_the_data_is_the_defaults() -> None:
    for relation in (None, testing.PeerRelation("mates")):
        data, _ = _run(relation, lambda d: d)
        assert (data.app_data, data.unit_data, data.error) == (_App(), _Unit(), None)


def test_no_relation_saves_nothing() -> None:
    def change_and_save(data: Data) -> None:
        data.unit_data.host = "h0"
        data.save(leads=True)

    _run(None, change_and_save)  # no relation to write to, and no error either


def test_a_bad_databag_is_the_error_logged_once_and_nothing_is_written(caplog: pytest.LogCaptureFixture) -> None:
    relation = testing.PeerRelation("mates", local_app_data={"members": '"a"'}, local_unit_data={"count": '"3"'})

    def change_and_save(data: Data) -> str | None:
        data.unit_data.host = "h0"
        data.app_data.holder = "u/0"
        data.save(leads=True)
        return data.error

    with caplog.at_level(logging.ERROR):
        error, out = _run(relation, change_and_save)
    assert error is not None
    assert "key 'members': expected a list" in error
    assert [r.getMessage() for r in caplog.records].count(f"peer data does not decode: {error}") == 1
    assert out is not None
    assert out.local_app_data == {"members": '"a"'}
    assert out.local_unit_data == {"count": '"3"'}


def test_another_units_databag_reads_typed_and_a_bad_one_as_the_defaults(caplog: pytest.LogCaptureFixture) -> None:
    relation = testing.PeerRelation(
        "mates", local_unit_data={"host": '"h0"'}, peers_data={1: {"host": '"h1"'}, 2: {"count": "true"}}
    )

    def read_others(data: Data) -> tuple[_Unit, _Unit, _Unit, bool]:
        assert data.relation is not None
        units = {unit.name: unit for unit in data.relation.units}
        bad = data.unit_data_of(units["peer-data-test/2"])
        data.unit_data_of(units["peer-data-test/2"])  # read once: logged once
        this_unit = next(e for e in data.relation.data if e.name == "peer-data-test/0")
        assert isinstance(this_unit, ops.Unit)
        own = data.unit_data_of(this_unit)
        return data.unit_data_of(units["peer-data-test/1"]), bad, own, own is data.unit_data

    with caplog.at_level(logging.WARNING):
        (good, bad, own, same), _ = _run(relation, read_others)
    assert good == _Unit(host="h1")
    assert bad == _Unit()
    assert (own, same) == (_Unit(host="h0"), True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("ignoring peer-data-test/2's peer data: ")


def test_unchanged_data_is_not_written_back() -> None:
    # Stored without spaces: a rewrite would re-encode it as '["a", "b"]'.
    relation = testing.PeerRelation(
        "mates", local_app_data={"members": '["a","b"]'}, local_unit_data={"host": '"h0"', "count": "1"}
    )
    _, out = _run(relation, lambda d: d.save(leads=True))
    assert out is not None
    assert out.local_app_data == {"members": '["a","b"]'}
    assert out.local_unit_data == {"host": '"h0"', "count": "1"}


def test_changed_data_is_written_and_the_app_databag_only_when_leading() -> None:
    relation = testing.PeerRelation("mates", local_app_data={"members": '["a"]'}, local_unit_data={"count": "1"})

    def change_and_save(leads: bool) -> Callable[[Data], None]:
        def body(data: Data) -> None:
            data.unit_data.count = 2
            data.app_data.members.append("b")
            data.save(leads=leads)

        return body

    _, follower = _run(relation, change_and_save(leads=False), leader=False)
    assert follower is not None
    assert follower.local_unit_data == {"count": "2"}
    assert follower.local_app_data == {"members": '["a"]'}

    _, leader = _run(relation, change_and_save(leads=True))
    assert leader is not None
    assert leader.local_unit_data == {"count": "2"}
    assert leader.local_app_data == {"members": '["a", "b"]'}


def test_a_second_save_writes_only_what_changed_since_the_first() -> None:
    relation = testing.PeerRelation("mates", local_app_data={"members": '["a","b"]'}, local_unit_data={"count": "1"})

    def save_twice(data: Data) -> None:
        data.unit_data.host = "h0"
        data.save(leads=True)
        data.unit_data.count = 4
        data.save(leads=True)

    _, out = _run(relation, save_twice)
    assert out is not None
    assert out.local_app_data == {"members": '["a","b"]'}
    assert out.local_unit_data == {"count": "4", "host": '"h0"'}


def test_the_leader_erases_leftover_app_keys() -> None:
    relation = testing.PeerRelation("mates", local_app_data={"members": '["a"]', "old-key": '"x"'})

    def leftovers_then_save(leads: bool) -> Callable[[Data], list[str]]:
        def body(data: Data) -> list[str]:
            leftovers = list(data.leftover_app_keys)
            data.save(leads=leads)
            return leftovers

        return body

    leftovers, follower = _run(relation, leftovers_then_save(leads=False), leader=False)
    assert leftovers == ["old-key"]
    assert follower is not None
    assert follower.local_app_data == {"members": '["a"]', "old-key": '"x"'}

    _, leader = _run(relation, leftovers_then_save(leads=True))
    assert leader is not None
    assert leader.local_app_data == {"members": '["a"]'}
