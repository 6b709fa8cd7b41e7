"""bookie-k8s: the bookkeeper relation gates everything."""

from __future__ import annotations

from pathlib import Path

from ops import testing

from bookie_k8s.charm import BookieCharm
from bookie_k8s.literals import Status


def _container(image: Path) -> testing.Container:
    return testing.Container(
        "bookie", can_connect=True, mounts={"image": testing.Mount(location="/pulsar", source=image)}
    )


def test_asks_to_integrate_with_pulsar(pulsar_image: Path) -> None:
    # Given a bookie with no bookkeeper relation
    ctx = testing.Context(BookieCharm)
    workload = _container(pulsar_image)

    # When Pebble becomes ready
    out = ctx.run(ctx.on.pebble_ready(workload), testing.State(containers={workload}))

    # Then the unit tells the user what to integrate with
    assert out.unit_status == Status.NO_BOOKKEEPER_RELATION.value
    assert "juju integrate bookie-k8s pulsar-k8s" in out.unit_status.message


def test_relation_broken_goes_back_to_asking(pulsar_image: Path) -> None:
    # Given a bookie related to pulsar-k8s
    ctx = testing.Context(BookieCharm)
    relation = testing.Relation("bookkeeper", remote_app_name="pulsar-k8s")
    state = testing.State(containers={_container(pulsar_image)}, relations={relation})

    # When the relation changes, and later is removed
    related = ctx.run(ctx.on.relation_changed(relation), state)
    broken = ctx.run(ctx.on.relation_broken(relation), related)

    # Then it waits while related, and asks again once the relation is gone
    assert related.unit_status == Status.NOT_MANAGED_YET.value
    assert broken.unit_status == Status.NO_BOOKKEEPER_RELATION.value
