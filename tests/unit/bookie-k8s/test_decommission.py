"""bookie-k8s: `juju remove-unit` decommissions the bookie before its storage goes, and the
remaining bookies say when too few are left to decommission one."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.bookie_k8s_builders import CREDENTIALS, PROVIDER_DATA
from helpers.pulsar_k8s_builders import CHOWN
from ops import pebble, testing

from bookie_k8s.charm import BookieCharm
from bookie_k8s.literals import Status
from bookie_k8s.managers import decommission
from bookie_k8s.workload import BookieWorkload

FQDN = "bookie-k8s-3.bookie-k8s-endpoints.test.svc.cluster.local"
SHELL = ["/pulsar/bin/bookkeeper", "shell"]
RECOVER = [*SHELL, "recover", "-force", f"{FQDN}:3181"]
DECOMMISSION = [*SHELL, "decommissionbookie", "-bookieid", f"{FQDN}:3181"]
RUNNING = pebble.Layer({"services": {"bookie": {"override": "replace", "command": "/pulsar/bin/pulsar bookie"}}})


@pytest.fixture
def ctx() -> testing.Context:
    return testing.Context(BookieCharm, app_name="bookie-k8s", unit_id=3)


@pytest.fixture
def storage(tmp_path: Path) -> dict[str, Path]:
    """The unit's volumes, holding what a registered bookie leaves: its cookie and its data."""
    volumes = {}
    for name in ("journal", "ledgers"):
        current = tmp_path / name / "current"
        current.mkdir(parents=True)
        (current / "VERSION").write_text("4\nbookieHost: ...\n")
        (current / "data.log").write_bytes(b"\0" * 64)
        (tmp_path / name / "lost+found").mkdir()
        volumes[name] = tmp_path / name
    return volumes


def _bookie(pulsar_image: Path, storage: dict[str, Path], shell_exit: int = 0) -> testing.Container:
    mounts = {"image": testing.Mount(location="/pulsar/lib", source=pulsar_image / "lib")}
    for name, source in storage.items():
        mounts[name] = testing.Mount(location=f"/var/lib/bookkeeper/{name}", source=source)
    return testing.Container(
        "bookie",
        can_connect=True,
        layers={"bookie": RUNNING},
        service_statuses={"bookie": pebble.ServiceStatus.ACTIVE},
        mounts=mounts,
        execs={
            CHOWN,
            testing.Exec(SHELL, return_code=shell_exit, stderr="Failed to find 1 bookies"),
        },
    )


def _dying(container: testing.Container) -> testing.State:
    """The unit being removed, past its relations' teardown: only its storage is left."""
    storages = {testing.Storage("journal"), testing.Storage("ledgers")}
    return testing.State(containers={container}, storages=storages, model=testing.Model("test"), planned_units=3)


def test_a_removed_bookie_is_decommissioned_before_its_storage_goes(
    ctx: testing.Context, pulsar_image: Path, storage: dict[str, Path]
) -> None:
    # Given a dying unit whose bookie runs and holds data
    container = _bookie(pulsar_image, storage)
    state = _dying(container)

    # When its ledger storage is about to detach
    out = ctx.run(ctx.on.storage_detaching(next(s for s in state.storages if s.name == "ledgers")), state)

    # Then the bookie was stopped, its fragments copied to the other bookies, then it was
    # decommissioned, each as the image user logging in from its JAAS file
    assert out.get_container("bookie").service_statuses["bookie"] == pebble.ServiceStatus.INACTIVE
    commands = ctx.exec_history["bookie"]
    assert [command.command for command in commands] == [RECOVER, DECOMMISSION]
    for command in commands:
        assert command.user_id == 10000
        assert "-Djava.security.auth.login.config=/pulsar/conf/jaas.conf" in command.environment["PULSAR_EXTRA_OPTS"]
    # And its volumes are empty but for the file system's own, so that a bookie of the same name starts anew
    assert [[path.name for path in volume.iterdir()] for volume in storage.values()] == [["lost+found"]] * 2
    # And it said what it was doing, and what it did
    assert ctx.unit_status_history[-1] == Status.DECOMMISSIONING(attempt=1)
    assert out.unit_status == Status.DECOMMISSIONED()


def test_a_decommission_that_cannot_finish_yet_is_tried_again(
    ctx: testing.Context, pulsar_image: Path, storage: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a dying bookie whose fragments cannot be copied at first (no bookie to take one)
    failing = _bookie(pulsar_image, storage, shell_exit=1)
    waits: list[float] = []
    attempts: list[int] = []
    decommissioned: list[str] = []
    original = BookieWorkload.recover_ledgers

    def second_attempt_succeeds(self: BookieWorkload, bookie_id: str, timeout: float) -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:
            original(self, bookie_id, timeout)  # the exec of the container above: exits 1
        # the second attempt finishes

    monkeypatch.setattr(BookieWorkload, "recover_ledgers", second_attempt_succeeds)
    monkeypatch.setattr(BookieWorkload, "decommission", lambda _, bookie_id, __: decommissioned.append(bookie_id))
    monkeypatch.setattr(decommission.time, "sleep", waits.append)
    state = _dying(failing)

    # When its journal storage is about to detach
    out = ctx.run(ctx.on.storage_detaching(next(s for s in state.storages if s.name == "journal")), state)

    # Then it waited once and tried again, saying why it waited, and decommissioned it only after
    assert attempts == [1, 2]
    assert waits == [decommission.RETRY_INTERVAL]
    retrying = Status.DECOMMISSION_RETRYING(
        attempt=1, error="/pulsar/bin/bookkeeper shell exited 1: Failed to find 1 bookies"
    )
    assert retrying in ctx.unit_status_history
    assert decommissioned == [f"{FQDN}:3181"]
    # And it emptied the volumes once the decommission finished
    assert [[path.name for path in volume.iterdir()] for volume in storage.values()] == [["lost+found"]] * 2
    assert out.unit_status == Status.DECOMMISSIONED()


def test_a_bookie_that_never_registered_has_nothing_to_decommission(
    ctx: testing.Context, pulsar_image: Path, tmp_path: Path
) -> None:
    # Given a dying unit whose volumes hold no cookie (its bookie never started, or was decommissioned)
    empty = {name: tmp_path / name for name in ("journal", "ledgers")}
    for volume in empty.values():
        volume.mkdir()
    state = _dying(_bookie(pulsar_image, empty))

    # When its storage is about to detach
    out = ctx.run(ctx.on.storage_detaching(next(iter(state.storages))), state)

    # Then nothing ran: there is nothing of it in the cluster to move
    assert ctx.exec_history.get("bookie", []) == []
    assert out.unit_status == Status.DECOMMISSIONED()


def test_a_pod_that_does_not_answer_is_left_to_autorecovery(ctx: testing.Context) -> None:
    # Given a dying unit whose container does not answer
    state = _dying(testing.Container("bookie", can_connect=False))

    # When its storage is about to detach
    out = ctx.run(ctx.on.storage_detaching(next(iter(state.storages))), state)

    # Then it says it left without a decommission, and why
    assert out.unit_status == Status.NOT_DECOMMISSIONED(reason="its container does not answer")


def test_the_remaining_bookies_say_when_too_few_are_left_to_decommission_one(
    pulsar_image: Path, storage: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given bookie 0 ready and leading, after a scale-down to 2 while pulsar-k8s writes to ensembles of 3
    ctx = testing.Context(BookieCharm, app_name="bookie-k8s", unit_id=0)
    monkeypatch.setattr(BookieWorkload, "ready", lambda self: True)
    provider = {**PROVIDER_DATA, "ensemble-size": "3"}
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s", remote_app_data=provider)
    peers = testing.PeerRelation("bookies", peers_data={1: {"ready": "true"}})
    bookie = _bookie(pulsar_image, storage)
    state = testing.State(
        containers={bookie},
        relations={relation, peers},
        secrets={CREDENTIALS},
        leader=True,
        planned_units=2,
        model=testing.Model("test"),
    )

    # When it reconciles
    out = ctx.run(ctx.on.update_status(), state)

    # Then the unit and the application are blocked with the reason, and the bookie keeps serving
    blocked = Status.TOO_FEW_BOOKIES(planned=2, ensemble=3)
    assert out.unit_status == blocked
    assert out.app_status == blocked
    assert out.get_relation(relation.id).local_unit_data["ready"] == "true"
