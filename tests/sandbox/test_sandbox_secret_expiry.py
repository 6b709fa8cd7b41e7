"""Juju's secret events that come with time, and charms without containers, in the sandbox.

The test charms here have no workload container. The tests of this module build on each
other in order: keeper (two units) is deployed once; Juju's retry delay (5 minutes) is
shortened to a few seconds so that a test sees a second delivery. The last test runs
charmlibs' tls-certificates requirer against the self-signed-certificates test charm.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sandbox import Model
from sandbox.scheduler import EventRecord
from sandbox.state import juju_time

TEST_CHARMS = Path(__file__).resolve().parent / "charms"
KEEPER = TEST_CHARMS / "secret-keeper"
RETRY = 3.0  # seconds, for Juju's 5-minute retry delay
TOLERANCE = timedelta(milliseconds=300)  # the sandbox looks at the clock 5 times a second


def _records(model: Model, kind: str, secret_id: str) -> list[EventRecord]:
    """The hooks of that kind run for that secret, in order."""
    return [r for r in model.event_records if r.kind == kind and r.event is not None and r.event.secret_id == secret_id]


def _sent(records: list[EventRecord]) -> list[tuple[str, int | None]]:
    """To which unit, for which revision."""
    return [(r.unit, r.event.secret_revision if r.event else None) for r in records]


def _started_at(record: EventRecord) -> datetime:
    """When the hook was sent to the unit agent, on the wall clock (records keep perf_counter)."""
    return datetime.now(UTC) - timedelta(seconds=time.perf_counter() - record.started)


def _secret_id(model: Model, label: str) -> str:
    return next(s.id for s in model.secrets.values() if s.label == label)


@pytest.fixture(scope="module")
def keeper(model: Model) -> Model:
    model.secret_retry_delay = RETRY
    model.deploy(KEEPER, "keeper", num_units=2)
    model.wait_for_idle(["keeper"], timeout=90)
    return model


def test_a_charm_without_containers_runs(keeper: Model) -> None:
    # Then each unit ran its hooks (no pebble-ready: there is no container) and its pod is ready
    hooks = {(r.unit, r.kind) for r in keeper.event_records}
    for unit in ("keeper/0", "keeper/1"):
        assert {(unit, "install"), (unit, "start")} <= hooks
        assert keeper.pod_ready(unit)
        assert keeper.units[unit].workload_status.message == "keeping secrets"
    assert not [kind for _, kind in hooks if kind == "pebble_ready"]


def test_secret_expired_reaches_the_leader_when_the_revision_expires(keeper: Model) -> None:
    # Given the leader created an application secret that expires in a few seconds
    leader = keeper.leader("keeper")
    assert leader == "keeper/0"
    created = keeper.run(leader, "add-secret", {"label": "app-token", "expire-in": 4})
    secret = keeper.secrets[created.results["id"]]
    expires = secret.expiry[1]

    # When that time comes
    keeper.drive_until(lambda m: bool(_records(m, "secret_expired", secret.id)), timeout=20)

    # Then the leader (only) gets secret-expired for revision 1, not before it expired
    (first,) = _records(keeper, "secret_expired", secret.id)
    assert _sent([first]) == [(leader, 1)]
    assert _started_at(first) >= expires - TOLERANCE
    assert "got secret-expired app-token revision 1" in keeper.debug_log(leader)


def test_secret_expired_comes_again_while_the_owner_does_nothing(keeper: Model) -> None:
    secret_id = _secret_id(keeper, "app-token")
    (first,) = _records(keeper, "secret_expired", secret_id)

    # When the leader leaves the expired revision in place
    keeper.drive_until(lambda m: len(_records(m, "secret_expired", secret_id)) >= 2, timeout=20)

    # Then Juju sends it again after its retry delay
    second = _records(keeper, "secret_expired", secret_id)[1]
    assert _sent([second]) == [("keeper/0", 1)]
    assert second.started - first.started >= RETRY - TOLERANCE.total_seconds()


def test_a_new_leader_hears_of_the_expired_revision(keeper: Model) -> None:
    secret_id = _secret_id(keeper, "app-token")

    # When leadership moves to keeper/1
    keeper.elect_leader("keeper/1")
    keeper.drive_until(
        lambda m: any(r.unit == "keeper/1" for r in _records(m, "secret_expired", secret_id)), timeout=20
    )

    # Then its agent's secret worker starts with the overdue revision: secret-expired comes to
    # it, and no longer to keeper/0
    records = _records(keeper, "secret_expired", secret_id)
    to_new_leader = next(r for r in records if r.unit == "keeper/1")
    assert _sent([to_new_leader]) == [("keeper/1", 1)]
    assert all(r.unit == "keeper/1" for r in records if r.started > to_new_leader.started)


def test_a_later_expire_time_postpones_the_expiry(keeper: Model) -> None:
    secret_id = _secret_id(keeper, "app-token")

    # When the leader gives the latest revision a later expire time
    keeper.run("keeper/1", "set-expiry", {"label": "app-token", "expire-in": 3600})
    sent = len(_records(keeper, "secret_expired", secret_id))
    deadline = time.monotonic() + 2 * RETRY
    keeper.drive_until(lambda _: time.monotonic() > deadline, timeout=3 * RETRY)

    # Then the revision expires then, and nothing more comes now
    assert len(_records(keeper, "secret_expired", secret_id)) == sent
    in_an_hour = datetime.now(UTC) + timedelta(minutes=59)
    assert sorted(keeper.secrets[secret_id].expiry) == [1]
    assert keeper.secrets[secret_id].expiry[1] > in_an_hour
    info = keeper.run("keeper/1", "secret-info", {"label": "app-token"}).results
    assert info["revision"] == "1"
    assert datetime.fromisoformat(info["expires"]) > in_an_hour


def test_a_superseded_revision_is_removed_and_never_expires(keeper: Model) -> None:
    # Given keeper/0 owns a secret whose revision 1 expires in a few seconds
    keeper.run("keeper/0", "add-secret", {"label": "unit-key", "owner": "unit", "expire-in": 6})
    secret_id = _secret_id(keeper, "unit-key")

    # When it sets new content, with its own expire time, before then
    keeper.run("keeper/0", "set-content", {"label": "unit-key", "expire-in": 8})

    # Then nobody tracks revision 1: Juju tells the owner it may remove it (secret-remove), and
    # it does
    assert _sent(_records(keeper, "secret_remove", secret_id)) == [("keeper/0", 1)]
    secret = keeper.secrets[secret_id]
    assert (secret.latest, sorted(secret.revisions), sorted(secret.expiry)) == (2, [2], [2])

    # When revision 2's time comes (the charm now removes a secret that expired)
    keeper.config("keeper", {"on-expired": "remove"})
    keeper.drive_until(lambda m: bool(_records(m, "secret_expired", secret_id)), timeout=20)

    # Then only revision 2 ever expired, not before its time; the owner removed the secret
    expired = _records(keeper, "secret_expired", secret_id)
    assert _sent(expired) == [("keeper/0", 2)]
    assert _started_at(expired[0]) >= secret.expiry[2] - TOLERANCE
    assert secret_id not in keeper.secrets
    keeper.config("keeper", {"on-expired": "ignore"})


def test_a_revision_the_owner_keeps_still_expires(keeper: Model) -> None:
    # Given a charm that keeps old revisions (it ignores secret-remove)
    keeper.config("keeper", {"keep-old-revisions": True})
    keeper.run("keeper/0", "add-secret", {"label": "kept", "owner": "unit", "expire-in": 4})
    secret_id = _secret_id(keeper, "kept")

    # When it replaces the content (no expire time on revision 2) and revision 1's time comes
    keeper.run("keeper/0", "set-content", {"label": "kept"})
    keeper.drive_until(lambda m: bool(_records(m, "secret_expired", secret_id)), timeout=20)

    # Then Juju keeps the expire time on revision 1, which expires although it is not the latest
    (expired,) = _records(keeper, "secret_expired", secret_id)
    assert _sent([expired]) == [("keeper/0", 1)]
    assert _sent(_records(keeper, "secret_remove", secret_id)) == [("keeper/0", 1)]
    secret = keeper.secrets[secret_id]
    assert (secret.latest, sorted(secret.revisions), sorted(secret.expiry)) == (2, [1, 2], [1])
    keeper.config("keeper", {"keep-old-revisions": False})


def test_secret_rotate_comes_when_due_and_again_until_a_new_revision(keeper: Model) -> None:
    # Given the leader's hourly-rotated secret, and the hour has passed
    leader = keeper.leader("keeper")
    assert leader is not None
    keeper.run(leader, "add-secret", {"label": "rotated", "rotate": "hourly"})
    secret = keeper.secrets[_secret_id(keeper, "rotated")]
    assert secret.next_rotation is not None
    assert secret.next_rotation - datetime.now(UTC) > timedelta(minutes=59)
    due = juju_time(datetime.now(UTC) + timedelta(seconds=2))
    secret.next_rotation = due  # as if the hour had passed

    # When it comes, and the leader does not rotate the secret
    keeper.drive_until(lambda m: bool(_records(m, "secret_rotate", secret.id)), timeout=20)

    # Then the leader gets secret-rotate, and is due again after Juju's retry delay
    (first,) = _records(keeper, "secret_rotate", secret.id)
    assert first.unit == leader
    assert _started_at(first) >= due - TOLERANCE
    assert secret.next_rotation == due + timedelta(seconds=RETRY)

    # When the leader makes a new revision the next time
    keeper.config("keeper", {"on-rotate": "new-revision"})
    keeper.drive_until(lambda m: len(_records(m, "secret_rotate", secret.id)) >= 2, timeout=20)
    keeper.settle()

    # Then the next rotation is an hour after the one that was due
    assert secret.latest == 2
    assert secret.next_rotation == due + timedelta(seconds=RETRY) + timedelta(hours=1)


def test_the_tls_requirer_renews_its_certificate_when_its_secret_expires(model: Model) -> None:
    # Given a CA (no container, as the real charm) that issues certificates valid 10 seconds,
    # and a requirer unit that got one: the library keeps it in a secret that expires at 90%
    model.deploy(TEST_CHARMS / "self-signed-certificates", "ca", config={"certificate-validity": "10s"})
    model.deploy(TEST_CHARMS / "tls-requirer", "requirer")
    model.integrate("requirer", "ca")
    model.drive_until(lambda m: "got certificate" in m.debug_log("requirer/0"), timeout=60)
    # (on a fast machine that takes less than the startup probe's first second: wait for it)
    model.drive_until(lambda m: m.pod_ready("ca/0"), timeout=30)

    # When that secret expires
    model.drive_until(lambda m: m.debug_log("requirer/0").count("got certificate") >= 2, timeout=60)

    # Then Juju's secret-expired made the library ask again, and it got a new certificate
    log = model.debug_log("requirer/0")
    assert "requirer/0 secret_expired" in log
    fingerprints = [line.split()[3] for line in log.splitlines() if "got certificate" in line]
    assert len(set(fingerprints)) == len(fingerprints) == 2
