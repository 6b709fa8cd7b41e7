"""pulsar-k8s managers: decisions and rendering, without ops."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import jwt
import pytest

from pulsar_k8s.managers import auth
from pulsar_k8s.managers.admin import AdminError, PulsarAdmin
from pulsar_k8s.managers.config import CharmConfig, InvalidConfigError, LedgerQuorum, ledger_quorum, parse_duration
from pulsar_k8s.managers.ensemble import Member, next_ensemble, server_id

DEFAULTS = {
    "cluster-name": "pulsar",
    "broker-heap": "512m",
    "zookeeper-heap": "256m",
    "ensemble-size": 0,
    "write-quorum": 0,
    "ack-quorum": 0,
}


# Ids of the members whose ZooKeeper answers `srvr` (serving or not).
ALIVE = set(range(1, 10))


def members(*ids: int) -> list[Member]:
    return [Member(i, f"pulsar-k8s-{i - 1}.fqdn") for i in ids]


class TestEnsemble:
    def test_server_ids_follow_unit_numbers(self) -> None:
        assert server_id("pulsar-k8s/0") == 1
        assert server_id("pulsar-k8s/12") == 13

    def test_the_first_ensemble_waits_for_all_planned_units_then_takes_them_together(self) -> None:
        assert next_ensemble([], members(1, 2), planned_units=3, healthy=False, live=ALIVE) == []
        assert next_ensemble([], members(1, 2, 3), planned_units=3, healthy=False, live=ALIVE) == members(1, 2, 3)

    def test_growth_adds_one_server_at_a_time_and_only_when_healthy(self) -> None:
        current, candidates = members(1, 2, 3), members(1, 2, 3, 4, 5)
        assert next_ensemble(current, candidates, planned_units=5, healthy=False, live=ALIVE) == current
        assert next_ensemble(current, candidates, planned_units=5, healthy=True, live=ALIVE) == members(1, 2, 3, 4)
        assert next_ensemble(members(1, 2, 3, 4), candidates, 5, healthy=True, live=ALIVE) == members(1, 2, 3, 4, 5)

    def test_new_servers_never_hold_a_majority(self) -> None:
        # However many units join at once, each step adds one empty server to a healthy ensemble.
        current = members(1)
        candidates = members(1, 2, 3, 4, 5)
        while current != candidates:
            following = next_ensemble(current, candidates, planned_units=5, healthy=True, live=ALIVE)
            new = len(following) - len(current)
            assert new == 1
            assert new < len(following) / 2 or len(following) == 2  # 1 of 2 cannot elect alone either
            current = following

    def test_departed_servers_are_dropped_even_without_a_quorum(self) -> None:
        # The departed members are not serving (so the ensemble is not healthy): drop them anyway.
        assert next_ensemble(members(1, 2, 3), members(1, 2), planned_units=2, healthy=False, live=ALIVE) == members(
            1, 2
        )
        assert next_ensemble(members(1, 2, 3), members(1), planned_units=1, healthy=False, live=ALIVE) == members(1)

    def test_a_member_missing_from_an_incomplete_view_is_kept(self) -> None:
        # A new leader that has not seen unit 2 join yet (3 units planned, 2 seen) changes nothing.
        assert next_ensemble(members(1, 2, 3), members(1, 3), planned_units=3, healthy=True, live=ALIVE) == members(
            1, 2, 3
        )

    def test_a_member_still_in_the_relation_is_never_dropped(self) -> None:
        # Unit 3 is being removed (2 planned) but has not left the relation yet: it stays.
        assert next_ensemble(members(1, 2, 3), members(1, 2, 3), planned_units=2, healthy=True, live=ALIVE) == members(
            1, 2, 3
        )

    def test_no_ensemble_is_published_in_which_no_member_answers(self) -> None:
        # A view in which nobody answers (the leader's own pod cut off, say) changes nothing.
        assert next_ensemble(members(1, 2, 3), members(1), planned_units=1, healthy=False, live=set()) == members(
            1, 2, 3
        )
        assert next_ensemble(members(1, 2, 3), members(1), planned_units=1, healthy=False, live={1}) == members(1)

    def test_a_replaced_unit_is_dropped_before_its_successor_joins(self) -> None:
        current = next_ensemble(members(1, 2, 3), members(1, 2, 4), planned_units=3, healthy=False, live=ALIVE)
        assert current == members(1, 2)
        assert next_ensemble(current, members(1, 2, 4), planned_units=3, healthy=True, live=ALIVE) == members(1, 2, 4)


class TestConfig:
    def test_defaults_follow_the_bookies_capped_at_three_three_two(self) -> None:
        config = CharmConfig.parse(DEFAULTS)
        assert ledger_quorum(config, 1) == LedgerQuorum(1, 1, 1)
        assert ledger_quorum(config, 2) == LedgerQuorum(2, 2, 2)
        assert ledger_quorum(config, 5) == LedgerQuorum(3, 3, 2)
        # An ensemble set larger writes to three of it
        assert ledger_quorum(CharmConfig.parse({**DEFAULTS, "ensemble-size": 5}), 5) == LedgerQuorum(5, 3, 2)

    def test_explicit_quorums_are_kept_and_checked(self) -> None:
        config = CharmConfig.parse({**DEFAULTS, "ensemble-size": 5, "write-quorum": 3, "ack-quorum": 2})
        assert ledger_quorum(config, 5) == LedgerQuorum(5, 3, 2)
        with pytest.raises(InvalidConfigError, match="write-quorum: 4 exceeds the ensemble size 3"):
            ledger_quorum(CharmConfig.parse({**DEFAULTS, "ensemble-size": 3, "write-quorum": 4}), 3)

    @pytest.mark.parametrize(
        ("option", "value"),
        [("cluster-name", "has space"), ("broker-heap", "512"), ("zookeeper-heap", "1t"), ("ack-quorum", -1)],
    )
    def test_bad_values_name_their_option(self, option: str, value: object) -> None:
        with pytest.raises(InvalidConfigError) as raised:
            CharmConfig.parse({**DEFAULTS, option: value})
        assert raised.value.option == option


KEY_A = auth.SigningKey.generate(1_700_000_000)
KEY_B = auth.SigningKey.generate(1_700_000_100)
ISSUER_A = auth.TokenIssuer(KEY_A, "pulsar-k8s")


class TestAuth:
    def test_tokens_carry_the_role_and_verify_only_with_their_key_and_audience(self) -> None:
        token = ISSUER_A.token("client-app", 1_800_000_000, 1_800_086_400)
        assert ISSUER_A.role_of(token) == "client-app"
        assert auth.TokenIssuer(KEY_B, "pulsar-k8s").role_of(token) is None
        assert auth.TokenIssuer(KEY_A, "other-app").role_of(token) is None
        assert ISSUER_A.role_of("not-a-token") is None

    def test_the_token_carries_every_claim_the_openid_provider_requires(self) -> None:
        # Pulsar's AuthenticationProviderOpenID refuses a token without iss, aud, sub, iat, nbf, exp;
        # it picks the key by kid and refuses any algorithm but RS*/ES*
        token = ISSUER_A.token("r", 1_800_000_000, 1_800_000_600)
        header = jwt.get_unverified_header(token)
        assert header == {"alg": "RS256", "kid": KEY_A.kid, "typ": "JWT"}
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims == {
            "sub": "r", "iss": "http://127.0.0.1:8079", "aud": "pulsar-k8s",
            "iat": 1_800_000_000 - 60, "nbf": 1_800_000_000 - 60, "exp": 1_800_000_600,
        }  # fmt: skip

    def test_the_key_set_verifies_tokens_of_each_key_it_holds(self) -> None:
        keys = auth.SigningKeys(KEY_A).begin_rotation(KEY_B)
        key_set = json.loads(keys.key_set())
        assert [k["kid"] for k in key_set["keys"]] == [KEY_A.kid, KEY_B.kid]
        for key in (KEY_A, KEY_B):
            jwk = next(k for k in key_set["keys"] if k["kid"] == key.kid)
            public = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwk))
            token = auth.TokenIssuer(key, "pulsar-k8s").token("r", 1_800_000_000, 1_800_000_600)
            options = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}
            claims = jwt.decode(token, public, algorithms=["RS256"], audience="pulsar-k8s", options=options)  # type: ignore[arg-type]
            assert claims["sub"] == "r"
        assert json.loads(auth.openid_configuration()) == {
            "issuer": "http://127.0.0.1:8079", "jwks_uri": "http://127.0.0.1:8079/jwks.json",
        }  # fmt: skip

    def test_the_broker_token_is_the_same_on_every_render(self) -> None:
        assert ISSUER_A.broker_token("admin") == ISSUER_A.broker_token("admin")
        assert ISSUER_A.role_of(ISSUER_A.broker_token("admin")) == "admin"

    def test_the_keys_survive_their_secret(self) -> None:
        keys = auth.SigningKeys(KEY_B, retiring=KEY_A)
        assert auth.SigningKeys.from_content(keys.to_content()) == keys
        # An older charm's HS256 key is no key of this kind: the leader replaces it
        assert auth.SigningKeys.from_content({"signing-key": "c2VjcmV0"}) is None


class TestRotation:
    def test_the_new_key_signs_once_every_broker_verifies_it(self) -> None:
        keys = auth.SigningKeys(KEY_A).begin_rotation(KEY_B)
        verifying = {"pulsar-k8s/0": [KEY_A.kid, KEY_B.kid], "pulsar-k8s/1": [KEY_A.kid]}
        assert auth.rotation_step(keys, verifying, {}, 0) == (None, "publishing the new key: pulsar-k8s/1")
        verifying["pulsar-k8s/1"].append(KEY_B.kid)
        assert auth.rotation_step(keys, verifying, {}, 0) == (auth.SigningKeys(KEY_B, retiring=KEY_A), None)

    def test_the_old_key_retires_once_every_broker_and_client_uses_the_new_one(self) -> None:
        keys = auth.SigningKeys(KEY_B, retiring=KEY_A)
        signing = {"pulsar-k8s/0": KEY_B.kid, "pulsar-k8s/1": KEY_A.kid}
        waiting = "waiting for pulsar-k8s/1 to use the new key"
        assert auth.rotation_step(keys, {}, signing, 0) == (None, waiting)
        signing["pulsar-k8s/1"] = KEY_B.kid
        assert auth.rotation_step(keys, {}, signing, 2) == (None, "waiting for 2 client(s) to take their new token")
        assert auth.rotation_step(keys, {}, signing, 0) == (auth.SigningKeys(KEY_B), None)

    def test_no_rotation_no_step(self) -> None:
        assert auth.rotation_step(auth.SigningKeys(KEY_A), {}, {}, 0) == (None, None)


class _Recorder(BaseHTTPRequestHandler):
    calls: ClassVar[list[tuple[str, str, str, str]]] = []
    existing: ClassVar[set[str]] = set()
    answers: ClassVar[dict[str, object]] = {}  # GET path -> JSON answer

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.calls.append((self.command, self.path, self.headers.get("Authorization", ""), body))
        if self.command == "GET" and self.path in self.answers:
            payload = json.dumps(self.answers[self.path]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if self.path in self.existing and self.command == "PUT":
            self.send_response(409)
            self.end_headers()
            self.wfile.write(b'{"reason": "exists"}')
            return
        if self.path.endswith("/forbidden"):
            self.send_response(403)
            self.end_headers()
            self.wfile.write(b'{"reason": "Client is not authorized"}')
            return
        self.send_response(204)
        self.end_headers()

    do_PUT = do_POST = do_GET = _handle  # noqa: N815 - the names http.server dispatches to

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def broker() -> Iterator[str]:
    _Recorder.calls = []
    _Recorder.existing = {"/admin/v2/tenants/app", "/admin/v2/persistent/app/default/taken/partitions"}
    _Recorder.answers = {}
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class TestAdmin:
    def test_calls_carry_the_superuser_token_and_existing_objects_are_fine(self, broker: str) -> None:
        admin = PulsarAdmin("tok", base_url=broker)
        admin.ensure_tenant("app", "pulsar")
        admin.ensure_namespace("app/default")
        admin.grant("app/default", "app", ("consume", "produce"))
        assert [(m, p) for m, p, _, _ in _Recorder.calls] == [
            ("PUT", "/admin/v2/tenants/app"),
            ("PUT", "/admin/v2/namespaces/app/default"),
            ("POST", "/admin/v2/namespaces/app/default/permissions/app"),
        ]
        assert {auth_header for _, _, auth_header, _ in _Recorder.calls} == {"Bearer tok"}
        assert json.loads(_Recorder.calls[2][3]) == ["consume", "produce"]

    def test_a_refusal_carries_the_broker_reason(self, broker: str) -> None:
        with pytest.raises(AdminError, match="HTTP 403: Client is not authorized"):
            PulsarAdmin("tok", base_url=broker).ensure_namespace("app/forbidden")

    def test_an_unreachable_broker_is_an_admin_error(self) -> None:
        with pytest.raises(AdminError, match="/admin/v2/tenants/x"):
            PulsarAdmin("tok", base_url="http://127.0.0.1:9").ensure_tenant("x", "pulsar")

    def test_partitioned_topics_are_created_and_grown_with_the_count_as_json_body(self, broker: str) -> None:
        admin = PulsarAdmin("tok", base_url=broker)
        admin.create_partitioned_topic("app/default", "sensor-readings", 16)
        admin.add_partitions("app/default", "sensor-readings", 32)
        assert [(m, p, b) for m, p, _, b in _Recorder.calls] == [
            ("PUT", "/admin/v2/persistent/app/default/sensor-readings/partitions", "16"),
            ("POST", "/admin/v2/persistent/app/default/sensor-readings/partitions", "32"),
        ]

    def test_the_namespaces_topics_and_a_topics_partitions_are_read(self, broker: str) -> None:
        _Recorder.answers = {
            "/admin/v2/persistent/app/default": ["persistent://app/default/plain"],
            "/admin/v2/persistent/app/default/partitioned": ["persistent://app/default/readings"],
            "/admin/v2/persistent/app/default/readings/partitions": {"partitions": 4, "deleted": False},
        }
        admin = PulsarAdmin("tok", base_url=broker)
        assert admin.topics("app/default") == ["persistent://app/default/plain"]
        assert admin.partitioned_topics("app/default") == ["persistent://app/default/readings"]
        assert admin.partitions("app/default", "readings") == 4
        assert admin.partitions("app/default", "plain") == 0  # no metadata: not partitioned

    def test_a_refusal_carries_its_status_and_only_the_clients_own_count_as_refused(self, broker: str) -> None:
        admin = PulsarAdmin("tok", base_url=broker)
        with pytest.raises(AdminError) as conflict:
            admin.create_partitioned_topic("app/default", "taken", 4)
        assert (conflict.value.status, conflict.value.refused) == (409, True)
        with pytest.raises(AdminError) as forbidden:
            admin.ensure_namespace("app/forbidden")
        assert (forbidden.value.status, forbidden.value.refused) == (403, False)  # our credentials: not the client's
        with pytest.raises(AdminError) as unreachable:
            PulsarAdmin("tok", base_url="http://127.0.0.1:9").partitioned_topics("app/default")
        assert (unreachable.value.status, unreachable.value.refused) == (None, False)


# ---------------------------------------------------------------- token lifetime


@pytest.mark.parametrize(
    ("left", "lifetime", "reusable"),
    [(20 * 86400, 28 * 86400, True), (9 * 86400, 28 * 86400, False), (20 * 86400, 14 * 86400, False)],
)
def test_a_token_is_reused_only_with_more_than_a_third_of_its_lifetime_left(
    left: int, lifetime: int, reusable: bool
) -> None:
    now = 1_800_000_000
    token = ISSUER_A.token("role", now, now + left)
    assert ISSUER_A.reusable(token, "role", now, lifetime) is reusable


def test_a_token_of_another_key_or_role_is_not_reused() -> None:
    now, lifetime = 1_800_000_000, 86400
    fresh = now + lifetime
    other = auth.TokenIssuer(KEY_B, "pulsar-k8s")
    assert not ISSUER_A.reusable(other.token("role", now, fresh), "role", now, lifetime)
    assert not ISSUER_A.reusable(ISSUER_A.token("other", now, fresh), "role", now, lifetime)
    assert not ISSUER_A.reusable(ISSUER_A.broker_token("role"), "role", now, lifetime)
    assert not ISSUER_A.reusable("not-a-token", "role", now, lifetime)


@pytest.mark.parametrize(("value", "seconds"), [("28d", 28 * 86400), ("12h", 43200), ("1m", 60)])
def test_token_lifetimes_are_durations(value: str, seconds: int) -> None:
    assert parse_duration("token-lifetime", value) == seconds


@pytest.mark.parametrize("value", ["", "0m", "30s", "28", "1w", "-1d", "soon"])
def test_a_token_lifetime_that_is_no_duration_is_refused(value: str) -> None:
    with pytest.raises(InvalidConfigError, match="invalid config token-lifetime"):
        parse_duration("token-lifetime", value)
