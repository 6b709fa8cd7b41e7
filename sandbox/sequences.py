"""Juju's event orders: which events each unit gets, in which order, for each change of the model.

Every function here only queues events (and Kubernetes' pod steps) on units; the scheduler
runs them. Sources for the orders: Juju's hook reference (a new unit, a unit removed with
`remove-unit --num-units`, a Kubernetes charm refreshed or its pod churned).
"""

from __future__ import annotations

from sandbox.state import ModelState, PodAction, QueueItem, RelationState, SecretState, UnitState
from sandbox.wire import EventSpec

# The events a dying unit still gets: its own teardown (anything else is dropped, as a
# departed unit hears nothing more from the model).
_TEARDOWN = frozenset({"relation_departed", "relation_broken", "storage_detaching", "stop", "remove"})


def queue(state: ModelState, unit: UnitState, event: QueueItem, *, front: bool = False) -> None:
    """Add an event to a unit's queue, unless Juju would not deliver it."""
    if unit.name not in state.units:
        return
    if isinstance(event, EventSpec):
        if unit.dying and event.kind not in _TEARDOWN:
            return
        relation = state.relations.get(event.relation_id) if event.relation_id is not None else None
        if relation is not None and relation.removing and event.kind not in ("relation_departed", "relation_broken"):
            return
        # Juju coalesces a relation-changed that is already pending for the same remote, and
        # a secret-changed for the same secret (the unit then reads the latest revision).
        if event.kind in ("relation_changed", "secret_changed") and event in list(unit.queue)[1:]:
            return
    if front:
        unit.queue.appendleft(event)
    else:
        unit.queue.append(event)


def unit_arrival(state: ModelState, unit: UnitState, databag: dict[str, str]) -> None:
    """A new unit's events.

    storage-attached, install, relation-created, leader-elected, config-changed, start,
    pebble-ready; then it enters the scope of each of its application's relations.
    """
    app = state.apps[unit.app]
    for storage in unit.charm.storage:
        queue(state, unit, EventSpec("storage_attached", storage=storage))
    queue(state, unit, EventSpec("install"))
    relations = state.relations_of(unit.app)
    for relation in relations:
        queue(state, unit, EventSpec("relation_created", relation_id=relation.id))
    if app.leader == unit.name:
        queue(state, unit, EventSpec("leader_elected"))
    queue(state, unit, EventSpec("config_changed"))
    queue(state, unit, EventSpec("start"))
    for container in unit.charm.containers:
        queue(state, unit, EventSpec("pebble_ready", container=container))
    for relation in relations:
        enter_scope(state, unit, relation, databag)


def enter_scope(state: ModelState, unit: UnitState, relation: RelationState, databag: dict[str, str]) -> None:
    """The unit joins the relation: each side sees the other's units join, then change.

    Its databag starts with what Juju itself writes into it (its addresses).
    """
    relation.unit_data.setdefault(unit.name, dict(databag))
    for other in state.in_scope(relation, relation.other_app(unit.app)):
        if other.name == unit.name or other.dying:
            continue
        for kind in ("relation_joined", "relation_changed"):
            queue(state, other, EventSpec(kind, relation_id=relation.id, remote_unit=unit.number))
            queue(state, unit, EventSpec(kind, relation_id=relation.id, remote_unit=other.number))


def integrate(state: ModelState, relation: RelationState, databags: dict[str, dict[str, str]]) -> None:
    """A new relation: relation-created on every unit of both sides, then each enters its scope."""
    units = [state.units[u] for app in {owner for owner, _ in relation.endpoints} for u in state.apps[app].units]
    units = [u for u in units if not u.dying]
    for unit in units:
        queue(state, unit, EventSpec("relation_created", relation_id=relation.id))
    for unit in units:
        enter_scope(state, unit, relation, databags[unit.name])


def remove_relation(state: ModelState, relation: RelationState) -> None:
    """remove-relation: every unit sees each remote unit depart, then the relation break."""
    relation.removing = True
    apps = [owner for owner, _ in relation.endpoints]
    for app in apps:
        for unit in state.in_scope(relation, app):
            for other in state.in_scope(relation, relation.other_app(app)):
                if other.name != unit.name:
                    queue(
                        state,
                        unit,
                        EventSpec(
                            "relation_departed",
                            relation_id=relation.id,
                            remote_unit=other.number,
                            departing_unit=other.name,
                        ),
                    )
            queue(state, unit, EventSpec("relation_broken", relation_id=relation.id))


def unit_teardown(state: ModelState, unit: UnitState) -> None:
    """remove-unit: the dying unit's teardown, and the others seeing it depart.

    The dying unit sees every remote unit of each relation depart (itself the departing
    unit), each relation break, its storage detach, then stop and remove; the other units see
    it depart at the same time. Its pod goes when its last hook ends.
    """
    unit.dying = True
    for relation in state.relations_of(unit.app):
        if unit.name not in relation.unit_data:
            continue
        for other in state.in_scope(relation, relation.other_app(unit.app)):
            if other.name == unit.name:
                continue
            departure = {"relation_id": relation.id, "departing_unit": unit.name}
            queue(state, unit, EventSpec("relation_departed", remote_unit=other.number, **departure))
            queue(state, other, EventSpec("relation_departed", remote_unit=unit.number, **departure))
        queue(state, unit, EventSpec("relation_broken", relation_id=relation.id))
    for storage in unit.charm.storage:
        queue(state, unit, EventSpec("storage_detaching", storage=storage))
    queue(state, unit, EventSpec("stop"))
    queue(state, unit, EventSpec("remove"))
    queue(state, unit, PodAction("delete"))


def pod_replacement(state: ModelState, unit: UnitState, move_leader: bool = False) -> None:
    """The pod is deleted (after the stop hook) and created again from the template."""
    queue(state, unit, EventSpec("stop"))
    queue(state, unit, PodAction("replace", move_leader=move_leader))


def after_new_pod(state: ModelState, unit: UnitState) -> None:
    """A unit's new pod (restart, refresh): what its new agent runs first.

    upgrade-charm, config-changed, start and pebble-ready, before anything that was queued
    while the pod was down (Juju's order for a Kubernetes charm's new pod).
    """
    events = [EventSpec("upgrade_charm"), EventSpec("config_changed"), EventSpec("start")]
    events += [EventSpec("pebble_ready", container=name) for name in unit.charm.containers]
    for event in reversed(events):
        queue(state, unit, event, front=True)


def leader_elected(state: ModelState, unit: UnitState) -> None:
    state.apps[unit.app].leader = unit.name
    queue(state, unit, EventSpec("leader_elected"))


def secret_changed(state: ModelState, secret: SecretState) -> None:
    """A new revision: secret-changed on each unit that tracks the secret (it read it) and may still read it."""
    for unit in state.tracking(secret):
        queue(state, unit, EventSpec("secret_changed", secret_id=secret.id))


def config_changed(state: ModelState, app: str) -> None:
    for unit in state.alive_units(app):
        queue(state, unit, EventSpec("config_changed"))


def apply_membership(state: ModelState, unit: UnitState, event: EventSpec) -> None:
    """What `relation-list` answers changes as the unit's own joined and departed hooks run."""
    if event.kind not in ("relation_joined", "relation_departed") or event.remote_unit is None:
        return
    relation = state.relations.get(event.relation_id) if event.relation_id is not None else None
    if relation is None:
        return
    remote = f"{relation.other_app(unit.app)}/{event.remote_unit}"
    members = unit.members.setdefault(relation.id, set())
    if event.kind == "relation_joined":
        members.add(remote)
    else:
        members.discard(remote)
