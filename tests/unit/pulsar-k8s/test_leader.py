"""pulsar-k8s: the leader's application-wide work, and what a dying unit must not do."""

from __future__ import annotations

import dataclasses
import json

import pytest
from helpers.pulsar_k8s_builders import (
    FQDN0,
    FQDN1,
    FQDN2,
    INIT,
    METADATA_SERVICE_URI,
    ZOOKEEPER_CONNECT,
    Probes,
    Unit,
    credential_secrets,
    decoded,
    encoded,
    fqdn,
    initialized_app_data,
    member,
    ready_bookies,
    record_admin_calls,
    signing_key_secret,
    workload_commands,
)
from ops import pebble, testing

from pulsar_k8s.charm import PulsarCharm
from pulsar_k8s.literals import Status

THREE = [member(0), member(1), member(2)]


def _three_units(unit: Unit, **kwargs: object) -> testing.State:
    """An initialized cluster of three units, seen from unit 0 (the leader unless told)."""
    secret = signing_key_secret()
    app_data = {**initialized_app_data(secret), "zk-members": THREE, **kwargs.pop("app_data", {})}  # type: ignore[dict-item]
    peers = kwargs.pop("peers", {1: {"host": FQDN1}, 2: {"host": FQDN2}})
    planned = kwargs.pop("planned_units", 3)
    return unit.state(app_data=app_data, peers=peers, secrets=(secret,), planned_units=planned, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- defect 1: a dying leader


@pytest.fixture
def ctx2() -> testing.Context:
    """The charm as unit 2, the highest ordinal: the one a scale-down removes first."""
    return testing.Context(PulsarCharm, app_name="pulsar-k8s", unit_id=2)


@pytest.fixture
def probes2(probes: Probes) -> Probes:
    probes.own_fqdn = FQDN2
    probes.zookeeper_mode = "follower"
    probes.broker_ready = True
    probes.zookeeper_modes = {FQDN0: "leader", FQDN1: "follower"}
    probes.brokers_ready = {FQDN0: True, FQDN1: True}
    return probes


def test_a_dying_leader_does_not_shrink_the_ensemble_as_its_peers_depart(
    ctx2: testing.Context, unit: Unit, probes2: Probes
) -> None:
    # Given the leader is unit 2, which a scale-down to two units removes (2 planned), and it
    # hears, as Juju tells a unit being removed, that it departs from unit 0 (whom it no longer lists)
    state = _three_units(unit, peers={1: {"host": FQDN1}}, planned_units=2)
    peer = state.get_relations("cluster")[0]

    # When that relation-departed runs
    out = ctx2.run(ctx2.on.relation_departed(peer, remote_unit=0, departing_unit=2), state)

    # Then it publishes no ensemble change: unit 0 is alive, only its own view shrank
    assert decoded(out.get_relations("cluster")[0].local_app_data)["zk-members"] == THREE
    assert out.unit_status == Status.DYING()

    # When it departs from unit 1 too, and its view holds only itself
    peer = dataclasses.replace(out.get_relations("cluster")[0], peers_data={})
    out = ctx2.run(
        ctx2.on.relation_departed(peer, remote_unit=1, departing_unit=2), dataclasses.replace(out, relations={peer})
    )

    # Then still nothing changes: no ensemble without its live members
    assert decoded(out.get_relations("cluster")[0].local_app_data)["zk-members"] == THREE


def test_a_leader_beyond_the_planned_units_is_dying_before_its_first_departure(
    ctx2: testing.Context, unit: Unit, probes2: Probes
) -> None:
    # Given the leader is unit 2 and a scale-down to two units has begun (Kubernetes removes the
    # highest ordinal), but none of its teardown hooks has run yet
    state = _three_units(unit, peers={1: {"host": FQDN1}}, planned_units=2)

    # When an unrelated event reaches it first
    out = ctx2.run(ctx2.on.update_status(), state)

    # Then it already does no application-wide work: the ensemble stays as published
    assert decoded(out.get_relations("cluster")[0].local_app_data)["zk-members"] == THREE
    assert out.unit_status == Status.DYING()


def test_a_dying_leader_revokes_no_client_when_its_relations_break(
    ctx2: testing.Context, unit: Unit, probes2: Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a dying leader (it heard its own departure) and a client holding a grant and a token
    calls = record_admin_calls(monkeypatch)
    client = testing.Relation(
        "pulsar", remote_app_name="client", remote_app_data=encoded({"namespace": "client/default"})
    )
    token = testing.Secret(
        {"token": "t"}, owner="app", label=f"pulsar-client-{client.id}", remote_grants={client.id: {"client"}}
    )
    state = _three_units(unit, peers={1: {"host": FQDN1}}, relations=(client, ready_bookies(3, 3)), planned_units=2)
    state = dataclasses.replace(state, secrets={*state.secrets, token})
    peer = state.get_relations("cluster")[0]
    out = ctx2.run(ctx2.on.relation_departed(peer, remote_unit=0, departing_unit=2), state)

    # When, as Juju removes it, its client relation is broken on its side
    out = ctx2.run(ctx2.on.relation_broken(out.get_relation(client.id)), out)

    # Then the client keeps its token secret, and no permission was touched
    assert token.id in {s.id for s in out.secrets}
    assert calls == []


def test_a_member_still_in_the_relation_is_not_dropped(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    # Given the leader, unit 0, while unit 2 is being removed (2 planned) but has not departed,
    # and unit 2 has written nothing readable into its peer databag
    probes.zookeeper_mode = "leader"
    probes.zookeeper_modes = {FQDN1: "follower", FQDN2: "follower"}
    state = _three_units(unit, peers={1: {"host": FQDN1}, 2: {}}, planned_units=2)

    # When the leader reconciles
    out = ctx.run(ctx.on.update_status(), state)

    # Then unit 2 stays in the ensemble until it departs
    assert decoded(out.get_relations("cluster")[0].local_app_data)["zk-members"] == THREE


# ---------------------------------------------------------------- defect 6: health from the members


def test_the_leader_asks_each_member_whether_it_serves(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    # Given a quorum of three whose unit 2 died without a hook (its last self-report says follower),
    # and a fourth unit that joined
    probes.zookeeper_mode = "leader"
    probes.zookeeper_modes = {FQDN1: "follower"}  # unit 2 does not answer
    peers = {1: {"host": FQDN1, "zk-state": "follower"}, 2: {"host": FQDN2, "zk-state": "follower"}, 3: {}}
    state = _three_units(unit, peers=peers, planned_units=4)

    # When the leader reconciles
    out = ctx.run(ctx.on.update_status(), state)

    # Then it asked unit 2's ZooKeeper itself, and adds no server to an ensemble that is not healthy
    assert ("srvr", FQDN2) in probes.asked
    assert decoded(out.get_relations("cluster")[0].local_app_data)["zk-members"] == THREE

    # When unit 2 answers again
    probes.zookeeper_modes[FQDN2] = "follower"
    out = ctx.run(ctx.on.update_status(), out)

    # Then the fourth unit joins
    assert decoded(out.get_relations("cluster")[0].local_app_data)["zk-members"] == [*THREE, member(3)]


def test_no_member_restarts_into_a_larger_ensemble_before_the_new_server_serves(
    ctx: testing.Context, unit: Unit, probes: Probes
) -> None:
    # Given a quorum of three serving, a fourth unit that joined, and the leader's services on an older definition
    probes.zookeeper_mode = "leader"
    probes.zookeeper_modes = {FQDN1: "follower", FQDN2: "follower"}
    services = {name: {"override": "replace", "command": "old"} for name in ("zookeeper", "broker")}
    old = pebble.Layer({"services": services})
    running = {"zookeeper": pebble.ServiceStatus.ACTIVE, "broker": pebble.ServiceStatus.ACTIVE}
    peers = {1: {"host": FQDN1}, 2: {"host": FQDN2}, 3: {}}
    state = _three_units(unit, peers=peers, planned_units=4, layers={"pulsar": old}, service_statuses=running)

    # When the leader reconciles
    out = ctx.run(ctx.on.update_status(), state)

    # Then it adds the fourth server, and waits to restart into the ensemble of four: the new
    # server must join the running quorum first (restarted first, two of four never elect)
    peer_data = out.get_relations("cluster")[0]
    assert decoded(peer_data.local_app_data)["zk-members"] == [*THREE, member(3)]
    assert "restart-holder" not in peer_data.local_app_data
    assert decoded(peer_data.local_unit_data)["restart-request"]["phase"] == "waiting"
    assert out.get_container("pulsar").plan.services["zookeeper"].command == "old"

    # When the fourth server has joined the running quorum
    probes.zookeeper_modes[fqdn(3)] = "follower"
    out = ctx.run(ctx.on.update_status(), out)

    # Then the leader restarts into the ensemble of four (and, serving again at once, frees the lock)
    assert out.get_container("pulsar").plan.services["zookeeper"].command != "old"
    assert "restart-request" not in out.get_relations("cluster")[0].local_unit_data


def test_a_standalone_server_restarts_for_the_second_to_join_it(
    ctx: testing.Context, unit: Unit, probes: Probes
) -> None:
    # Given an ensemble grown from one server to two: the first still standalone, the second
    # waiting for it (alone, it is no quorum of two); the leader's services on an older definition
    probes.zookeeper_mode = "standalone"
    probes.zookeeper_modes = {FQDN1: ""}  # answers, does not serve
    services = {name: {"override": "replace", "command": "old"} for name in ("zookeeper", "broker")}
    running = {"zookeeper": pebble.ServiceStatus.ACTIVE, "broker": pebble.ServiceStatus.ACTIVE}
    state = _three_units(
        unit,
        app_data={"zk-members": [member(0), member(1)]},
        peers={1: {"host": FQDN1}},
        planned_units=2,
        layers={"pulsar": pebble.Layer({"services": services})},
        service_statuses=running,
    )

    # When the leader reconciles
    out = ctx.run(ctx.on.update_status(), state)

    # Then it restarts into the ensemble of two, though the other member does not serve
    assert out.get_container("pulsar").plan.services["zookeeper"].command != "old"


# ---------------------------------------------------------------- defect 8: whatever the leader's own state


def _leader_waiting_for_its_restart_turn(unit: Unit, **kwargs: object) -> testing.State:
    """The leader's services run an old definition while unit 1 holds the restart lock."""
    old = pebble.Layer(
        {
            "services": {
                "zookeeper": {"override": "replace", "command": "old"},
                "broker": {"override": "replace", "command": "old"},
            }
        }
    )
    running = {"zookeeper": pebble.ServiceStatus.ACTIVE, "broker": pebble.ServiceStatus.ACTIVE}
    app_data = {"restart-holder": "pulsar-k8s/1"}
    peers = {1: {"host": FQDN1, "restart-request": {"phase": "restarted", "services": ["broker"]}}, 2: {"host": FQDN2}}
    return _three_units(
        unit, app_data=app_data, peers=peers, layers={"pulsar": old}, service_statuses=running, **kwargs
    )


def test_a_new_bookie_application_gets_the_metadata_store_while_the_leader_waits_its_turn(
    ctx: testing.Context, unit: Unit, probes: Probes
) -> None:
    # Given the leader waiting for its turn to restart, and a bookie application just related
    probes.zookeeper_mode = "leader"
    probes.zookeeper_modes = {FQDN1: "follower", FQDN2: "follower"}
    bookies = testing.Relation("bookkeeper", remote_app_name="bookie-k8s")
    state = _leader_waiting_for_its_restart_turn(unit, relations=(bookies,))

    # When the relation changes
    out = ctx.run(ctx.on.relation_changed(bookies), state)

    # Then the bookies are told where the metadata lives, while the leader still waits
    # (and the ensemble size of new ledgers: with no bookie yet and the size on auto, one)
    assert decoded(out.get_relation(bookies.id).local_app_data) == {
        "metadata-service-uri": METADATA_SERVICE_URI,
        "cluster-name": "pulsar",
        "initialized": True,
        "ensemble-size": 1,
        "credentials-secret": credential_secrets()[1].id,
    }
    assert out.unit_status == Status.RESTART_HELD(services="broker, zookeeper", holder="pulsar-k8s/1")
    assert out.get_container("pulsar").plan.services["broker"].command == "old"


def test_a_client_is_served_through_another_broker_while_the_leaders_own_is_down(
    ctx: testing.Context, unit: Unit, probes: Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the leader whose own broker is down, while unit 1's broker serves, and a new client
    calls = record_admin_calls(monkeypatch)
    probes.zookeeper_mode = "leader"
    probes.zookeeper_modes = {FQDN1: "follower", FQDN2: "follower"}
    probes.brokers_ready = {FQDN1: True}
    client = testing.Relation(
        "pulsar", remote_app_name="client", remote_app_data=encoded({"namespace": "client/default"})
    )
    state = _leader_waiting_for_its_restart_turn(unit, relations=(client, ready_bookies(3, 3)))

    # When the client's request arrives
    out = ctx.run(ctx.on.relation_changed(client), state)

    # Then unit 1's broker took the admin calls, and the client got its grant with every broker
    assert {call[0] for call in calls} == {f"http://{FQDN1}:8080"}
    assert ("ensure_namespace", "client/default") in {call[1:] for call in calls}
    data = decoded(out.get_relation(client.id).local_app_data)
    assert data["service-url"] == f"pulsar://{FQDN0}:6650,{FQDN1}:6650,{FQDN2}:6650"
    assert "secret-credentials" in data


def test_the_leader_initializes_the_cluster_while_its_own_zookeeper_is_down(
    ctx: testing.Context, unit: Unit, probes: Probes
) -> None:
    # Given an ensemble of three whose other two members serve, the leader's own ZooKeeper down
    probes.zookeeper_modes = {FQDN1: "leader", FQDN2: "follower"}
    secret = signing_key_secret()
    state = unit.state(
        app_data={"zk-members": THREE, "signing-key-secret": secret.id},
        peers={1: {"host": FQDN1}, 2: {"host": FQDN2}},
        secrets=(secret,),
        planned_units=3,
        execs=frozenset({testing.Exec(INIT)}),
    )

    # When it reconciles
    out = ctx.run(ctx.on.update_status(), state)

    # Then it initialized the cluster through the quorum of the other two
    command = workload_commands(ctx)[0]
    assert command[command.index("--metadata-store") + 1] == f"zk:{ZOOKEEPER_CONNECT}"
    assert decoded(out.get_relations("cluster")[0].local_app_data)["initialized"] == "pulsar"
    assert out.unit_status == Status.ZK_QUORUM(ready=2, total=3)


# ---------------------------------------------------------------- the application's status


def test_the_application_status_summarises_the_cluster(
    ctx: testing.Context, unit: Unit, probes: Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three units whose ZooKeepers and brokers all serve, and three ready bookies
    record_admin_calls(monkeypatch)
    probes.zookeeper_mode, probes.broker_ready = "leader", True
    probes.zookeeper_modes = {FQDN1: "follower", FQDN2: "follower"}
    probes.brokers_ready = {FQDN1: True, FQDN2: True}
    state = _three_units(unit, relations=(ready_bookies(3, 3),))

    # When the leader reconciles
    out = ctx.run(ctx.on.update_status(), state)

    # Then the application's status sums the cluster up
    assert out.app_status == Status.APP_ACTIVE(brokers="3 brokers", serving=3, members=3, bookies="3 bookies")

    # When unit 2's pod goes away without a word, and a bookie is not ready
    probes.zookeeper_modes.pop(FQDN2)
    probes.brokers_ready.pop(FQDN2)
    out = ctx.run(ctx.on.update_status(), _three_units(unit, relations=(ready_bookies(3, 2),)))

    # Then it says what is missing
    assert out.app_status == Status.APP_DEGRADED(brokers="2/3 brokers", serving=2, members=3, bookies="2/3 bookies")


def test_the_application_status_asks_for_bookies(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    probes.zookeeper_mode = "standalone"
    secret = signing_key_secret()
    out = ctx.run(ctx.on.update_status(), unit.state(app_data=initialized_app_data(secret), secrets=(secret,)))
    assert out.app_status == Status.NO_BOOKKEEPER_RELATION()


def test_peer_data_that_does_not_decode_is_left_alone_and_said(
    ctx: testing.Context, unit: Unit, probes: Probes
) -> None:
    # Given peer application data in a form this charm cannot read (not JSON)
    raw = {"signing-key-secret": "secret:not-json", "zk-members": json.dumps(THREE[:1])}
    state = dataclasses.replace(unit.state(), relations={testing.PeerRelation("cluster", local_app_data=raw)})

    # When the leader reconciles
    out = ctx.run(ctx.on.config_changed(), state)

    # Then it writes nothing over it (no new signing key), and says why it is blocked
    assert out.get_relations("cluster")[0].local_app_data == raw
    assert not [s for s in out.secrets if s.label == "token-signing-key"]
    assert out.unit_status == Status.INVALID_PEER_DATA(
        error="pulsar-k8s: key 'signing-key-secret' is not JSON: 'secret:not-json'"
    )


# ---------------------------------------------------------------- the cluster a client talks to


def _serving_cluster(probes: Probes) -> None:
    """Every unit's ZooKeeper and broker serve."""
    probes.zookeeper_mode, probes.broker_ready = "leader", True
    probes.zookeeper_modes = {FQDN1: "follower", FQDN2: "follower"}
    probes.brokers_ready = {FQDN1: True, FQDN2: True}


def _client() -> testing.Relation:
    return testing.Relation(
        "pulsar", remote_app_name="client", remote_app_data=encoded({"namespace": "client/default"})
    )


def test_a_clients_grant_says_which_cluster_it_talks_to_and_follows_a_bookie_that_goes_away(
    ctx: testing.Context, unit: Unit, probes: Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three units whose brokers serve, three ready bookies, and a client asking for its namespace
    record_admin_calls(monkeypatch)
    _serving_cluster(probes)
    client, bookies = _client(), ready_bookies(3, 3)
    state = _three_units(unit, relations=(client, bookies))

    # When the leader serves the client
    out = ctx.run(ctx.on.relation_changed(client), state)

    # Then the grant names the image's Pulsar version, the brokers and bookies serving, and the
    # ledger quorum the brokers run with (the defaults for three bookies)
    granted = decoded(out.get_relation(client.id).local_app_data)
    assert granted["cluster"] == {
        "pulsar-version": "4.0.8",
        "brokers": 3,
        "bookies": 3,
        "ensemble-size": 3,
        "write-quorum": 3,
        "ack-quorum": 2,
    }

    # When bookie 2 is removed
    remaining = dataclasses.replace(
        out.get_relation(bookies.id), remote_units_data=ready_bookies(2, 2).remote_units_data
    )
    relations = {r for r in out.relations if r.id != bookies.id} | {remaining}
    out = ctx.run(ctx.on.relation_departed(remaining, remote_unit=2), dataclasses.replace(out, relations=relations))

    # Then the grant says two bookies and the ensemble and write quorum of two, the rest of it unchanged
    updated = decoded(out.get_relation(client.id).local_app_data)
    shrunk = {"bookies": 2, "ensemble-size": 2, "write-quorum": 2}
    assert updated == {**granted, "cluster": {**granted["cluster"], **shrunk}}


def test_the_grant_says_when_no_broker_serves(
    ctx: testing.Context, unit: Unit, probes: Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a client granted while three brokers served
    record_admin_calls(monkeypatch)
    _serving_cluster(probes)
    client = _client()
    out = ctx.run(ctx.on.relation_changed(client), _three_units(unit, relations=(client, ready_bookies(3, 3))))
    granted = decoded(out.get_relation(client.id).local_app_data)

    # When every broker is down (no admin call can be made)
    probes.broker_ready, probes.brokers_ready = False, {}
    out = ctx.run(ctx.on.update_status(), out)

    # Then the grant says no broker serves, the rest of it as it was
    updated = decoded(out.get_relation(client.id).local_app_data)
    assert updated == {**granted, "cluster": {**granted["cluster"], "brokers": 0}}
