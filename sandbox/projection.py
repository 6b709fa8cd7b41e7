"""Between the model's global state and one unit's ops.testing State.

`unit_view` builds the State a unit's hook sees: only what Juju would show that unit
(its relations' databags, the secrets it owns or was granted, its own stored state).
`absorb` takes the State the charm left behind, writes it back to the model and returns
the events Juju would deliver because of it (relation-changed, secret-changed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import ops
from ops import testing

from sandbox.pods import SUBNET
from sandbox.state import AppState, RelationState, SecretState, UnitState


@dataclass
class World:
    """The parts of a model that a unit's view is drawn from."""

    name: str
    uuid: str
    apps: dict[str, AppState]
    units: dict[str, UnitState]
    relations: dict[int, RelationState]
    secrets: dict[str, SecretState]


def juju_unit_defaults(unit: UnitState) -> dict[str, str]:
    """The keys Juju itself writes into every unit databag."""
    address = unit.pod.address
    return {"ingress-address": address, "private-address": address, "egress-subnets": f"{address}/32"}


def _joined_units(world: World, app: str, relation: RelationState) -> list[UnitState]:
    return [world.units[u] for u in world.apps[app].units if u in relation.unit_data]


def _relation_view(world: World, unit: UnitState, relation: RelationState) -> Any:
    app = unit.app
    endpoint = relation.endpoint_of(app)
    local_unit = dict(relation.unit_data.get(unit.name, juju_unit_defaults(unit)))
    local_app = dict(relation.app_data.get(app, {}))
    if relation.is_peer:
        peers = {
            other.number: dict(relation.unit_data[other.name])
            for other in _joined_units(world, app, relation)
            if other.name != unit.name
        }
        return testing.PeerRelation(
            endpoint,
            interface=relation.interface,
            id=relation.id,
            local_app_data=local_app,
            local_unit_data=local_unit,
            peers_data=peers,
        )
    remote = relation.other_app(app)
    return testing.Relation(
        endpoint,
        interface=relation.interface,
        id=relation.id,
        remote_app_name=remote,
        local_app_data=local_app,
        local_unit_data=local_unit,
        remote_app_data=dict(relation.app_data.get(remote, {})),
        remote_units_data={
            other.number: dict(relation.unit_data[other.name]) for other in _joined_units(world, remote, relation)
        },
    )


def _secret_view(unit: UnitState, secret: SecretState) -> testing.Secret | None:
    owned_by_app = not secret.owner_is_unit and secret.owner == unit.app
    owned_by_unit = secret.owner_is_unit and secret.owner == unit.name
    latest = secret.revisions[secret.latest]
    if owned_by_app or owned_by_unit:
        return testing.Secret(
            latest,
            id=secret.id,
            owner="app" if owned_by_app else "unit",
            remote_grants=dict(secret.grants),
            label=secret.label,
            description=secret.description,
            expire=secret.expire,
            rotate=secret.rotate,
        )
    if not secret.granted_to(unit.name, unit.app):
        return None  # Juju shows a unit no secret it was not granted
    tracked = unit.tracked_revisions.get(secret.id, secret.latest)
    view = testing.Secret(
        secret.revisions.get(tracked, latest),
        latest_content=latest,
        id=secret.id,
        label=unit.secret_labels.get(secret.id),
    )
    object.__setattr__(view, "_tracked_revision", tracked)
    object.__setattr__(view, "_latest_revision", secret.latest)
    return view


def unit_view(
    world: World,
    unit: UnitState,
    can_connect: dict[str, bool],
    check_infos: dict[str, Any],
    notices: dict[str, Any],
) -> testing.State:
    app = world.apps[unit.app]
    relations = [r for r in world.relations.values() if any(owner == unit.app for owner, _ in r.endpoints)]
    secrets = [view for s in world.secrets.values() if (view := _secret_view(unit, s)) is not None]
    address = unit.pod.address
    bind = testing.BindAddress([testing.Address(address, cidr=str(SUBNET))])
    networks = {
        testing.Network(name, bind_addresses=[bind], ingress_addresses=[address], egress_subnets=[f"{address}/32"])
        for name in [*app.charm.endpoints, "juju-info"]
    }
    containers = {
        testing.Container(
            name,
            can_connect=can_connect.get(name, False),
            check_infos=check_infos.get(name, frozenset()),
            notices=notices.get(name, []),
        )
        for name in app.charm.containers
    }
    storages = {testing.Storage(name, index=0) for name in app.charm.storage}
    return testing.State(
        config={**app.charm.config_defaults(), **app.config},
        relations=[_relation_view(world, unit, r) for r in relations],
        networks=networks,
        containers=containers,
        storages=storages,
        opened_ports=unit.opened_ports,
        leader=app.leader == unit.name,
        model=testing.Model(world.name, uuid=world.uuid, type="kubernetes"),
        secrets=secrets,
        planned_units=len(app.units),
        deferred=list(unit.deferred),
        stored_states=unit.stored_states,
        app_status=app.status,
        unit_status=unit.workload_status,
        workload_version=unit.workload_version,
    )


def _new_secret_id(world: World, secret: testing.Secret) -> str:
    return secret.id


def absorb(
    world: World, unit: UnitState, before: testing.State, after: testing.State
) -> list[tuple[str, dict[str, Any]]]:
    """Write what the charm changed back to the model; return (unit, event) pairs to deliver."""
    app = world.apps[unit.app]
    events: list[tuple[str, dict[str, Any]]] = []
    # ops.testing statuses are ops statuses too; its State annotates them by its own base class.
    unit.workload_status = cast(ops.StatusBase, after.unit_status)
    unit.workload_version = after.workload_version
    unit.stored_states = after.stored_states
    unit.deferred = list(after.deferred)
    unit.opened_ports = after.opened_ports
    if app.leader == unit.name:
        app.status = cast(ops.StatusBase, after.app_status)

    previous = {r.id: r for r in before.relations}
    for relation_out in after.relations:
        relation = world.relations.get(relation_out.id)
        if relation is None:
            continue  # removed while the hook ran
        old = previous[relation_out.id]
        if dict(relation_out.local_unit_data) != dict(old.local_unit_data):
            relation.unit_data[unit.name] = dict(relation_out.local_unit_data)
            for other in _joined_units(world, relation.other_app(unit.app), relation):
                if other.name != unit.name:
                    events.append(
                        (
                            other.name,
                            {
                                "kind": "relation_changed",
                                "relation_id": relation.id,
                                "remote_unit": unit.number,
                            },
                        )
                    )
        if app.leader == unit.name and dict(relation_out.local_app_data) != dict(old.local_app_data):
            relation.app_data[unit.app] = dict(relation_out.local_app_data)
            for other in _joined_units(world, relation.other_app(unit.app), relation):
                if other.name != unit.name:
                    events.append(
                        (
                            other.name,
                            {"kind": "relation_changed", "relation_id": relation.id, "remote_unit": None},
                        )
                    )

    events += _absorb_secrets(world, unit, before, after)
    return events


def _absorb_secrets(
    world: World, unit: UnitState, before: testing.State, after: testing.State
) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    seen_before = {s.id for s in before.secrets}
    seen_after = set()
    for secret in after.secrets:
        seen_after.add(secret.id)
        if secret.owner is None:  # observed: remember which revision it tracks now, and its label
            unit.tracked_revisions[secret.id] = secret._tracked_revision
            if secret.label:
                unit.secret_labels[secret.id] = secret.label
            continue
        owner = unit.app if secret.owner == "app" else unit.name
        known = world.secrets.get(secret.id)
        if known is None:
            world.secrets[secret.id] = SecretState(
                id=secret.id,
                owner=owner,
                owner_is_unit=secret.owner == "unit",
                revisions={1: dict(secret.latest_content)},
                label=secret.label,
                description=secret.description,
                expire=secret.expire,
                rotate=secret.rotate,
                grants={rid: frozenset(names) for rid, names in secret.remote_grants.items()},
            )
            continue
        known.label = secret.label
        known.description = secret.description
        known.grants = {rid: frozenset(names) for rid, names in secret.remote_grants.items() if names}
        if dict(secret.latest_content) != known.revisions[known.latest]:
            known.latest += 1
            known.revisions[known.latest] = dict(secret.latest_content)
            for observer in world.units.values():
                if observer.app != known.owner and known.granted_to(observer.name, observer.app):
                    events.append((observer.name, {"kind": "secret_changed", "secret_id": known.id}))
    for removed in seen_before - seen_after:
        known = world.secrets.get(removed)
        if known is not None and known.owner in (unit.app, unit.name):
            del world.secrets[removed]
    return events
