"""pulsar-k8s: `rotate-signing-key`, from the action to the old key's retirement, with no restart."""

from __future__ import annotations

import dataclasses
import json
import time

import jwt
import pytest
from helpers.pulsar_k8s_builders import (
    FQDN0,
    FQDN1,
    FQDN2,
    KEY_ID,
    KEY_PEM,
    KEY_SINCE,
    SIGNING_KEYS,
    Probes,
    Unit,
    decoded,
    encoded,
    initialized_app_data,
    member,
    ready_bookies,
    record_admin_calls,
)
from ops import testing

from pulsar_k8s.literals import Status
from pulsar_k8s.managers import auth

THREE = [member(0), member(1), member(2)]
LIFETIME = 28 * 86400
OLD = auth.SigningKey(KEY_ID, KEY_PEM, KEY_SINCE)
NEW = auth.SigningKey.generate(KEY_SINCE + 3600)


def _keys_secret(keys: auth.SigningKeys) -> testing.Secret:
    return testing.Secret(keys.to_content(), owner="app", label="token-signing-key")


def _client_secret(token: str, relation: testing.Relation) -> testing.Secret:
    """The token secret the leader made for the client earlier (its latest revision is 1)."""
    return testing.Secret(
        {"token": token}, owner="app", label=f"pulsar-client-{relation.id}", remote_grants={relation.id: {"client"}}
    )


def _fresh() -> tuple[int, int]:
    """When a token issued now would be issued and expire: not yet due for renewal."""
    now = int(time.time())
    return now, now + LIFETIME


def _granted_client(monkeypatch: pytest.MonkeyPatch) -> tuple[testing.Relation, str, testing.Secret]:
    """A client the leader served before (admin calls recorded): its relation, token and token secret."""
    record_admin_calls(monkeypatch)
    client = testing.Relation(
        "pulsar", remote_app_name="client", remote_app_data=encoded({"namespace": "client/default"})
    )
    token = auth.TokenIssuer(OLD, "pulsar-k8s").token(f"pulsar-k8s-client-{client.id}", *_fresh())
    return client, token, _client_secret(token, client)


def _promoted(
    ctx: testing.Context, unit: Unit, probes: Probes, monkeypatch: pytest.MonkeyPatch
) -> tuple[testing.State, testing.Relation, testing.Secret]:
    """A rotation whose new key every unit's key set serves, after the leader's next reconcile."""
    client, _, client_secret = _granted_client(monkeypatch)
    keys = auth.SigningKeys(OLD).begin_rotation(NEW)
    peer_keys = {"token-keys": keys.kids, "token-key": OLD.kid}
    state = _cluster(unit, probes, keys, peer_keys, relations=(client,), secrets=(client_secret,))
    return ctx.run(ctx.on.update_status(), state), client, client_secret


def _cluster(
    unit: Unit,
    probes: Probes,
    keys: auth.SigningKeys,
    peer_keys: dict[str, object] | None = None,
    app_data: dict[str, object] | None = None,
    relations: tuple[testing.Relation, ...] = (),
    secrets: tuple[testing.Secret, ...] = (),
    leader: bool = True,
) -> testing.State:
    """Three serving units seen from unit 0, with these signing keys; each unit says `peer_keys` of its own."""
    probes.zookeeper_mode, probes.broker_ready = "leader", True
    probes.zookeeper_modes = {FQDN1: "follower", FQDN2: "follower"}
    probes.brokers_ready = {FQDN1: True, FQDN2: True}
    secret = _keys_secret(keys)
    data = {**initialized_app_data(secret), "zk-members": THREE, "token-keys": keys.kids, **(app_data or {})}
    peers = {1: {"host": FQDN1, **(peer_keys or {})}, 2: {"host": FQDN2, **(peer_keys or {})}}
    return unit.state(
        leader=leader,
        app_data=data,
        peers=peers,
        unit_data={"host": FQDN0, **(peer_keys or {})},
        secrets=(secret, *secrets),
        relations=(ready_bookies(3, 3), *relations),
        planned_units=3,
    )


def _keys(out: testing.State) -> auth.SigningKeys | None:
    secret = next(s for s in out.secrets if s.label == "token-signing-key")
    return auth.SigningKeys.from_content(dict(secret.latest_content or {}))


def _key_ids_served(unit: Unit) -> list[str]:
    return [key["kid"] for key in json.loads((unit.conf / "token-keys/jwks.json").read_text())["keys"]]


def _app_data(out: testing.State) -> dict[str, object]:
    return decoded(out.get_relations("cluster")[0].local_app_data)


def test_rotate_signing_key_runs_on_the_leader_only(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    state = _cluster(unit, probes, auth.SigningKeys(OLD), leader=False)
    with pytest.raises(testing.ActionFailed, match="run it on the leader unit"):
        ctx.run(ctx.on.action("rotate-signing-key"), state)


def test_the_new_key_is_published_on_every_unit_before_it_signs(
    ctx: testing.Context, unit: Unit, probes: Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a cluster serving a client whose token the current key signed
    client, token, client_secret = _granted_client(monkeypatch)
    state = _cluster(unit, probes, auth.SigningKeys(OLD), relations=(client,), secrets=(client_secret,))

    # When the operator runs rotate-signing-key on the leader
    out = ctx.run(ctx.on.action("rotate-signing-key"), state)

    # Then a new key joins the secret, named in the results, and the old one still signs
    results = ctx.action_results or {}
    keys = _keys(out)
    assert keys is not None
    assert keys.next is not None
    assert (keys.active, results["new-key-id"], results["retiring-key-id"]) == (OLD, keys.next.kid, OLD.kid)
    # And the peers are woken (the key ids in app data), and this unit's key set serves both
    assert _app_data(out)["token-keys"] == sorted([OLD.kid, keys.next.kid])
    assert _key_ids_served(unit) == [OLD.kid, keys.next.kid]
    assert decoded(out.get_relations("cluster")[0].local_unit_data)["token-keys"] == sorted([OLD.kid, keys.next.kid])
    # And no client token changed yet: the other brokers may not verify the new key yet
    client_secret = next(s for s in out.secrets if s.label == f"pulsar-client-{client.id}")
    assert (client_secret.latest_content or {})["token"] == token
    # And the application status says what the rotation waits for
    assert out.app_status == Status.APP_ACTIVE_ROTATING(
        brokers="3 brokers", serving=3, members=3, bookies="3 bookies",
        step="publishing the new key: pulsar-k8s/1, pulsar-k8s/2",
    )  # fmt: skip

    # And a second rotation is refused while this one runs
    with pytest.raises(testing.ActionFailed, match="a rotation is under way"):
        ctx.run(ctx.on.action("rotate-signing-key"), out)


def test_the_new_key_signs_every_token_once_every_broker_verifies_it(
    ctx: testing.Context, unit: Unit, probes: Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a rotation whose new key every unit's key set serves
    # When the leader reconciles
    out, client, client_secret = _promoted(ctx, unit, probes, monkeypatch)

    # Then the new key signs and the old one retires, still verified
    assert _keys(out) == auth.SigningKeys(NEW, retiring=OLD)
    assert _key_ids_served(unit) == [NEW.kid, OLD.kid]
    # And the client's token is issued again with the new key; the revision before is pending
    secret = next(s for s in out.secrets if s.label == f"pulsar-client-{client.id}")
    token = (secret.latest_content or {})["token"]
    assert jwt.get_unverified_header(token)["kid"] == NEW.kid
    assert auth.TokenIssuer(NEW, "pulsar-k8s").role_of(token) == f"pulsar-k8s-client-{client.id}"
    assert _app_data(out)["tokens-pending"] == {client_secret.id.removeprefix("secret:"): 1}
    # And this broker's own token, read from its file, is the new key's: no restart
    assert jwt.get_unverified_header((unit.conf / "broker-token").read_text())["kid"] == NEW.kid
    assert decoded(out.get_relations("cluster")[0].local_unit_data)["token-key"] == NEW.kid
    assert ctx.exec_history.get("pulsar", []) == [] or all(
        "restart" not in " ".join(e.command) for e in ctx.exec_history.get("pulsar", [])
    )


def test_the_old_key_retires_once_every_broker_and_the_client_moved(
    ctx: testing.Context, unit: Unit, probes: Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a rotation promoted its new key: the client's token (revision 1) was issued again (revision 2)
    promoted, _, client_secret = _promoted(ctx, unit, probes, monkeypatch)
    assert _keys(promoted) == auth.SigningKeys(NEW, retiring=OLD)

    # When every peer's broker token is the new key's, but the client has not read its new token
    peer = promoted.get_relations("cluster")[0]
    moved = {n: encoded({**decoded(data), "token-key": NEW.kid}) for n, data in peer.peers_data.items()}
    state = dataclasses.replace(
        promoted,
        relations={*(r for r in promoted.relations if r.id != peer.id), dataclasses.replace(peer, peers_data=moved)},
    )
    out = ctx.run(ctx.on.update_status(), state)

    # Then the old key is still verified, and the status says why
    assert _keys(out) == auth.SigningKeys(NEW, retiring=OLD)
    assert out.app_status == Status.APP_ACTIVE_ROTATING(
        brokers="3 brokers", serving=3, members=3, bookies="3 bookies",
        step="waiting for 1 client(s) to take their new token",
    )  # fmt: skip

    # When Juju says no unit of the client reads revision 1 any more
    secret = next(s for s in out.secrets if s.id == client_secret.id)
    out = ctx.run(ctx.on.secret_remove(secret, revision=1), out)

    # Then the revision is removed, the old key leaves the secret and every key set, and nothing is pending
    assert ctx.removed_secret_revisions == [1]  # by the certificates library, for every secret of ours
    assert _keys(out) == auth.SigningKeys(NEW)
    assert _key_ids_served(unit) == [NEW.kid]
    assert _app_data(out)["token-keys"] == [NEW.kid]
    assert "tokens-pending" not in _app_data(out)
    assert out.app_status == Status.APP_ACTIVE(brokers="3 brokers", serving=3, members=3, bookies="3 bookies")


def test_an_older_charms_hs256_key_is_replaced_in_the_same_secret(
    ctx: testing.Context, unit: Unit, probes: Probes
) -> None:
    # Given the secret of a charm revision that signed with an HS256 key
    legacy = testing.Secret({"signing-key": "c2VjcmV0LWtleQ=="}, owner="app", label="token-signing-key")
    state = unit.state(app_data={**initialized_app_data(legacy)}, secrets=(legacy,))

    # When the leader reconciles
    out = ctx.run(ctx.on.update_status(), state)

    # Then the same secret holds a signing key pair, and no second secret takes the label
    secrets = [s for s in out.secrets if s.label == "token-signing-key"]
    assert [s.id for s in secrets] == [legacy.id]
    keys = _keys(out)
    assert keys is not None
    assert not keys.rotating
    assert set(secrets[0].latest_content or {}) == set(SIGNING_KEYS)
