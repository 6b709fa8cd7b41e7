"""Client access: the `pulsar` interface library and ClientAccess, against a stand-in broker.

The broker is a real local HTTP server that keeps tenants, namespaces, permissions and topics
the way Pulsar's admin REST API does, and refuses any token but the superuser's. ClientAccess
runs inside a minimal provider charm (ops.testing), so the library, the secrets and the
relation data are the real ones; the pulsar-k8s charm itself is not involved.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import ops
import pytest
from ops import testing

from pulsar_k8s.charms.pulsar_k8s.v0 import pulsar as pulsar_library
from pulsar_k8s.charms.pulsar_k8s.v0.pulsar import (
    ClientGrantData,
    ClientRequestData,
    InvalidRequestError,
    PulsarProvider,
    PulsarRequirer,
    RequestNotWritableError,
    validate_request,
)
from pulsar_k8s.managers import auth
from pulsar_k8s.managers.admin import PulsarAdmin
from pulsar_k8s.managers.clients import (
    ClientAccess,
    TopicChanges,
    client_role,
    partitioned_topic_changes,
    relation_id_of,
    short_names,
)

ISSUER = auth.TokenIssuer(auth.SigningKey.generate(1_700_000_000), "pulsar-k8s")
SUPERUSER = "pulsar-k8s-admin"
SUPERUSER_TOKEN = ISSUER.broker_token(SUPERUSER)
SERVICE_URL = "pulsar://a:6650,b:6650"
WEB_SERVICE_URL = "http://a:8080,b:8080"
UNREACHABLE = "http://127.0.0.1:9"
TOKEN_LIFETIME = 30 * 86400


# ---------------------------------------------------------------- a stand-in broker


@dataclass
class BrokerState:
    """What Pulsar keeps in its metadata store, as far as the admin API shows it."""

    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    namespaces: dict[str, dict[str, Any]] = field(default_factory=dict)  # namespace -> policies
    topics: set[str] = field(default_factory=set)  # non-partitioned, full names
    partitioned: dict[str, int] = field(default_factory=dict)  # full name -> partitions
    max_partitions: int = 0  # the broker's maxNumPartitionsPerPartitionedTopic (0: no limit)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def add_namespace(self, namespace: str) -> None:
        self.namespaces[namespace] = {
            "auth_policies": {"namespace_auth": {}, "destination_auth": {}, "subscription_auth_roles": {}}
        }

    def auth(self, namespace: str) -> dict[str, Any]:
        return self.namespaces[namespace]["auth_policies"]

    def roles(self, namespace: str) -> dict[str, list[str]]:
        return self.auth(namespace)["namespace_auth"]

    def everything_granted_to(self, role: str) -> list[str]:
        """Every place `role` holds a permission: namespaces, topics, tenant admins."""
        held = [f"tenant-admin {t}" for t, info in self.tenants.items() if role in info["adminRoles"]]
        for namespace, policies in self.namespaces.items():
            if role in policies["auth_policies"]["namespace_auth"]:
                held.append(f"namespace {namespace}")
            for topic, roles in policies["auth_policies"]["destination_auth"].items():
                if role in roles:
                    held.append(f"topic {topic}")
        return held

    def writes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path in self.calls if method != "GET"]

    def listed(self, namespace: str) -> list[str]:
        """What GET of a namespace's persistent topics lists: plain topics and every partition."""
        prefix = f"persistent://{namespace}/"
        partitions = [f"{t}-partition-{i}" for t, n in self.partitioned.items() for i in range(n)]
        return sorted(t for t in [*self.topics, *partitions] if t.startswith(prefix))

    def partition_count_refused(self, count: int) -> dict[str, str] | None:
        if self.max_partitions and count > self.max_partitions:
            return {"reason": f"Desired partitions {count} can't be greater than the maximum {self.max_partitions}"}
        return None


def initialized_cluster() -> BrokerState:
    """What `initialize-cluster-metadata` leaves: the public and pulsar tenants and namespaces."""
    state = BrokerState()
    for tenant in ("public", "pulsar"):
        state.tenants[tenant] = {"adminRoles": [], "allowedClusters": ["pulsar"]}
    for namespace in ("public/default", "public/functions", "pulsar/system"):
        state.add_namespace(namespace)
    return state


class _AdminApi(BaseHTTPRequestHandler):
    state: ClassVar[BrokerState]

    def _reply(self, code: int, body: Any = None) -> None:
        payload = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        state = self.state
        state.calls.append((self.command, self.path))
        if self.headers.get("Authorization") != f"Bearer {SUPERUSER_TOKEN}":
            return self._reply(401, {"reason": "Authentication required"})
        segments = [urllib.parse.unquote(p) for p in self.path.split("/")]  # "", admin, v2, kind, ...
        kind, parts, method = segments[3], segments[4:], self.command
        match kind, parts, method:
            case "tenants", [], "GET":
                return self._reply(200, sorted(state.tenants))
            case "tenants", [tenant], "GET":
                return self._reply(200, state.tenants[tenant]) if tenant in state.tenants else self._reply(404)
            case "tenants", [tenant], "PUT":
                if tenant in state.tenants:
                    return self._reply(409, {"reason": "Tenant already exists"})
                state.tenants[tenant] = body
                return self._reply(204)
            case "tenants", [tenant], "POST":
                state.tenants[tenant] = body
                return self._reply(204)
            case "namespaces", [tenant], "GET":
                if tenant not in state.tenants:
                    return self._reply(404, {"reason": "Tenant does not exist"})
                return self._reply(200, sorted(n for n in state.namespaces if n.split("/")[0] == tenant))
            case "namespaces", [tenant, name], "GET":
                policies = state.namespaces.get(f"{tenant}/{name}")
                return self._reply(200, policies) if policies is not None else self._reply(404)
            case "namespaces", [tenant, name], "PUT":
                if f"{tenant}/{name}" in state.namespaces:
                    return self._reply(409, {"reason": "Namespace already exists"})
                state.add_namespace(f"{tenant}/{name}")
                return self._reply(204)
            case "namespaces", [tenant, name, "permissions", role], "POST":
                state.roles(f"{tenant}/{name}")[role] = body
                return self._reply(204)
            case "namespaces", [tenant, name, "permissions", role], "DELETE":
                if f"{tenant}/{name}" not in state.namespaces:
                    return self._reply(404)
                state.roles(f"{tenant}/{name}").pop(role, None)
                return self._reply(204)
            case "persistent", [tenant, name], "GET":
                return self._reply(200, state.listed(f"{tenant}/{name}"))
            case "persistent", [tenant, name, "partitioned"], "GET":
                prefix = f"persistent://{tenant}/{name}/"
                return self._reply(200, sorted(t for t in state.partitioned if t.startswith(prefix)))
            case "persistent", [tenant, name, topic], "PUT":
                full = f"persistent://{tenant}/{name}/{topic}"
                if full in state.topics or full in state.partitioned:
                    return self._reply(409, {"reason": "This topic already exists"})
                state.topics.add(full)
                return self._reply(204)
            case "persistent", [tenant, name, topic, "partitions"], "GET":
                # Pulsar answers 0 partitions for a non-partitioned topic and for none at all
                return self._reply(
                    200, {"partitions": state.partitioned.get(f"persistent://{tenant}/{name}/{topic}", 0)}
                )
            case "persistent", [tenant, name, topic, "partitions"], "PUT":
                full = f"persistent://{tenant}/{name}/{topic}"
                if full in state.topics or full in state.partitioned:
                    return self._reply(409, {"reason": "This topic already exists"})
                if refusal := state.partition_count_refused(body):
                    return self._reply(412, refusal)
                state.partitioned[full] = body
                return self._reply(204)
            case "persistent", [tenant, name, topic, "partitions"], "POST":
                full = f"persistent://{tenant}/{name}/{topic}"
                if full not in state.partitioned:
                    return self._reply(404, {"reason": "Partitioned topic does not exist"})
                if body <= state.partitioned[full]:
                    return self._reply(422, {"reason": "Desired partitions must be greater than the current ones"})
                if refusal := state.partition_count_refused(body):
                    return self._reply(412, refusal)
                state.partitioned[full] = body
                return self._reply(204)
            case "persistent", [tenant, name, topic, "permissions", role], "DELETE":
                full = f"persistent://{tenant}/{name}/{topic}"
                topic_auth = state.auth(f"{tenant}/{name}")["destination_auth"]
                if role not in topic_auth.get(full, {}):
                    return self._reply(412, {"reason": "Permissions are not set at the topic level"})
                del topic_auth[full][role]
                return self._reply(204)
        return self._reply(405, {"reason": f"no such endpoint in the stand-in: {method} {self.path}"})

    do_GET = do_PUT = do_POST = do_DELETE = _handle  # noqa: N815 - the names http.server dispatches to

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def broker() -> Iterator[BrokerState]:
    state = initialized_cluster()
    handler = type("AdminApi", (_AdminApi,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    ProviderCharm.broker_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------- charms around the library


class ProviderCharm(ops.CharmBase):
    """The provider side as pulsar-k8s wires it: the leader serves, relation-broken revokes."""

    broker_url: ClassVar[str] = UNREACHABLE
    cluster: ClassVar[dict[str, int | str]] = {}  # the facts pulsar-k8s's leader would know
    now: ClassVar[float] = 1_800_000_000.0  # the leader's clock, in epoch seconds

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.provider = PulsarProvider(self, "pulsar")
        framework.observe(self.on.update_status, self._on_serve)
        framework.observe(self.on.pulsar_relation_changed, self._on_serve)
        framework.observe(self.on.pulsar_relation_broken, self._on_broken)

    def _access(self) -> ClientAccess:
        admin = PulsarAdmin(SUPERUSER_TOKEN, self.broker_url)
        return ClientAccess(self.provider, admin, ISSUER, TOKEN_LIFETIME, clock=lambda: ProviderCharm.now)

    def _show(self, error: str | None) -> None:
        self.unit.status = ops.WaitingStatus(error) if error else ops.ActiveStatus()

    def _on_serve(self, _: ops.EventBase) -> None:
        access = self._access()
        access.publish_cluster(self.cluster)
        self._show(access.serve("pulsar", SERVICE_URL, WEB_SERVICE_URL, self.cluster))

    def _on_broken(self, event: ops.RelationBrokenEvent) -> None:
        self._show(self._access().revoke(event.relation))


class RequirerCharm(ops.CharmBase):
    """A client as the test client charm wires the library."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.pulsar = PulsarRequirer(self, topics=("readings",))
        framework.observe(self.on.pulsar_relation_changed, self._on_changed)

    def _on_changed(self, _: ops.EventBase) -> None:
        self.pulsar.publish_request()
        if error := self.pulsar.error():
            self.unit.status = ops.BlockedStatus(f"refused: {error}")
        elif connection := self.pulsar.connection():
            self.unit.status = ops.ActiveStatus(f"granted {connection.namespace} as {connection.role}")
        else:
            self.unit.status = ops.WaitingStatus("waiting for pulsar-k8s")


PROVIDER_META = {"name": "pulsar-k8s", "provides": {"pulsar": {"interface": "pulsar"}}}
REQUIRER_META = {"name": "client", "requires": {"pulsar": {"interface": "pulsar", "limit": 1}}}


@pytest.fixture
def provider() -> testing.Context:
    return testing.Context(ProviderCharm, meta=PROVIDER_META, app_name="pulsar-k8s")


def client(app: str, relation_id: int = 7, **request: Any) -> testing.Relation:
    """A client application's relation, with its request as the requirer library writes it."""
    asked = {"namespace": f"{app}/default", "permissions": ["consume", "produce"], "topics": [], **request}
    databag = {key.replace("_", "-"): json.dumps(value) for key, value in asked.items()}  # partitioned_topics
    return testing.Relation("pulsar", id=relation_id, remote_app_name=app, remote_app_data=databag)


def published(out: testing.State, relation_id: int) -> dict[str, Any]:
    """The provider's application data on a relation, decoded."""
    return {k: json.loads(v) for k, v in out.get_relation(relation_id).local_app_data.items()}


def token_of(out: testing.State, relation_id: int) -> str:
    secret_id = published(out, relation_id)["secret-credentials"]
    return next(s for s in out.secrets if s.id == secret_id).latest_content["token"]  # type: ignore[index]


def granted_state(relation: testing.Relation, role: str, namespace: str = "") -> testing.State:
    """A leader that granted `relation` earlier: its secret and its published data."""
    namespace = namespace or f"{relation.remote_app_name}/default"
    secret = testing.Secret(
        {"token": ISSUER.broker_token(role)},
        label=f"pulsar-client-{relation.id}",
        owner="app",
        remote_grants={relation.id: {relation.remote_app_name}},
    )
    data = {
        "service-url": SERVICE_URL,
        "web-service-url": WEB_SERVICE_URL,
        "namespace": namespace,
        "role": role,
        "secret-credentials": secret.id,
    }
    granted = testing.Relation(
        "pulsar",
        id=relation.id,
        remote_app_name=relation.remote_app_name,
        remote_app_data=relation.remote_app_data,
        local_app_data={k: json.dumps(v) for k, v in data.items()},
    )
    return testing.State(leader=True, relations={granted}, secrets={secret})


# ---------------------------------------------------------------- the library: requests


class TestRequests:
    def test_a_request_is_json_values_and_defaults_to_both_permissions(self) -> None:
        # Given what a requirer wrote, decoded
        data = ClientRequestData(namespace="client/default", topics=["readings"])
        # When the provider validates it
        request = validate_request(3, "client", data)
        # Then it asks for both permissions and the topic
        assert request is not None
        assert (request.namespace, request.permissions, request.topics) == (
            "client/default",
            ("consume", "produce"),
            ("readings",),
        )

    def test_nothing_is_asked_until_the_namespace_is_set(self) -> None:
        assert validate_request(3, "client", ClientRequestData()) is None

    @pytest.mark.parametrize("app", ["public", "pulsar", "pulsar-k8s-admin", "pulsar-k8s", "pulsar-k8s-tools"])
    def test_reserved_tenants_are_refused_whatever_the_application_is_called(self, app: str) -> None:
        # Given an application named like a shared, system or provider tenant, asking for its own
        data = ClientRequestData(namespace=f"{app}/default")
        # When the provider validates the request, Then it is refused and says why
        with pytest.raises(InvalidRequestError, match=rf"tenant '{app}' is reserved"):
            validate_request(3, app, data)

    def test_another_applications_tenant_is_refused(self) -> None:
        with pytest.raises(InvalidRequestError, match="the tenant must be the application name 'client'"):
            validate_request(3, "client", ClientRequestData(namespace="pulsar-k8s/stolen"))

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (ClientRequestData(namespace="client"), "is not tenant/namespace"),
            (ClientRequestData(namespace="client/default", permissions=["admin"]), r"permissions \['admin'\]"),
            (ClientRequestData(namespace="client/default", permissions=[]), r"permissions \[\]"),
            (ClientRequestData(namespace="client/default", topics=["a/b"]), "topic names"),
        ],
    )
    def test_invalid_requests_say_why(self, data: ClientRequestData, reason: str) -> None:
        with pytest.raises(InvalidRequestError, match=reason):
            validate_request(3, "client", data)

    @pytest.mark.parametrize(
        "fields",
        [
            {"namespace": 3},
            {"permissions": "produce"},
            {"topics": [1]},
            {"partitioned_topics": ["readings"]},
            {"partitioned_topics": {"readings": "4"}},
            {"partitioned_topics": {"readings": 4.0}},
            {"partitioned_topics": {"readings": True}},
        ],
    )
    def test_values_of_the_wrong_type_do_not_decode(self, fields: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match="expected"):
            ClientRequestData(**fields)

    def test_partitioned_topics_are_an_object_of_partition_counts(self) -> None:
        # Given a requirer asking for two partitioned topics besides a plain one
        data = ClientRequestData(
            namespace="client/default", topics=["events"], partitioned_topics={"readings": 16, "alerts": 1}
        )
        # When the provider validates it
        request = validate_request(3, "client", data)
        # Then it asks for both, sorted by name, and the plain topic stays a plain one
        assert request is not None
        assert request.partitioned_topics == (("alerts", 1), ("readings", 16))
        assert request.topics == ("events",)

    @pytest.mark.parametrize(
        ("partitioned", "topics", "reason"),
        [
            ({"a/b": 4}, [], r"partitioned topic names \['a/b'\] are not valid"),
            ({"-x": 4}, [], r"partitioned topic names \['-x'\] are not valid"),
            ({"readings-partition-0": 4}, [], "contain '-partition-', which Pulsar keeps for partitions"),
            ({"readings": 0}, [], r"partition counts \{'readings': 0\} are not in 1..1024"),
            ({"readings": 1025}, [], r"partition counts \{'readings': 1025\} are not in 1..1024"),
            ({"readings": 4}, ["readings"], r"topics \['readings'\] are asked both partitioned and non-partitioned"),
        ],
    )
    def test_invalid_partitioned_topics_say_why(
        self, partitioned: dict[str, int], topics: list[str], reason: str
    ) -> None:
        data = ClientRequestData(namespace="client/default", topics=topics, partitioned_topics=partitioned)
        with pytest.raises(InvalidRequestError, match=reason):
            validate_request(3, "client", data)

    def test_the_largest_partition_count_is_accepted(self) -> None:
        data = ClientRequestData(namespace="client/default", partitioned_topics={"readings": 1024})
        request = validate_request(3, "client", data)
        assert request is not None
        assert request.partitioned_topics == (("readings", 1024),)


class TestRoles:
    def test_roles_come_from_the_relation_id_and_are_recognised(self) -> None:
        assert client_role(7) == "pulsar-k8s-client-7"
        assert relation_id_of("pulsar-k8s-client-7") == 7
        others = ("pulsar-k8s-admin", "client", "pulsar-k8s-client-", "pulsar-k8s-client-07", "x-pulsar-k8s-client-7")
        assert [relation_id_of(role) for role in others] == [None] * len(others)


# ---------------------------------------------------------------- ClientAccess: grants


class TestGrants:
    def test_a_client_gets_a_role_of_its_relation_with_its_permissions_only(
        self, provider: testing.Context, broker: BrokerState
    ) -> None:
        # Given a client application asking for its namespace and a topic on relation 7
        relation = client("client", 7, topics=["readings"])
        # When the leader serves it
        out = provider.run(provider.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        # Then the broker has its tenant, namespace and topic, and the relation's role may use them
        assert out.unit_status == testing.ActiveStatus()
        assert broker.tenants["client"] == {"adminRoles": [], "allowedClusters": ["pulsar"]}
        assert broker.roles("client/default") == {"pulsar-k8s-client-7": ["consume", "produce"]}
        assert "persistent://client/default/readings" in broker.topics
        assert broker.everything_granted_to("pulsar-k8s-client-7") == ["namespace client/default"]
        # And the client got URLs, namespace, role, and a token for that role in a secret granted to it
        data = published(out, 7)
        assert {k: v for k, v in data.items() if k != "secret-credentials"} == {
            "service-url": SERVICE_URL,
            "web-service-url": WEB_SERVICE_URL,
            "namespace": "client/default",
            "role": "pulsar-k8s-client-7",
        }
        assert ISSUER.role_of(token_of(out, 7)) == "pulsar-k8s-client-7"
        secret = next(s for s in out.secrets if s.id == data["secret-credentials"])
        assert secret.remote_grants == {7: {"client"}}

    def test_two_clients_never_share_a_role(self, provider: testing.Context, broker: BrokerState) -> None:
        first, second = client("alpha", 3), client("beta", 4)
        out = provider.run(provider.on.update_status(), testing.State(leader=True, relations={first, second}))
        assert published(out, 3)["role"] != published(out, 4)["role"]
        assert broker.everything_granted_to("pulsar-k8s-client-3") == ["namespace alpha/default"]
        assert broker.everything_granted_to("pulsar-k8s-client-4") == ["namespace beta/default"]

    def test_an_unchanged_grant_changes_nothing_on_the_broker(
        self, provider: testing.Context, broker: BrokerState
    ) -> None:
        # Given a client served once
        relation = client("client", 7)
        out = provider.run(provider.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        broker.calls.clear()
        # When the leader serves again with nothing changed
        provider.run(provider.on.update_status(), out)
        # Then it only read
        assert broker.writes() == []

    def test_a_new_namespace_moves_the_grant(self, provider: testing.Context, broker: BrokerState) -> None:
        # Given a client granted client/default that now asks for client/other
        broker.tenants["client"] = {"adminRoles": [], "allowedClusters": ["pulsar"]}
        broker.add_namespace("client/default")
        broker.roles("client/default")["pulsar-k8s-client-7"] = ["consume", "produce"]
        relation = client("client", 7, namespace="client/other")
        state = granted_state(relation, "pulsar-k8s-client-7")
        # When the leader serves it
        out = provider.run(provider.on.relation_changed(state.get_relation(7)), state)
        # Then the role holds the new namespace only
        assert broker.everything_granted_to("pulsar-k8s-client-7") == ["namespace client/other"]
        assert published(out, 7)["namespace"] == "client/other"

    def test_an_unreachable_broker_is_reported_for_a_retry(self, provider: testing.Context) -> None:
        ProviderCharm.broker_url = UNREACHABLE
        relation = client("client", 7)
        out = provider.run(provider.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        assert out.unit_status.name == "waiting"
        assert out.unit_status.message.startswith("reading client permissions failed: GET /admin/v2/tenants:")
        assert out.get_relation(7).local_app_data == {}


# ---------------------------------------------------------------- partitioned topics


class TestTopicChanges:
    def test_missing_topics_are_created_smaller_ones_grown_and_equal_ones_left(self) -> None:
        # Given a request for four topics, two of them existing with fewer or as many partitions
        asked = {"new": 4, "smaller": 8, "same": 2, "plain": 3}
        # When the changes are decided
        changes = partitioned_topic_changes(asked, {"smaller": 4, "same": 2, "other": 9}, {"plain", "unrelated"})
        # Then the missing one is created, the smaller one grown, the equal one left, the plain one refused
        assert changes == TopicChanges(
            create={"new": 4},
            grow={"smaller": 8},
            errors={"plain": "a non-partitioned topic of that name exists; it is left as it is"},
        )

    def test_a_shrink_is_refused_and_the_topic_keeps_its_count(self) -> None:
        changes = partitioned_topic_changes({"readings": 4}, {"readings": 8}, set())
        assert changes == TopicChanges(
            errors={"readings": "4 partitions asked but it has 8: Pulsar cannot reduce partitions; it keeps 8"}
        )

    def test_topics_as_asked_need_no_change(self) -> None:
        assert partitioned_topic_changes({"a": 1, "b": 16}, {"a": 1, "b": 16}, set()) == TopicChanges()

    def test_names_are_read_from_the_namespaces_full_names_only(self) -> None:
        listed = [
            "persistent://c/d/a",
            "persistent://c/d/b-partition-0",
            "persistent://c/other/x",
            "non-persistent://c/d/n",
        ]
        assert short_names("c/d", listed) == {"a", "b-partition-0"}


def _client_on_broker(broker: BrokerState, role: str = "pulsar-k8s-client-7") -> None:
    """The broker after the charm granted `role` the namespace client/default."""
    broker.tenants["client"] = {"adminRoles": [], "allowedClusters": ["pulsar"]}
    broker.add_namespace("client/default")
    broker.roles("client/default")[role] = ["consume", "produce"]


READINGS = "persistent://client/default/readings"
READINGS_PARTITIONS = "/admin/v2/persistent/client/default/readings/partitions"


class TestPartitionedTopics:
    def test_a_new_client_gets_its_partitioned_topic_and_sees_it_ready(
        self, provider: testing.Context, broker: BrokerState
    ) -> None:
        # Given a new client asking for a partitioned topic of 4 partitions
        relation = client("client", 7, partitioned_topics={"readings": 4})
        # When the leader serves it
        out = provider.run(provider.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        # Then the broker has the topic with 4 partitions, created with the count as JSON body
        assert out.unit_status == testing.ActiveStatus()
        assert broker.partitioned == {READINGS: 4}
        assert ("PUT", READINGS_PARTITIONS) in broker.writes()
        # And the grant says it exists with 4 partitions, with no topic error
        data = published(out, 7)
        assert data["partitioned-topics"] == {"readings": 4}
        assert sorted(data) == [
            "namespace", "partitioned-topics", "role", "secret-credentials", "service-url", "web-service-url"
        ]  # fmt: skip

    def test_more_partitions_asked_grow_the_topic(self, provider: testing.Context, broker: BrokerState) -> None:
        # Given a client whose topic has 4 partitions, now asking for 8
        _client_on_broker(broker)
        broker.partitioned[READINGS] = 4
        relation = client("client", 7, partitioned_topics={"readings": 8})
        state = granted_state(relation, "pulsar-k8s-client-7")
        # When the leader serves it
        out = provider.run(provider.on.relation_changed(state.get_relation(7)), state)
        # Then the topic grew to 8 partitions with one call, and the grant says so
        assert broker.partitioned == {READINGS: 8}
        assert broker.writes() == [("POST", READINGS_PARTITIONS)]
        assert published(out, 7)["partitioned-topics"] == {"readings": 8}
        assert "topic-errors" not in published(out, 7)

    def test_fewer_partitions_asked_change_nothing_and_say_why(
        self, provider: testing.Context, broker: BrokerState
    ) -> None:
        # Given a client whose topic has 8 partitions, now asking for 4
        _client_on_broker(broker)
        broker.partitioned[READINGS] = 8
        relation = client("client", 7, partitioned_topics={"readings": 4})
        state = granted_state(relation, "pulsar-k8s-client-7")
        # When the leader serves it
        out = provider.run(provider.on.relation_changed(state.get_relation(7)), state)
        # Then the broker was not asked anything, the topic keeps 8 partitions, and the grant says why
        assert broker.writes() == []
        assert broker.partitioned == {READINGS: 8}
        data = published(out, 7)
        assert data["partitioned-topics"] == {"readings": 8}
        assert data["topic-errors"] == {
            "readings": "4 partitions asked but it has 8: Pulsar cannot reduce partitions; it keeps 8"
        }
        assert data["namespace"] == "client/default"  # the rest of the grant stands
        assert out.unit_status == testing.ActiveStatus()

    def test_a_non_partitioned_topic_of_that_name_is_left_and_reported(
        self, provider: testing.Context, broker: BrokerState
    ) -> None:
        # Given a namespace holding a plain topic `readings`, and a client asking for it partitioned and another
        _client_on_broker(broker)
        broker.topics.add(READINGS)
        relation = client("client", 7, partitioned_topics={"readings": 4, "alerts": 2})
        state = granted_state(relation, "pulsar-k8s-client-7")
        # When the leader serves it
        out = provider.run(provider.on.relation_changed(state.get_relation(7)), state)
        # Then only the other topic was created; the plain topic is untouched and the grant says why
        assert broker.writes() == [("PUT", "/admin/v2/persistent/client/default/alerts/partitions")]
        assert broker.partitioned == {"persistent://client/default/alerts": 2}
        assert READINGS in broker.topics
        data = published(out, 7)
        assert data["partitioned-topics"] == {"alerts": 2}
        assert data["topic-errors"] == {"readings": "a non-partitioned topic of that name exists; it is left as it is"}

    def test_serving_again_unchanged_only_reads_the_topics_asked(
        self, provider: testing.Context, broker: BrokerState
    ) -> None:
        # Given a client served once, its partitioned topics created
        relation = client("client", 7, partitioned_topics={"readings": 4, "alerts": 2})
        out = provider.run(provider.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        assert broker.partitioned == {READINGS: 4, "persistent://client/default/alerts": 2}
        broker.calls.clear()
        # When the leader serves again with nothing changed
        again = provider.run(provider.on.update_status(), out)
        # Then it made no write, and read the namespace's partitioned topics and each asked one's count only
        assert broker.writes() == []
        topic_reads = [path for _, path in broker.calls if path.startswith("/admin/v2/persistent/")]
        assert topic_reads == [
            "/admin/v2/persistent/client/default/partitioned",
            "/admin/v2/persistent/client/default/alerts/partitions",
            READINGS_PARTITIONS,
        ]
        # And the grant is the same
        assert again.get_relation(7).local_app_data == out.get_relation(7).local_app_data

    def test_a_refusal_by_the_broker_is_that_topics_error(self, provider: testing.Context, broker: BrokerState) -> None:
        # Given a broker allowing 16 partitions per topic, and a client asking for 32 on one of two topics
        broker.max_partitions = 16
        relation = client("client", 7, partitioned_topics={"readings": 32, "alerts": 2})
        # When the leader serves it
        out = provider.run(provider.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        # Then the other topic was created, and the grant carries the broker's reason for this one
        assert broker.partitioned == {"persistent://client/default/alerts": 2}
        data = published(out, 7)
        assert data["partitioned-topics"] == {"alerts": 2}
        assert data["topic-errors"] == {
            "readings": f"creating it with 32 partitions failed: PUT {READINGS_PARTITIONS}: HTTP 412: "
            "Desired partitions 32 can't be greater than the maximum 16"
        }
        assert data["role"] == "pulsar-k8s-client-7"
        assert out.unit_status == testing.ActiveStatus()

    def test_a_broker_lost_while_creating_is_retried_and_grants_nothing_new(
        self, provider: testing.Context, broker: BrokerState, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given a broker that cannot be reached when the topic is created
        create = PulsarAdmin.create_partitioned_topic

        def unreachable(self: PulsarAdmin, namespace: str, topic: str, partitions: int) -> None:
            create(PulsarAdmin(SUPERUSER_TOKEN, UNREACHABLE), namespace, topic, partitions)

        monkeypatch.setattr(PulsarAdmin, "create_partitioned_topic", unreachable)
        relation = client("client", 7, partitioned_topics={"readings": 4})
        # When the leader serves the client
        out = provider.run(provider.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        # Then the failure shows for a retry, not as the client's topic error
        assert out.unit_status.name == "waiting"
        assert out.unit_status.message.startswith(f"serving client client failed: PUT {READINGS_PARTITIONS}: ")
        assert out.get_relation(7).local_app_data == {}


# ---------------------------------------------------------------- defect 2: names that collide


class TestReservedNames:
    def test_a_client_named_like_the_superuser_gets_no_superuser_token(
        self, provider: testing.Context, broker: BrokerState
    ) -> None:
        # Given a client application named like the charm's superuser role
        relation = client("pulsar-k8s-admin", 7)
        # When the leader serves it
        out = provider.run(provider.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        # Then it is refused with a reason, gets no secret, and the broker was not changed
        assert published(out, 7) == {
            "error": "namespace 'pulsar-k8s-admin/default': tenant 'pulsar-k8s-admin' is reserved "
            "(public, pulsar, pulsar-k8s*); deploy the client under another application name"
        }
        assert list(out.secrets) == []
        assert broker.writes() == []

    @pytest.mark.parametrize(("app", "namespace"), [("public", "public/default"), ("pulsar", "pulsar/system")])
    def test_a_client_named_like_a_shared_or_system_tenant_reaches_nothing(
        self, provider: testing.Context, broker: BrokerState, app: str, namespace: str
    ) -> None:
        # Given a client application named `public` or `pulsar` asking for a namespace there
        relation = client(app, 7, namespace=namespace)
        # When the leader serves it
        out = provider.run(provider.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        # Then it is refused, and nothing was granted on the shared or system namespaces
        assert f"tenant '{app}' is reserved" in published(out, 7)["error"]
        assert list(out.secrets) == []
        assert broker.roles(namespace) == {}
        assert broker.writes() == []

    def test_a_request_that_does_not_decode_is_refused_with_the_reason(
        self, provider: testing.Context, broker: BrokerState
    ) -> None:
        relation = testing.Relation("pulsar", id=7, remote_app_name="client", remote_app_data={"namespace": "c/d"})
        out = provider.run(provider.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        assert published(out, 7)["error"].startswith("the request does not decode (each value is JSON since LIBPATCH 2")
        assert broker.writes() == []

    def test_a_request_turning_invalid_withdraws_the_earlier_grant(
        self, provider: testing.Context, broker: BrokerState
    ) -> None:
        # Given a client granted client/default, that now asks for another tenant's namespace
        broker.tenants["client"] = {"adminRoles": [], "allowedClusters": ["pulsar"]}
        broker.add_namespace("client/default")
        broker.roles("client/default")["pulsar-k8s-client-7"] = ["consume", "produce"]
        relation = client("client", 7, namespace="public/default")
        # When the leader serves it
        state = granted_state(relation, "pulsar-k8s-client-7")
        out = provider.run(provider.on.relation_changed(state.get_relation(7)), state)
        # Then the refusal replaces the grant: no URLs, no secret, no permission left
        assert list(published(out, 7)) == ["error"]
        assert list(out.secrets) == []
        assert broker.everything_granted_to("pulsar-k8s-client-7") == []


# ---------------------------------------------------------------- defect 3: revoking revokes


def _granted_on_broker(broker: BrokerState, role: str) -> None:
    """The broker after the charm granted `role` client/default (and an operator added more)."""
    broker.tenants["client"] = {"adminRoles": [role], "allowedClusters": ["pulsar"]}
    broker.add_namespace("client/default")
    broker.topics.add("persistent://client/default/readings")
    broker.roles("client/default")[role] = ["consume", "produce"]
    broker.roles("public/default")[role] = ["consume"]
    broker.auth("public/default")["destination_auth"]["persistent://public/default/shared"] = {role: ["consume"]}


class TestRevocation:
    def test_a_broken_relation_leaves_its_role_no_permission_and_no_secret(
        self, provider: testing.Context, broker: BrokerState
    ) -> None:
        # Given a client whose role holds permissions on the broker
        relation = client("client", 7)
        _granted_on_broker(broker, "pulsar-k8s-client-7")
        # When its relation is broken
        state = granted_state(relation, "pulsar-k8s-client-7")
        out = provider.run(provider.on.relation_broken(state.get_relation(7)), state)
        # Then the role holds nothing anywhere, and the token's secret is gone
        assert out.unit_status == testing.ActiveStatus()
        assert broker.everything_granted_to("pulsar-k8s-client-7") == []
        assert list(out.secrets) == []
        # And the client's data stays
        assert "client/default" in broker.namespaces
        assert "persistent://client/default/readings" in broker.topics

    def test_a_revocation_that_failed_is_completed_by_the_next_serve(
        self, provider: testing.Context, broker: BrokerState
    ) -> None:
        # Given a client whose relation broke while the broker could not be reached
        relation = client("client", 7)
        _granted_on_broker(broker, "pulsar-k8s-client-7")
        broker_url, ProviderCharm.broker_url = ProviderCharm.broker_url, UNREACHABLE
        state = granted_state(relation, "pulsar-k8s-client-7")
        out = provider.run(provider.on.relation_broken(state.get_relation(7)), state)
        assert out.unit_status.message.startswith("revoking pulsar-k8s-client-7 failed: ")
        assert list(out.secrets) == []  # the secret goes whatever the broker says
        assert broker.everything_granted_to("pulsar-k8s-client-7") != []
        # When the broker is back and the leader reconciles
        ProviderCharm.broker_url = broker_url
        out = provider.run(provider.on.update_status(), testing.State(leader=True))
        # Then the sweep completed the revocation
        assert out.unit_status == testing.ActiveStatus()
        assert broker.everything_granted_to("pulsar-k8s-client-7") == []

    def test_the_sweep_touches_only_client_roles_whose_relation_is_gone(
        self, provider: testing.Context, broker: BrokerState
    ) -> None:
        # Given a live client on relation 7, a departed one on relation 5, and an operator's role
        _granted_on_broker(broker, "pulsar-k8s-client-5")
        broker.roles("client/default")["pulsar-k8s-client-7"] = ["consume", "produce"]
        broker.roles("public/default")["alice"] = ["produce"]
        live = client("client", 7)
        # When the leader serves
        provider.run(provider.on.update_status(), granted_state(live, "pulsar-k8s-client-7"))
        # Then the departed role lost everything; the live client and the operator's role kept theirs
        assert broker.everything_granted_to("pulsar-k8s-client-5") == []
        assert broker.everything_granted_to("pulsar-k8s-client-7") == ["namespace client/default"]
        assert broker.everything_granted_to("alice") == ["namespace public/default"]


# ---------------------------------------------------------------- the library: the requirer side


@pytest.fixture
def requirer() -> testing.Context:
    return testing.Context(RequirerCharm, meta=REQUIRER_META, app_name="client")


class TestRequirer:
    def test_the_request_is_written_as_json_values(self, requirer: testing.Context) -> None:
        relation = testing.Relation("pulsar", remote_app_name="pulsar-k8s")
        out = requirer.run(requirer.on.relation_created(relation), testing.State(leader=True, relations={relation}))
        assert out.get_relation(relation.id).local_app_data == {
            "namespace": '"client/default"',
            "permissions": '["consume", "produce"]',
            "topics": '["readings"]',
        }

    def test_a_grant_gives_the_connection_with_its_role(self, requirer: testing.Context) -> None:
        token = ISSUER.broker_token("pulsar-k8s-client-7")
        secret = testing.Secret({"token": token}, owner=None)
        data = {
            "service-url": SERVICE_URL,
            "web-service-url": WEB_SERVICE_URL,
            "namespace": "client/default",
            "role": "pulsar-k8s-client-7",
            "secret-credentials": secret.id,
        }
        relation = testing.Relation(
            "pulsar", remote_app_name="pulsar-k8s", remote_app_data={k: json.dumps(v) for k, v in data.items()}
        )
        state = testing.State(leader=True, relations={relation}, secrets={secret})
        out = requirer.run(requirer.on.relation_changed(relation), state)
        assert out.unit_status == testing.ActiveStatus("granted client/default as pulsar-k8s-client-7")

    def test_a_refusal_is_surfaced(self, requirer: testing.Context) -> None:
        relation = testing.Relation(
            "pulsar", remote_app_name="pulsar-k8s", remote_app_data={"error": json.dumps("tenant 'x' is reserved")}
        )
        out = requirer.run(requirer.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        assert out.unit_status == testing.BlockedStatus("refused: tenant 'x' is reserved")

    def test_provider_data_that_does_not_decode_is_an_error_not_a_traceback(self, requirer: testing.Context) -> None:
        relation = testing.Relation("pulsar", remote_app_name="pulsar-k8s", remote_app_data={"namespace": "x/y"})
        out = requirer.run(requirer.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        assert out.unit_status.name == "blocked"
        assert out.unit_status.message.startswith("refused: pulsar-k8s's data does not decode: ")


def _asking(requirer: testing.Context, state: testing.State, call: Any) -> tuple[Any, testing.State]:
    """Run `call(charm.pulsar)` inside an event of the requirer charm, as an action handler would."""
    with requirer(requirer.on.update_status(), state) as manager:
        charm = manager.charm
        assert isinstance(charm, RequirerCharm)
        try:
            result = call(charm.pulsar)
        except (InvalidRequestError, RequestNotWritableError) as error:
            result = error
        return result, manager.run()


ASKED = {"namespace": '"client/default"', "permissions": '["consume", "produce"]', "topics": '["readings"]'}


class TestRequirerPartitionedTopics:
    def test_the_leader_writes_partitioned_topics_as_a_json_object(self, requirer: testing.Context) -> None:
        # Given a client leader related to pulsar-k8s, its request written
        relation = testing.Relation("pulsar", remote_app_name="pulsar-k8s", local_app_data=ASKED)
        # When it asks for a partitioned topic of 16 partitions
        _, out = _asking(
            requirer,
            testing.State(leader=True, relations={relation}),
            lambda pulsar: pulsar.request_partitioned_topics({"sensor-readings": 16}),
        )
        # Then the request carries it as a JSON object, the rest unchanged
        assert out.get_relation(relation.id).local_app_data == {
            **ASKED,
            "partitioned-topics": '{"sensor-readings": 16}',
        }

    def test_asking_again_adds_and_updates_and_setting_replaces(self, requirer: testing.Context) -> None:
        # Given a request that already asks for two partitioned topics
        asked = {**ASKED, "partitioned-topics": '{"alerts": 2, "sensor-readings": 4}'}
        relation = testing.Relation("pulsar", remote_app_name="pulsar-k8s", local_app_data=asked)
        state = testing.State(leader=True, relations={relation})
        # When the leader asks for more partitions on one and for a new one
        _, out = _asking(requirer, state, lambda p: p.request_partitioned_topics({"sensor-readings": 8, "x": 1}))
        # Then the earlier topic is kept, the count updated, the new one added
        requested, _ = _asking(requirer, out, lambda p: p.requested_partitioned_topics())
        assert requested == {"alerts": 2, "sensor-readings": 8, "x": 1}
        # And setting replaces the whole mapping; setting none removes the key
        _, out = _asking(requirer, out, lambda p: p.set_partitioned_topics({"x": 3}))
        assert out.get_relation(relation.id).local_app_data["partitioned-topics"] == '{"x": 3}'
        _, out = _asking(requirer, out, lambda p: p.set_partitioned_topics({}))
        assert out.get_relation(relation.id).local_app_data == ASKED

    def test_publishing_the_request_again_keeps_the_partitioned_topics(self, requirer: testing.Context) -> None:
        # Given a request with a partitioned topic asked earlier (the charm's constructor does not know it)
        asked = {**ASKED, "partitioned-topics": '{"sensor-readings": 16}'}
        relation = testing.Relation("pulsar", remote_app_name="pulsar-k8s", local_app_data=asked)
        # When the request is published again (relation-changed, a new leader)
        out = requirer.run(requirer.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        # Then the partitioned topic is still asked
        assert out.get_relation(relation.id).local_app_data == asked

    @pytest.mark.parametrize(
        ("topics", "reason"),
        [
            ({"sensor-readings": 0}, r"partition counts \{'sensor-readings': 0\} are not in 1..1024"),
            ({"a/b": 2}, r"partitioned topic names \['a/b'\] are not valid"),
            ({"readings": 2}, r"topics \['readings'\] are asked both partitioned and non-partitioned"),
            ({"sensor-readings": "16"}, "partitioned topics: expected an object of int values"),
        ],
    )
    def test_an_invalid_request_is_refused_at_once_and_nothing_is_written(
        self, requirer: testing.Context, topics: dict[str, Any], reason: str
    ) -> None:
        relation = testing.Relation("pulsar", remote_app_name="pulsar-k8s", local_app_data=ASKED)
        error, out = _asking(
            requirer, testing.State(leader=True, relations={relation}), lambda p: p.request_partitioned_topics(topics)
        )
        assert isinstance(error, InvalidRequestError)
        assert re.search(reason, str(error))
        assert out.get_relation(relation.id).local_app_data == ASKED

    @pytest.mark.parametrize(("leader", "related"), [(False, True), (True, False)])
    def test_only_a_related_leader_can_ask(self, requirer: testing.Context, leader: bool, related: bool) -> None:
        relations = {testing.Relation("pulsar", remote_app_name="pulsar-k8s")} if related else set()
        error, _ = _asking(
            requirer,
            testing.State(leader=leader, relations=relations),
            lambda p: p.request_partitioned_topics({"sensor-readings": 16}),
        )
        assert isinstance(error, RequestNotWritableError)

    def test_any_unit_reads_the_ready_topics_and_the_errors(self, requirer: testing.Context) -> None:
        # Given a grant with one topic ready and one shrink refused
        grant = {
            "namespace": '"client/default"',
            "partitioned-topics": '{"alerts": 8, "sensor-readings": 16}',
            "topic-errors": json.dumps({"alerts": "4 partitions asked but it has 8"}),
        }
        relation = testing.Relation("pulsar", remote_app_name="pulsar-k8s", remote_app_data=grant)
        # When a unit that is not the leader reads them
        (ready, errors), _ = _asking(
            requirer,
            testing.State(leader=False, relations={relation}),
            lambda p: (p.partitioned_topics(), p.topic_errors()),
        )
        # Then it sees both
        assert ready == {"alerts": 8, "sensor-readings": 16}
        assert errors == {"alerts": "4 partitions asked but it has 8"}

    @pytest.mark.parametrize(
        "grant",
        [{}, {"error": '"refused"', "partitioned-topics": '{"a": 1}'}, {"partitioned-topics": '{"a": "1"}'}],
        ids=["not-granted", "refused", "does-not-decode"],
    )
    def test_nothing_is_ready_without_a_readable_grant(self, requirer: testing.Context, grant: dict[str, str]) -> None:
        relation = testing.Relation("pulsar", remote_app_name="pulsar-k8s", remote_app_data=grant)
        (ready, errors), _ = _asking(
            requirer,
            testing.State(leader=True, relations={relation}),
            lambda p: (p.partitioned_topics(), p.topic_errors()),
        )
        assert (ready, errors) == ({}, {})


def test_a_partitioned_topic_asked_by_the_requirer_is_created_and_seen_ready(
    requirer: testing.Context, provider: testing.Context, broker: BrokerState
) -> None:
    # Given a client leader that asks for a partitioned topic
    relation = testing.Relation("pulsar", id=7, remote_app_name="pulsar-k8s")
    _, asked = _asking(
        requirer,
        testing.State(leader=True, relations={relation}),
        lambda p: (p.publish_request(), p.request_partitioned_topics({"sensor-readings": 16})),
    )
    request = asked.get_relation(7).local_app_data
    # When pulsar-k8s's leader serves that request
    served = testing.Relation("pulsar", id=7, remote_app_name="client", remote_app_data=request)
    out = provider.run(provider.on.relation_changed(served), testing.State(leader=True, relations={served}))
    # Then the topic exists with 16 partitions, and the client reads it as ready
    assert broker.partitioned == {"persistent://client/default/sensor-readings": 16}
    grant = testing.Relation(
        "pulsar", id=7, remote_app_name="pulsar-k8s", remote_app_data=dict(out.get_relation(7).local_app_data)
    )
    (ready, errors), _ = _asking(
        requirer, testing.State(leader=False, relations={grant}), lambda p: (p.partitioned_topics(), p.topic_errors())
    )
    assert (ready, errors) == ({"sensor-readings": 16}, {})


# ---------------------------------------------------------------- the cluster a grant is made on

CLUSTER = {
    "pulsar-version": "4.0.8",
    "brokers": 3,
    "bookies": 3,
    "ensemble-size": 3,
    "write-quorum": 3,
    "ack-quorum": 2,
}
# One of the three bookies is gone: two serve, and the automatic ensemble shrinks to two.
ONE_BOOKIE_LESS = {**CLUSTER, "bookies": 2, "ensemble-size": 2, "write-quorum": 2}


@pytest.fixture
def facts(monkeypatch: pytest.MonkeyPatch) -> dict[str, int | str]:
    """The facts the provider knows now; a test changes them in place."""
    known: dict[str, int | str] = dict(CLUSTER)
    monkeypatch.setattr(ProviderCharm, "cluster", known)
    return known


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every save of a databag by the library, as the fields it saved."""
    saved: list[dict[str, Any]] = []
    erase_unset = pulsar_library._erase_unset

    def recording(relation: ops.Relation, app: ops.Application, data: Any) -> None:
        saved.append(vars(data).copy())
        erase_unset(relation, app, data)

    monkeypatch.setattr(pulsar_library, "_erase_unset", recording)
    return saved


class TestClusterGrant:
    def test_a_grant_says_which_cluster_it_was_made_on(
        self, provider: testing.Context, broker: BrokerState, facts: dict[str, int | str]
    ) -> None:
        # Given a client asking for its namespace, on a cluster of 3 brokers and 3 bookies
        relation = client("client", 7)
        # When the leader serves it
        out = provider.run(provider.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        # Then the grant carries the cluster as a JSON object, beside the connection
        assert out.unit_status == testing.ActiveStatus()
        databag = out.get_relation(7).local_app_data
        assert json.loads(databag["cluster"]) == CLUSTER
        assert {"service-url", "namespace", "role", "secret-credentials"} <= set(databag)

    def test_the_cluster_follows_a_bookie_that_went_away_and_is_not_rewritten_unchanged(
        self,
        provider: testing.Context,
        broker: BrokerState,
        facts: dict[str, int | str],
        writes: list[dict[str, Any]],
    ) -> None:
        # Given a client granted on three bookies
        relation = client("client", 7)
        out = provider.run(provider.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        before = published(out, 7)
        # When a bookie goes away and the leader serves again
        facts.update(ONE_BOOKIE_LESS)
        writes.clear()
        out = provider.run(provider.on.update_status(), out)
        # Then the grant says two bookies and the smaller ensemble, the rest of it unchanged
        after = published(out, 7)
        assert after["cluster"] == ONE_BOOKIE_LESS
        assert {k: v for k, v in after.items() if k != "cluster"} == {k: v for k, v in before.items() if k != "cluster"}
        assert len(writes) == 1
        # When the leader serves again with nothing changed
        writes.clear()
        out = provider.run(provider.on.update_status(), out)
        # Then nothing is written
        assert writes == []
        assert published(out, 7)["cluster"] == ONE_BOOKIE_LESS

    def test_the_cluster_is_kept_current_while_no_broker_can_be_reached(
        self, provider: testing.Context, facts: dict[str, int | str]
    ) -> None:
        # Given a client granted earlier on three brokers, and no broker answering now
        relation = client("client", 7)
        state = granted_state(relation, "pulsar-k8s-client-7")
        granted = state.get_relation(7)
        databag = {**granted.local_app_data, "cluster": json.dumps(CLUSTER)}
        state = dataclasses.replace(state, relations={dataclasses.replace(granted, local_app_data=databag)})
        # When the leader finds no broker serving
        facts.update(brokers=0)
        out = provider.run(provider.on.update_status(), state)
        # Then serving failed, but the grant says no broker serves, and the rest of it stands
        assert out.unit_status.name == "waiting"
        data = published(out, 7)
        assert data["cluster"] == {**CLUSTER, "brokers": 0}
        assert data["role"] == "pulsar-k8s-client-7"

    def test_a_fact_not_known_now_keeps_its_published_value(
        self, provider: testing.Context, broker: BrokerState, facts: dict[str, int | str]
    ) -> None:
        # Given a client granted on a cluster whose version was read
        relation = client("client", 7)
        out = provider.run(provider.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        # When the leader cannot read the version or the quorum (its image, an invalid config)
        # while a bookie went away
        for key in ("pulsar-version", "ensemble-size", "write-quorum", "ack-quorum"):
            del facts[key]
        facts["bookies"] = 2
        out = provider.run(provider.on.update_status(), out)
        # Then the grant keeps the version and the quorum it said, with the bookies counted now
        assert published(out, 7)["cluster"] == {**CLUSTER, "bookies": 2}

    def test_a_refusal_says_nothing_of_the_cluster(
        self, provider: testing.Context, broker: BrokerState, facts: dict[str, int | str]
    ) -> None:
        relation = client("public")
        out = provider.run(provider.on.relation_changed(relation), testing.State(leader=True, relations={relation}))
        assert set(published(out, 7)) == {"error"}

    @pytest.mark.parametrize(
        "cluster",
        [
            ["brokers", 3],
            {"pulsar-version": 4},
            {"brokers": "3"},
            {"bookies": True},
            {"ack-quorum": -1},
            {"later-key": [1]},
        ],
        ids=["not-an-object", "version-not-a-string", "count-a-string", "count-a-bool", "count-negative", "nested"],
    )
    def test_a_cluster_of_the_wrong_types_does_not_decode(self, cluster: Any) -> None:
        with pytest.raises(ValueError, match=r"^cluster: "):
            ClientGrantData(cluster=cluster)

    def test_a_key_of_a_later_patch_is_read_on(self) -> None:
        data = ClientGrantData(cluster={**CLUSTER, "later-key": "x"})
        assert data.cluster == {**CLUSTER, "later-key": "x"}


class TestRequirerClusterInfo:
    def test_any_unit_reads_the_cluster_it_talks_to(self, requirer: testing.Context) -> None:
        # Given a grant carrying the cluster
        grant = {"namespace": '"client/default"', "cluster": json.dumps(CLUSTER)}
        relation = testing.Relation("pulsar", remote_app_name="pulsar-k8s", remote_app_data=grant)
        # When a unit that is not the leader reads it
        info, _ = _asking(requirer, testing.State(leader=False, relations={relation}), lambda p: p.cluster_info())
        # Then it gets every fact, typed
        assert info == CLUSTER

    @pytest.mark.parametrize(
        "grant",
        [
            {},
            {"namespace": '"client/default"'},
            {"error": '"refused"', "cluster": json.dumps(CLUSTER)},
            {"cluster": '{"brokers": "3"}'},
        ],
        ids=["not-granted", "granted-by-an-older-provider", "refused", "does-not-decode"],
    )
    def test_nothing_is_known_without_a_readable_grant(self, requirer: testing.Context, grant: dict[str, str]) -> None:
        relation = testing.Relation("pulsar", remote_app_name="pulsar-k8s", remote_app_data=grant)
        info, _ = _asking(requirer, testing.State(leader=True, relations={relation}), lambda p: p.cluster_info())
        assert info == {}

    def test_nothing_is_known_without_the_relation(self, requirer: testing.Context) -> None:
        info, _ = _asking(requirer, testing.State(leader=True), lambda p: p.cluster_info())
        assert info == {}


def test_the_cluster_granted_by_the_provider_is_read_by_the_requirer(
    requirer: testing.Context, provider: testing.Context, broker: BrokerState, facts: dict[str, int | str]
) -> None:
    # Given pulsar-k8s's leader serving a client's request
    relation = testing.Relation("pulsar", id=7, remote_app_name="pulsar-k8s")
    _, asked = _asking(requirer, testing.State(leader=True, relations={relation}), lambda p: p.publish_request())
    served = testing.Relation(
        "pulsar", id=7, remote_app_name="client", remote_app_data=asked.get_relation(7).local_app_data
    )
    out = provider.run(provider.on.relation_changed(served), testing.State(leader=True, relations={served}))
    # When the client reads the grant
    grant = testing.Relation(
        "pulsar", id=7, remote_app_name="pulsar-k8s", remote_app_data=dict(out.get_relation(7).local_app_data)
    )
    info, _ = _asking(requirer, testing.State(leader=False, relations={grant}), lambda p: p.cluster_info())
    # Then it knows the cluster it talks to
    assert info == CLUSTER


# ---------------------------------------------------------------- ClientAccess: token expiry


class TestTokenExpiry:
    @pytest.fixture(autouse=True)
    def clock(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(ProviderCharm, "now", 1_800_000_000.0)

    def test_a_client_token_expires_after_the_lifetime(self, provider: testing.Context, broker: BrokerState) -> None:
        # When the leader grants a client
        out = provider.run(provider.on.update_status(), testing.State(leader=True, relations={client("client", 7)}))

        # Then its token carries an expiry one lifetime away
        claims = jwt_claims(token_of(out, 7))
        now = int(ProviderCharm.now)
        assert claims == {
            "sub": "pulsar-k8s-client-7",
            "iss": auth.ISSUER,
            "aud": "pulsar-k8s",
            "iat": now - auth.CLOCK_SKEW,
            "nbf": now - auth.CLOCK_SKEW,
            "exp": now + TOKEN_LIFETIME,
        }

    def test_the_token_is_kept_until_a_third_of_its_lifetime_is_left(
        self, provider: testing.Context, broker: BrokerState
    ) -> None:
        # Given a client granted a token
        out = provider.run(provider.on.update_status(), testing.State(leader=True, relations={client("client", 7)}))
        first = token_of(out, 7)

        # When the leader reconciles later, with more than a third of the lifetime left
        ProviderCharm.now += TOKEN_LIFETIME * 0.6
        kept = provider.run(provider.on.update_status(), out)

        # Then the client keeps its token: the secret is not rewritten
        assert token_of(kept, 7) == first
        secret = next(s for s in kept.secrets if s.label == "pulsar-client-7")
        assert secret.latest_content == secret.tracked_content

        # When less than a third is left
        ProviderCharm.now += TOKEN_LIFETIME * 0.1
        renewed = provider.run(provider.on.update_status(), kept)

        # Then the same secret holds a new token, expiring a lifetime from now
        token = token_of(renewed, 7)
        assert token != first
        assert jwt_claims(token)["exp"] == int(ProviderCharm.now) + TOKEN_LIFETIME
        assert {s.id for s in renewed.secrets} == {s.id for s in kept.secrets}

    def test_a_token_from_before_expiry_was_configured_is_replaced(
        self, provider: testing.Context, broker: BrokerState
    ) -> None:
        # Given a client granted a token that never expires (an earlier revision of the charm)
        relation = client("client", 7)
        state = granted_state(relation, "pulsar-k8s-client-7")

        # When the leader reconciles
        out = provider.run(provider.on.update_status(), state)

        # Then the client gets a token that expires
        assert jwt_claims(token_of(out, 7))["exp"] == int(ProviderCharm.now) + TOKEN_LIFETIME


def jwt_claims(token: str) -> dict[str, Any]:
    """A token's claims, its signature checked with the cluster's key (not its expiry)."""
    claims = ISSUER.claims(token)
    assert claims is not None
    return claims
