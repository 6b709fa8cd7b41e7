"""Between the model's state and one unit's ops.testing State.

`unit_view` builds the State a unit's hook sees: only what Juju would show that unit (the
relations' remote units it has seen join, the secrets it owns or was granted, its own stored
state) and its containers as their real Pebble reports them, so that ops.testing's
consistency checks hold. `absorb` takes the State the charm left behind, writes it back to
the model and returns the events Juju would deliver because of it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import ops
from ops import testing

from sandbox.pods import SUBNET
from sandbox.state import ModelState, RelationState, SecretState, UnitState, juju_time
from sandbox.wire import EventSpec


@dataclass(frozen=True)
class ContainerSnapshot:
    """One workload container as its Pebble reports it, just before a hook."""

    can_connect: bool
    plan: ops.pebble.Plan | None = None
    check_infos: frozenset[testing.CheckInfo] = frozenset()
    notices: tuple[testing.Notice, ...] = field(default_factory=tuple)

    def has_check(self, name: str) -> bool:
        return any(info.name == name for info in self.check_infos)

    def has_notice(self, notice_id: str) -> bool:
        return any(notice.id == notice_id for notice in self.notices)


def juju_unit_defaults(address: str) -> dict[str, str]:
    """The keys Juju itself writes into every unit databag."""
    return {"ingress-address": address, "private-address": address, "egress-subnets": f"{address}/32"}


def _members(unit: UnitState, relation: RelationState) -> list[str]:
    """The remote units this unit sees in the relation, as `relation-list` would answer."""
    return sorted(
        (m for m in unit.members.get(relation.id, set()) if m in relation.unit_data),
        key=lambda name: int(name.split("/")[1]),
    )


def _relation_view(model: ModelState, unit: UnitState, relation: RelationState) -> testing.RelationBase:
    app = unit.app
    endpoint = relation.endpoint_of(app)
    local_unit = dict(relation.unit_data.get(unit.name, juju_unit_defaults(unit.pod.address)))
    local_app = dict(relation.app_data.get(app, {}))
    remote_units = {int(name.split("/")[1]): dict(relation.unit_data[name]) for name in _members(unit, relation)}
    if relation.is_peer:
        return testing.PeerRelation(
            endpoint,
            interface=relation.interface,
            id=relation.id,
            local_app_data=local_app,
            local_unit_data=local_unit,
            peers_data=remote_units,
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
        remote_units_data=remote_units,
    )


def _owns(unit: UnitState, secret: SecretState) -> bool:
    if secret.user_owned:
        return False  # the model owns a user secret: charms only read it
    return secret.owner == (unit.name if secret.owner_is_unit else unit.app)


def _secret_view(unit: UnitState, secret: SecretState) -> testing.Secret | None:
    latest = secret.revisions[secret.latest]
    if _owns(unit, secret):
        owned_by_app = not secret.owner_is_unit
        view = testing.Secret(
            latest,
            id=secret.id,
            owner="app" if owned_by_app else "unit",
            remote_grants=dict(secret.grants),
            label=secret.label,
            description=secret.description,
            expire=secret.latest_expiry,
            rotate=secret.rotate,
        )
        # The owner reads the latest revision; ops.testing numbers revisions from 1 unless told,
        # and refuses to remove the one it takes for the latest (so would refuse revision 1).
        object.__setattr__(view, "_tracked_revision", secret.latest)
        object.__setattr__(view, "_latest_revision", secret.latest)
        return view
    if not secret.granted_to(unit.name, unit.app):
        return None  # Juju shows a unit no secret it was not granted
    # A unit that never read the secret gets the latest revision at its first read, and tracks it.
    tracked = unit.tracked_revisions.get(secret.id, secret.latest)
    if tracked not in secret.revisions:
        tracked = secret.latest
    view = testing.Secret(
        secret.revisions[tracked],
        latest_content=latest,
        id=secret.id,
        label=unit.secret_labels.get(secret.id),
    )
    # ops.testing numbers an observer's revisions itself, from 1; it has no public way to
    # start elsewhere, and `absorb` reads which revision the charm tracks at the end.
    object.__setattr__(view, "_tracked_revision", tracked)
    object.__setattr__(view, "_latest_revision", secret.latest)
    return view


def _readable(unit: UnitState, secret: SecretState) -> bool:
    return _owns(unit, secret) or secret.granted_to(unit.name, unit.app)


def visible_secret(model: ModelState, unit: UnitState, secret_id: str) -> bool:
    secret = model.secrets.get(secret_id)
    return secret is not None and _readable(unit, secret)


def hidden_secrets(model: ModelState, unit: UnitState) -> frozenset[str]:
    """The model's secrets that this unit may not read (it gets "permission denied" for them)."""
    return frozenset(s.id for s in model.secrets.values() if not _readable(unit, s))


def _config(unit: UnitState, values: dict[str, Any]) -> dict[str, Any]:
    """The application's config as this unit's charm declares it (a float option set to 3 is 3.0)."""
    config = {**unit.charm.config_defaults(), **values}
    typed = {}
    for key, value in config.items():
        option = unit.charm.config_options.get(key)
        if option is None:
            continue  # an option of another revision of the charm (during a refresh)
        if option.get("type") == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        typed[key] = value
    return typed


def _container_view(name: str, snapshot: ContainerSnapshot | None) -> testing.Container:
    if snapshot is None or not snapshot.can_connect:
        return testing.Container(name, can_connect=False)
    # The plan as one layer: ops.testing checks each check's info against it, and Pebble
    # cannot tell the layers a plan was made of.
    layers = {"plan": ops.pebble.Layer(snapshot.plan.to_yaml())} if snapshot.plan is not None else {}
    return testing.Container(
        name,
        can_connect=True,
        layers=layers,
        check_infos=snapshot.check_infos,
        notices=list(snapshot.notices),
    )


def unit_view(model: ModelState, unit: UnitState, containers: dict[str, ContainerSnapshot]) -> testing.State:
    app = model.apps[unit.app]
    # A unit running older charm code (mid-refresh) sees only the endpoints its code declares.
    relations = [
        r
        for r in model.relations_of(unit.app, include_removing=True)
        if r.endpoint_of(unit.app) in unit.charm.endpoints
    ]
    secrets = [view for s in model.secrets.values() if (view := _secret_view(unit, s)) is not None]
    address = unit.pod.address
    bind = testing.BindAddress([testing.Address(address, cidr=str(SUBNET))])
    networks = {
        testing.Network(name, bind_addresses=[bind], ingress_addresses=[address], egress_subnets=[f"{address}/32"])
        for name in [*unit.charm.endpoints, "juju-info"]
    }
    return testing.State(
        config=_config(unit, app.config),
        relations=[_relation_view(model, unit, r) for r in relations],
        networks=networks,
        containers={_container_view(name, containers.get(name)) for name in unit.charm.containers},
        storages={testing.Storage(name, index=0) for name in unit.charm.storage},
        # The application's current revision of each file resource (the agent hands the
        # unit its own copy); one never attached is absent, and resource-get fails.
        resources={
            testing.Resource(name=name, path=revision.path)
            for name, revision in app.resources.items()
            if name in unit.charm.file_resources
        },
        opened_ports=unit.opened_ports,
        leader=app.leader == unit.name,
        model=testing.Model(model.name, uuid=model.uuid, type="kubernetes"),
        secrets=secrets,
        planned_units=len(model.alive_units(unit.app)),
        deferred=list(unit.deferred),
        stored_states=unit.stored_states,
        app_status=app.status,
        unit_status=unit.workload_status,
        workload_version=unit.workload_version,
    )


def app_data_changed(before: testing.State, after: testing.State) -> bool:
    previous = {r.id: r for r in before.relations}
    return any(
        r.id in previous and dict(r.local_app_data) != dict(previous[r.id].local_app_data) for r in after.relations
    )


def absorb(
    model: ModelState,
    unit: UnitState,
    before: testing.State,
    after: testing.State,
    secrets_read: Collection[str] = (),
    revisions_removed: Collection[tuple[str, int]] = (),
) -> list[tuple[str, EventSpec]]:
    """Write what the charm changed back to the model; return (unit, event) pairs to deliver.

    `secrets_read`: the secrets the charm got content of during the hook;
    `revisions_removed`: the (secret id, revision) pairs it removed (`secret-remove --revision`).
    """
    app = model.apps[unit.app]
    events: list[tuple[str, EventSpec]] = []
    # ops.testing statuses are ops statuses too; its State annotates them by its own base class.
    unit.workload_status = cast(ops.StatusBase, after.unit_status)
    unit.workload_version = after.workload_version
    unit.stored_states = after.stored_states
    unit.deferred = list(after.deferred)
    unit.opened_ports = after.opened_ports
    leader = app.leader == unit.name
    if leader:
        app.status = cast(ops.StatusBase, after.app_status)

    previous = {r.id: r for r in before.relations}
    for relation_out in after.relations:
        relation = model.relations.get(relation_out.id)
        if relation is None or relation_out.id not in previous:
            continue  # removed while the hook ran
        old = previous[relation_out.id]
        # A departed unit's writes are kept but published to nobody, as on Juju.
        if dict(relation_out.local_unit_data) != dict(old.local_unit_data) and unit.name in relation.unit_data:
            relation.unit_data[unit.name] = dict(relation_out.local_unit_data)
            if not unit.dying:
                for other in _audience(model, unit, relation):
                    events.append(
                        (other, EventSpec("relation_changed", relation_id=relation.id, remote_unit=unit.number))
                    )
        if leader and dict(relation_out.local_app_data) != dict(old.local_app_data):
            relation.app_data[unit.app] = dict(relation_out.local_app_data)
            for other in _audience(model, unit, relation):
                events.append((other, EventSpec("relation_changed", relation_id=relation.id)))

    events += _absorb_secrets(model, unit, before, after, secrets_read)
    _remove_revisions(model, revisions_removed)
    events += _obsolete_revisions(model)
    return events


def _audience(model: ModelState, unit: UnitState, relation: RelationState) -> list[str]:
    """Units that hear of a change `unit` made in a relation: the other side's units in scope."""
    return [o.name for o in model.in_scope(relation, relation.other_app(unit.app)) if o.name != unit.name]


def _grants(secret: testing.Secret) -> dict[int, frozenset[str]]:
    """A secret's grants as the model keeps them: relation id -> the units and apps granted."""
    return {rid: frozenset(names) for rid, names in secret.remote_grants.items() if names}


def _absorb_secrets(
    model: ModelState, unit: UnitState, before: testing.State, after: testing.State, read: Collection[str]
) -> list[tuple[str, EventSpec]]:
    events: list[tuple[str, EventSpec]] = []
    seen_before = {s.id: s for s in before.secrets}
    seen_after = set()
    now = datetime.now(UTC)
    for secret in after.secrets:
        seen_after.add(secret.id)
        known = model.secrets.get(secret.id)
        if secret.owner is None:  # observed: remember which revision it tracks now, and its label
            # Juju starts tracking at the first read; get_content(refresh=True) moves it on.
            if known is not None and (secret.id in read or secret.id in unit.tracked_revisions):
                unit.tracked_revisions[secret.id] = secret._tracked_revision
            if secret.label:
                unit.secret_labels[secret.id] = secret.label
            continue
        owner = unit.app if secret.owner == "app" else unit.name
        if known is None:
            known = SecretState(
                id=secret.id,
                owner=owner,
                owner_is_unit=secret.owner == "unit",
                revisions={1: dict(secret.latest_content)},
                label=secret.label,
                description=secret.description,
                expiry={1: juju_time(secret.expire)} if secret.expire is not None else {},
                grants=_grants(secret),
            )
            known.set_rotation(secret.rotate, now)
            model.secrets[secret.id] = known
            continue
        # Only what this hook did counts: a unit that ran alongside another that changed the
        # secret (units run in parallel) ends its hook with what it was shown, which is no
        # change (Juju takes secret-set and secret-grant calls, not a view of the secret).
        shown = seen_before.get(secret.id)
        if shown is None or secret.label != shown.label:
            known.label = secret.label
        if shown is None or secret.description != shown.description:
            known.description = secret.description
        if shown is None or _grants(secret) != _grants(shown):
            known.grants = _grants(secret)
        # Juju 3.6 merges a hook's secret-set calls: an expire time set in the hook goes with
        # the new revision if there is one, else onto the latest revision.
        new_expire = secret.expire if shown is None or secret.expire != shown.expire else None
        written = shown is None or dict(secret.latest_content) != dict(shown.latest_content or {})
        if written and dict(secret.latest_content) != known.revisions[known.latest]:
            known.latest += 1
            known.revisions[known.latest] = dict(secret.latest_content)
            for observer in model.tracking(known):
                events.append((observer.name, EventSpec("secret_changed", secret_id=known.id)))
        if new_expire is not None:
            known.expiry[known.latest] = juju_time(new_expire)
        if (shown is None or secret.rotate != shown.rotate) and secret.rotate != known.rotate:
            known.set_rotation(secret.rotate, now)
    for removed in set(seen_before) - seen_after:
        known = model.secrets.get(removed)
        if known is not None and known.owner in (unit.app, unit.name):
            del model.secrets[removed]
    return events


def _remove_revisions(model: ModelState, removed: Collection[tuple[str, int]]) -> None:
    """Revisions the owner removed are gone, and with them their expiry."""
    for secret_id, revision in removed:
        known = model.secrets.get(secret_id)
        if known is None or revision == known.latest:
            continue  # the latest revision only goes with the whole secret
        known.revisions.pop(revision, None)
        known.expiry.pop(revision, None)
        known.obsolete.discard(revision)


def _obsolete_revisions(model: ModelState) -> list[tuple[str, EventSpec]]:
    """secret-remove for each charm secret revision that became obsolete, to the secret's manager.

    Juju marks a revision obsolete once it is no longer the latest and no consumer tracks it
    (an owner reads the latest and tracks nothing), and tells the owner (the leader for an
    application's secret) once, with secret-remove, that it may remove it.
    """
    events: list[tuple[str, EventSpec]] = []
    for secret in model.secrets.values():
        if secret.user_owned:
            continue
        tracked = {u.tracked_revisions.get(secret.id) for u in model.units.values()}
        newly = sorted(r for r in secret.revisions if r < secret.latest and r not in tracked | secret.obsolete)
        if not newly:
            continue
        secret.obsolete.update(newly)
        manager = model.manager(secret)
        if manager is not None:
            events += [
                (manager.name, EventSpec("secret_remove", secret_id=secret.id, secret_revision=revision))
                for revision in newly
            ]
    return events
