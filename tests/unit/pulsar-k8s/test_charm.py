"""pulsar-k8s: each gate of the bring-up, in order, and what the charm leaves behind."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers.pulsar_k8s_builders import (
    FQDN0,
    FQDN1,
    INIT,
    KEY_ID,
    KEY_PEM,
    KEY_SINCE,
    METADATA_SERVICE_URI,
    SIGNING_KEYS,
    ZOOKEEPER_CONNECT,
    Probes,
    Unit,
    bookie_data,
    credential_secrets,
    decoded,
    encoded,
    fqdn,
    initialized_app_data,
    ready_bookies,
    record_admin_calls,
    signing_key_secret,
    workload_commands,
)
from ops import pebble, testing

from pulsar_k8s.literals import Status
from pulsar_k8s.managers import auth
from pulsar_k8s.managers.clients import client_role

ISSUER = auth.TokenIssuer(auth.SigningKey(KEY_ID, KEY_PEM, KEY_SINCE), "pulsar-k8s")


def test_invalid_config_blocks_naming_the_option_and_leaves_the_workload(
    ctx: testing.Context, unit: Unit, probes: Probes
) -> None:
    # Given a unit whose services are running from an earlier plan
    running = pebble.Layer({"services": {"broker": {"override": "replace", "command": "/pulsar/bin/pulsar broker"}}})
    state = unit.state(config={"zookeeper-heap": "huge"}, layers={"pulsar": running})

    # When the user sets an invalid heap size
    out = ctx.run(ctx.on.config_changed(), state)

    # Then the unit is blocked naming the option, and the plan is what it was
    assert out.unit_status == Status.INVALID_CONFIG(
        error="invalid config zookeeper-heap: 'huge' (a size such as 512m or 2g)"
    )
    assert out.get_container("pulsar").plan.to_dict() == running.to_dict()


def test_the_first_ensemble_waits_for_every_planned_unit(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    # Given a leader deployed with -n 3, alone so far
    out = ctx.run(ctx.on.config_changed(), unit.state(planned_units=3))

    # Then it publishes no ensemble, starts nothing, and says how many have joined
    assert out.unit_status == Status.WAITING_FOR_UNITS(joined=1, planned=3)
    assert "zk-members" not in out.get_relations("cluster")[0].local_app_data
    assert out.get_container("pulsar").plan.services == {}


def test_a_single_unit_starts_zookeeper_and_creates_the_signing_key(
    ctx: testing.Context, unit: Unit, probes: Probes
) -> None:
    # When the only unit, the leader, gets Pebble
    out = ctx.run(ctx.on.pebble_ready(unit.container()), unit.state())

    # Then it publishes itself as the ensemble and renders zookeeper.conf and myid
    peer = out.get_relations("cluster")[0]
    assert json.loads(peer.local_app_data["zk-members"]) == [{"id": 1, "host": FQDN0}]
    assert decoded(peer.local_unit_data)["host"] == FQDN0
    conf = (unit.conf / "zookeeper.conf").read_text()
    assert f"server.1={FQDN0}:2888:3888\n" in conf
    assert "dataDir=/var/lib/pulsar/zookeeper/data\n" in conf
    assert "admin.enableServer=false\n" in conf
    assert (unit.zookeeper / "data" / "myid").read_text() == "1\n"
    # And Pebble runs ZooKeeper only; the broker waits
    plan = out.get_container("pulsar").plan
    assert set(plan.services) == {"zookeeper"}
    assert plan.services["zookeeper"].command == "/pulsar/bin/pulsar zookeeper"
    assert plan.services["zookeeper"].environment["PULSAR_MEM"] == "-Xms256m -Xmx256m"
    # And its readiness check asks ZooKeeper whether it serves, every second
    check = plan.checks["zookeeper-ready"]
    assert check.exec is not None
    assert "printf srvr" in check.exec["command"]
    assert "localhost/2181" in check.exec["command"]
    assert (check.level, check.period, check.threshold) == (pebble.CheckLevel.READY, "1s", 1)
    # And the signing key lives in a Juju secret named in peer data
    secret = next(s for s in out.secrets if s.label == "token-signing-key")
    assert decoded(peer.local_app_data)["signing-key-secret"] == secret.id
    assert out.unit_status == Status.ZK_QUORUM(ready=0, total=1)
    # And it is made once: the next events keep it
    again = ctx.run(ctx.on.update_status(), ctx.run(ctx.on.update_status(), out))
    kept = next(s for s in again.secrets if s.label == "token-signing-key")
    assert kept.latest_content == secret.latest_content


def test_the_leader_creates_the_cluster_credentials_once(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    # Given a new cluster: no credentials yet
    state = unit.state(credentials=False)

    # When the leader reconciles
    out = ctx.run(ctx.on.pebble_ready(unit.container()), state)

    # Then it keeps generated ZooKeeper and bookie passwords in two secrets named in peer data
    app_data = decoded(out.get_relations("cluster")[0].local_app_data)
    zookeeper = next(s for s in out.secrets if s.label == "zookeeper-credentials")
    bookies = next(s for s in out.secrets if s.label == "bookie-credentials")
    assert app_data["zookeeper-credentials-secret"] == zookeeper.id
    assert app_data["bookie-credentials-secret"] == bookies.id
    assert set(zookeeper.tracked_content) == {"quorum-password", "pulsar-password"}
    assert bookies.tracked_content["zookeeper-username"] == "bookie"
    assert bookies.tracked_content["bookkeeper-username"] == "bookkeeper"
    passwords = [*zookeeper.tracked_content.values(), bookies.tracked_content["zookeeper-password"]]
    assert len(set(passwords)) == 3
    assert all(len(p) >= 32 for p in passwords)
    # And the next event keeps them
    again = ctx.run(ctx.on.update_status(), out)
    assert {s.id for s in again.secrets} == {s.id for s in out.secrets}


def test_a_unit_waits_for_the_credentials_before_starting_zookeeper(
    ctx: testing.Context, unit: Unit, probes: Probes
) -> None:
    # Given a non-leader in the ensemble, before the leader made the credentials
    app_data = {"zk-members": [{"id": 1, "host": FQDN0}]}

    # When it reconciles
    out = ctx.run(ctx.on.update_status(), unit.state(leader=False, app_data=app_data, credentials=False))

    # Then it waits, and runs nothing
    assert out.unit_status == Status.NO_CREDENTIALS()
    assert out.get_container("pulsar").plan.services == {}


def test_zookeeper_refuses_unauthenticated_sessions_and_peers(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    # Given ZooKeeper's storage as a unit that ran as root before left it
    for directory in ("data", "txlog"):
        (unit.zookeeper / directory).mkdir(parents=True, exist_ok=True)

    # When the unit starts ZooKeeper
    out = ctx.run(ctx.on.pebble_ready(unit.container()), unit.state())

    # Then zookeeper.conf enforces SASL for clients and for quorum peers, both ways
    conf = (unit.conf / "zookeeper.conf").read_text()
    for line in (
        "authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
        "enforce.auth.enabled=true",
        "enforce.auth.schemes=sasl",
        "quorum.auth.enableSasl=true",
        "quorum.auth.learnerRequireSasl=true",
        "quorum.auth.serverRequireSasl=true",
    ):
        assert f"{line}\n" in conf
    # And the passwords are in a 0600 JAAS file: the users ZooKeeper accepts, and its logins
    jaas = unit.conf / "jaas.conf"
    assert jaas.stat().st_mode & 0o777 == 0o600
    text = jaas.read_text()
    assert 'user_pulsar="pulsar-pw"\n    user_bookie="bookie-zk-pw";' in text
    assert 'user_zookeeper="quorum-pw";' in text
    assert 'username="zookeeper"\n    password="quorum-pw";' in text
    assert 'username="pulsar"\n    password="pulsar-pw";' in text
    assert 'username="bookkeeper"\n    password="bookkeeper-pw";' in text
    # And ZooKeeper runs as the image's user, given the JAAS file by path: no password in the plan
    service = out.get_container("pulsar").plan.services["zookeeper"]
    assert (service.user_id, service.group) == (10000, "root")
    assert (
        service.environment["PULSAR_EXTRA_OPTS"]
        == "-Dpulsar.allocator.exit_on_oom=true -Dio.netty.recycler.maxCapacityPerThread=4096 "
        "-Djava.security.auth.login.config=/pulsar/conf/jaas.conf -Dzookeeper.fips-mode=false"
    )
    assert "-pw" not in str(out.get_container("pulsar").plan.to_dict())
    # And the image's user is given ZooKeeper's storage
    chowns = [list(e.command) for e in ctx.exec_history["pulsar"] if e.command[0] == "chown"]
    assert (
        chowns
        == [
            ["chown", "-R", "10000:0", "/var/lib/pulsar/zookeeper/data"],
            ["chown", "-R", "10000:0", "/var/lib/pulsar/zookeeper/txlog"],
        ]
        or chowns == []
    )  # made by the charm (owned from the start) or found owned by root


def test_a_unit_outside_the_ensemble_waits_to_join(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    # Given a non-leader that the ensemble does not list yet
    state = unit.state(leader=False, app_data={"zk-members": [{"id": 2, "host": FQDN1}]})

    # When config changes
    out = ctx.run(ctx.on.config_changed(), state)

    # Then it starts nothing
    assert out.unit_status == Status.NOT_A_MEMBER()
    assert out.get_container("pulsar").plan.services == {}


def test_the_leader_initializes_the_cluster_once_zookeeper_serves(
    ctx: testing.Context, unit: Unit, probes: Probes
) -> None:
    # Given ZooKeeper serving on the leader, and bookies related
    probes.zookeeper_mode = "standalone"
    secret = signing_key_secret()
    app_data = {"zk-members": [{"id": 1, "host": FQDN0}], "signing-key-secret": secret.id}
    bookies = ready_bookies(3, 0)
    state = unit.state(
        app_data=app_data, secrets=(secret,), relations=(bookies,), execs=frozenset({testing.Exec(INIT)})
    )

    # When its readiness check recovers
    out = ctx.run(ctx.on.update_status(), state)

    # Then it ran initialize-cluster-metadata with the cluster's URLs, through Pebble
    command = workload_commands(ctx)[0]
    assert command == [
        *INIT, "--cluster", "pulsar",
        "--metadata-store", f"zk:{ZOOKEEPER_CONNECT}", "--configuration-metadata-store", f"zk:{ZOOKEEPER_CONNECT}",
        "--web-service-url", f"http://{FQDN0}:8080", "--broker-service-url", f"pulsar://{FQDN0}:6650",
    ]  # fmt: skip
    # And recorded it, and told the bookies where the metadata lives
    assert decoded(out.get_relations("cluster")[0].local_app_data)["initialized"] == "pulsar"
    _, bookie_credentials = credential_secrets()
    assert decoded(out.get_relation(bookies.id).local_app_data) == {
        "metadata-service-uri": METADATA_SERVICE_URI,
        "cluster-name": "pulsar",
        "initialized": True,
        "ensemble-size": 3,
        "credentials-secret": bookie_credentials.id,
    }
    # And granted the bookies their credentials, and ran ZooKeeper with the JAAS file
    assert out.get_secret(id=bookie_credentials.id).remote_grants == {bookies.id: {"bookie-k8s"}}
    assert out.unit_status == Status.WAITING_FOR_BOOKIES(ready=0, needed=3)


def test_a_failed_initialization_shows_stderr_and_is_retried(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    probes.zookeeper_mode = "standalone"
    secret = signing_key_secret()
    app_data = {"zk-members": [{"id": 1, "host": FQDN0}], "signing-key-secret": secret.id}
    failing = testing.Exec(INIT, return_code=1, stderr="java.net.ConnectException: Connection refused\n")
    state = unit.state(app_data=app_data, secrets=(secret,), execs=frozenset({failing}))

    out = ctx.run(ctx.on.update_status(), state)

    assert out.unit_status == Status.INIT_FAILED(
        error="/pulsar/bin/pulsar initialize-cluster-metadata exited 1: java.net.ConnectException: Connection refused"
    )
    assert "initialized" not in out.get_relations("cluster")[0].local_app_data
    # The next event tries again
    ctx.run(ctx.on.update_status(), out)
    assert len(workload_commands(ctx)) == 2


def test_an_initialized_cluster_is_not_initialized_again(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    probes.zookeeper_mode = "standalone"
    secret = signing_key_secret()
    state = unit.state(app_data=initialized_app_data(secret), secrets=(secret,), relations=(ready_bookies(3, 0),))

    ctx.run(ctx.on.update_status(), state)

    assert workload_commands(ctx) == []


def test_without_bookies_the_broker_waits_for_the_integration(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    probes.zookeeper_mode = "standalone"
    secret = signing_key_secret()
    out = ctx.run(ctx.on.update_status(), unit.state(app_data=initialized_app_data(secret), secrets=(secret,)))
    assert out.unit_status == Status.NO_BOOKKEEPER_RELATION()
    assert "broker" not in out.get_container("pulsar").plan.services


def test_the_broker_waits_for_ensemble_size_ready_bookies(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    probes.zookeeper_mode = "standalone"
    secret = signing_key_secret()
    state = unit.state(app_data=initialized_app_data(secret), secrets=(secret,), relations=(ready_bookies(3, 2),))

    out = ctx.run(ctx.on.update_status(), state)

    assert out.unit_status == Status.WAITING_FOR_BOOKIES(ready=2, needed=3)
    assert "broker" not in out.get_container("pulsar").plan.services
    assert not (unit.conf / "broker.conf").exists()


def test_the_broker_starts_with_its_whole_config_rendered(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    # Given metadata initialized and three ready bookies
    probes.zookeeper_mode = "standalone"
    secret = signing_key_secret()
    state = unit.state(app_data=initialized_app_data(secret), secrets=(secret,), relations=(ready_bookies(3, 3),))

    # When a bookie's readiness arrives
    out = ctx.run(ctx.on.update_status(), state)

    # Then broker.conf carries the cluster, the stores, the FQDN, the quorums and token auth
    conf = (unit.conf / "broker.conf").read_text().splitlines()
    for line in (
        "clusterName=pulsar",
        f"metadataStoreUrl=zk:{ZOOKEEPER_CONNECT}",
        f"bookkeeperMetadataServiceUri={METADATA_SERVICE_URI}",
        f"advertisedAddress={FQDN0}",
        "managedLedgerDefaultEnsembleSize=3",
        "managedLedgerDefaultWriteQuorum=3",
        "managedLedgerDefaultAckQuorum=2",
        "authenticationEnabled=true",
        "authorizationEnabled=true",
        "superUserRoles=pulsar-k8s-admin",
        "authenticationProviders=org.apache.pulsar.broker.authentication.oidc.AuthenticationProviderOpenID",
        "openIDAllowedTokenIssuers=http://127.0.0.1:8079",
        "openIDAllowedAudiences=pulsar-k8s",
        "brokerClientAuthenticationParameters=file:///pulsar/conf/broker-token",
        "authenticateMetricsEndpoint=false",
        "bookkeeperClientAuthenticationPlugin=org.apache.bookkeeper.sasl.SASLClientProviderFactory",
    ):
        assert line in conf
    assert (unit.conf / "broker.conf").stat().st_mode & 0o777 == 0o600
    # And the broker runs after ZooKeeper, with its heap, probed on status.html
    plan = out.get_container("pulsar").plan
    assert plan.services["broker"].command == "/pulsar/bin/pulsar broker"
    assert (plan.services["broker"].user_id, plan.services["broker"].group) == (10000, "root")
    assert plan.services["broker"].environment["PULSAR_EXTRA_OPTS"] == (
        "-Dpulsar.allocator.exit_on_oom=true -Dio.netty.recycler.maxCapacityPerThread=4096 "
        "-Djava.security.auth.login.config=/pulsar/conf/jaas.conf -Dzookeeper.fips-mode=false"
    )
    assert plan.services["broker"].after == ["zookeeper", "token-keys"]
    assert plan.services["broker"].environment["PULSAR_MEM"] == "-Xms512m -Xmx512m -XX:MaxDirectMemorySize=512m"
    # And it verifies tokens with the key set its pod serves on localhost only, and reads its own
    # token from a 0600 file
    keys = plan.services["token-keys"]
    assert keys.command == "python3 -m http.server 8079 --bind 127.0.0.1 --directory /pulsar/conf/token-keys"
    assert (keys.user_id, keys.group) == (10000, "root")
    discovery = json.loads((unit.conf / "token-keys/.well-known/openid-configuration").read_text())
    assert discovery == {"issuer": "http://127.0.0.1:8079", "jwks_uri": "http://127.0.0.1:8079/jwks.json"}
    key_set = json.loads((unit.conf / "token-keys/jwks.json").read_text())
    assert [(k["kid"], k["alg"]) for k in key_set["keys"]] == [(KEY_ID, "RS256")]
    token_file = unit.conf / "broker-token"
    assert ISSUER.role_of(token_file.read_text()) == "pulsar-k8s-admin"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert plan.checks["broker-ready"].http == {"url": "http://localhost:8080/status.html"}
    assert out.opened_ports == {testing.TCPPort(6650), testing.TCPPort(8080)}
    assert out.unit_status == Status.BROKER_STARTING()


def test_metrics_ask_for_a_token_when_the_config_says_so(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    # Given a broker about to start
    probes.zookeeper_mode = "standalone"
    secret = signing_key_secret()
    config = {"metrics-authentication": True}
    state = unit.state(
        app_data=initialized_app_data(secret), secrets=(secret,), relations=(ready_bookies(3, 3),), config=config
    )

    # When the config asks for authentication on /metrics
    ctx.run(ctx.on.config_changed(), state)

    # Then the broker requires a token there too
    assert "authenticateMetricsEndpoint=true" in (unit.conf / "broker.conf").read_text().splitlines()


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"write-quorum": 3, "ensemble-size": 2}, "invalid config write-quorum: 3 exceeds the ensemble size 2"),
        ({"write-quorum": 2, "ack-quorum": 3}, "invalid config ack-quorum: 3 exceeds the write quorum 2"),
    ],
)
def test_inconsistent_quorums_block(
    ctx: testing.Context, unit: Unit, probes: Probes, config: dict[str, int], error: str
) -> None:
    probes.zookeeper_mode = "standalone"
    secret = signing_key_secret()
    state = unit.state(
        app_data=initialized_app_data(secret), secrets=(secret,), relations=(ready_bookies(3, 3),), config=config
    )
    out = ctx.run(ctx.on.config_changed(), state)
    assert out.unit_status == Status.INVALID_CONFIG(error=error)
    assert "broker" not in out.get_container("pulsar").plan.services


def test_cluster_name_cannot_change_once_initialized(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    secret = signing_key_secret()
    state = unit.state(app_data=initialized_app_data(secret), secrets=(secret,), config={"cluster-name": "other"})
    out = ctx.run(ctx.on.config_changed(), state)
    assert out.unit_status == Status.CLUSTER_NAME_FIXED(name="pulsar")


def test_non_leaders_wait_for_initialization(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    probes.zookeeper_mode = "follower"
    secret = testing.Secret(dict(SIGNING_KEYS), owner="app")
    app_data = {"zk-members": [{"id": 1, "host": FQDN0}], "signing-key-secret": secret.id}
    out = ctx.run(ctx.on.update_status(), unit.state(leader=False, app_data=app_data, secrets=(secret,)))
    assert out.unit_status == Status.WAITING_FOR_INIT()
    assert workload_commands(ctx) == []


def test_get_admin_credentials_returns_a_superuser_token(ctx: testing.Context, unit: Unit) -> None:
    secret = signing_key_secret()
    ctx.run(
        ctx.on.action("get-admin-credentials"), unit.state(app_data=initialized_app_data(secret), secrets=(secret,))
    )
    results = ctx.action_results or {}
    assert ISSUER.role_of(results["token"]) == "pulsar-k8s-admin"
    assert results["service-url"] == f"pulsar://{FQDN0}:6650"
    # The token expires after token-lifetime (28 days by default), as the results say
    claims = ISSUER.claims(results["token"])
    assert claims is not None
    expires = datetime.fromisoformat(results["expires-at"])
    assert claims["exp"] == int(expires.timestamp())
    assert abs(expires - datetime.now(UTC) - timedelta(days=28)) < timedelta(minutes=1)


def test_an_invalid_token_lifetime_blocks(ctx: testing.Context, unit: Unit) -> None:
    out = ctx.run(ctx.on.config_changed(), unit.state(config={"token-lifetime": "forever"}))
    assert out.unit_status == Status.INVALID_CONFIG(
        error="invalid config token-lifetime: 'forever' (a duration such as 28d, 12h or 30m, at least 1m)"
    )


def test_get_admin_credentials_fails_before_the_key_exists(ctx: testing.Context, unit: Unit) -> None:
    with pytest.raises(testing.ActionFailed, match="token signing key does not exist yet"):
        ctx.run(ctx.on.action("get-admin-credentials"), unit.state())


def _active_cluster(unit: Unit, probes: Probes, **kwargs: object) -> testing.State:
    probes.zookeeper_mode = "standalone"
    probes.broker_ready = True
    secret = signing_key_secret()
    relations = (ready_bookies(3, 3), *kwargs.pop("relations", ()))  # type: ignore[misc]
    return unit.state(app_data=initialized_app_data(secret), secrets=(secret,), relations=relations, **kwargs)  # type: ignore[arg-type]


def test_a_unit_tells_its_peers_when_it_serves_and_when_it_stops(
    ctx: testing.Context, unit: Unit, probes: Probes
) -> None:
    # Given a unit whose ZooKeeper and broker serve
    state = _active_cluster(unit, probes)

    # When it reconciles
    out = ctx.run(ctx.on.update_status(), state)

    # Then its peer databag says it serves (the leader's application status hears of it)
    assert out.get_relations("cluster")[0].local_unit_data["serving"] == "true"

    # When its broker stops answering
    probes.broker_ready = False
    out = ctx.run(ctx.on.update_status(), out)

    # Then its databag says so
    assert out.get_relations("cluster")[0].local_unit_data["serving"] == "false"
    assert out.unit_status == Status.BROKER_STARTING()


def test_the_leader_gives_a_client_its_namespace_permissions_and_token(
    ctx: testing.Context, unit: Unit, probes: Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a running cluster and a client asking for its namespace and a topic
    calls = record_admin_calls(monkeypatch)
    client = testing.Relation(
        "pulsar", remote_app_name="client",
        remote_app_data=encoded({"namespace": "client/default", "permissions": ["produce", "consume"],
                                 "topics": ["readings"]}),
    )  # fmt: skip

    # When the client's request arrives
    out = ctx.run(ctx.on.relation_changed(client), _active_cluster(unit, probes, relations=(client,)))

    # Then the ready broker's admin API created the tenant, namespace, grant (to the relation's role) and topic
    role = client_role(client.id)
    broker = f"http://{FQDN0}:8080"
    assert calls == [
        (broker, "ensure_tenant", "client", "pulsar"),
        (broker, "ensure_namespace", "client/default"),
        (broker, "grant", "client/default", role, "('consume', 'produce')"),
        (broker, "ensure_topic", "client/default", "readings"),
    ]
    # And the client got URLs, its namespace, and a secret with a token for its own role
    data = decoded(out.get_relation(client.id).local_app_data)
    assert data["service-url"] == f"pulsar://{FQDN0}:6650"
    assert data["web-service-url"] == f"http://{FQDN0}:8080"
    assert data["namespace"] == "client/default"
    secret = next(s for s in out.secrets if s.id == data["secret-credentials"])
    assert ISSUER.role_of(secret.latest_content["token"]) == role
    assert secret.remote_grants == {client.id: {"client"}}
    assert out.unit_status == Status.ACTIVE(role="standalone")


def test_a_client_asking_for_another_tenant_is_refused(
    ctx: testing.Context, unit: Unit, probes: Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = record_admin_calls(monkeypatch)
    client = testing.Relation(
        "pulsar", remote_app_name="client", remote_app_data=encoded({"namespace": "other/default"})
    )

    out = ctx.run(ctx.on.relation_changed(client), _active_cluster(unit, probes, relations=(client,)))

    data = decoded(out.get_relation(client.id).local_app_data)
    assert data == {"error": "namespace 'other/default': the tenant must be the application name 'client'"}
    assert calls == []


def test_a_running_unit_waits_for_the_restart_lock(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    # Given a non-leader whose services run with something else than they should
    running = {"zookeeper": pebble.ServiceStatus.ACTIVE, "broker": pebble.ServiceStatus.ACTIVE}
    state = _active_cluster(unit, probes, leader=False)
    container = testing.Container(
        "pulsar", can_connect=True, mounts=unit.container().mounts, execs=unit.container().execs,
        service_statuses=running,
        layers={"pulsar": pebble.Layer({"services": {"zookeeper": {"override": "replace", "command": "old"},
                                                     "broker": {"override": "replace", "command": "old"}}})},
    )  # fmt: skip
    state = dataclasses.replace(state, containers={container})

    # When it reconciles without holding the lock
    out = ctx.run(ctx.on.config_changed(), state)

    # Then it asks for the lock and leaves its services as they were
    assert out.unit_status == Status.WAITING_TO_RESTART(services="broker, zookeeper")
    peer = out.get_relations("cluster")[0]
    assert decoded(peer.local_unit_data)["restart-request"] == {"phase": "waiting", "services": ["broker", "zookeeper"]}
    assert out.get_container("pulsar").plan.services["broker"].command == "old"

    # When the leader hands it the lock
    peer = dataclasses.replace(peer, local_app_data={**peer.local_app_data, "restart-holder": '"pulsar-k8s/0"'})
    others = {r for r in out.relations if r.endpoint != "cluster"}
    out = ctx.run(ctx.on.update_status(), dataclasses.replace(out, relations={*others, peer}))

    # Then it applies the new plan, and releases the lock once its services serve again
    assert out.get_container("pulsar").plan.services["broker"].command == "/pulsar/bin/pulsar broker"
    assert "restart-request" not in out.get_relations("cluster")[0].local_unit_data
    assert out.unit_status == Status.ACTIVE(role="standalone")


def test_a_unit_waits_while_another_holds_the_restart_lock(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    # Given a non-leader whose broker runs with an old definition, while unit 1 holds the lock
    running = {"zookeeper": pebble.ServiceStatus.ACTIVE, "broker": pebble.ServiceStatus.ACTIVE}
    state = _active_cluster(unit, probes, leader=False)
    container = testing.Container(
        "pulsar", can_connect=True, mounts=unit.container().mounts, execs=unit.container().execs,
        service_statuses=running,
        layers={"pulsar": pebble.Layer({"services": {"broker": {"override": "replace", "command": "old"}}})},
    )  # fmt: skip
    peer = state.get_relations("cluster")[0]
    peer = dataclasses.replace(peer, local_app_data={**peer.local_app_data, "restart-holder": '"pulsar-k8s/1"'})
    others = {r for r in state.relations if r.endpoint != "cluster"}
    state = dataclasses.replace(state, containers={container}, relations={*others, peer})

    # When it reconciles
    out = ctx.run(ctx.on.update_status(), state)

    # Then its status names the unit it waits for, and its broker is left alone
    assert out.unit_status == Status.RESTART_HELD(services="broker", holder="pulsar-k8s/1")
    assert out.get_container("pulsar").plan.services["broker"].command == "old"


def test_the_leader_drops_a_removed_unit_from_the_ensemble(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    # Given a quorum of three whose unit 2 was removed: it no longer answers, 2 units are planned
    secret = signing_key_secret()
    fqdn2 = FQDN1.replace("pulsar-k8s-1", "pulsar-k8s-2")
    members = [{"id": 1, "host": FQDN0}, {"id": 2, "host": FQDN1}, {"id": 3, "host": fqdn2}]
    app_data = {**initialized_app_data(secret), "zk-members": members}
    probes.zookeeper_mode = "leader"
    state = unit.state(
        app_data=app_data,
        peers={1: {"host": FQDN1, "zk-state": "follower"}},
        secrets=(secret,),
        relations=(ready_bookies(3, 3),),
        planned_units=2,
    )
    peer = state.get_relations("cluster")[0]

    # When the leader hears that unit 2 departed
    out = ctx.run(ctx.on.relation_departed(peer, remote_unit=2, departing_unit=2), state)

    # Then the published ensemble is the two survivors, and zookeeper.conf lists only them
    published = json.loads(out.get_relations("cluster")[0].local_app_data["zk-members"])
    assert published == members[:2]
    conf = (unit.conf / "zookeeper.conf").read_text()
    assert f"server.2={FQDN1}:2888:3888\n" in conf
    assert "server.3=" not in conf


def test_a_broken_client_relation_loses_its_token(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    # Given a client that was granted a namespace and a token secret
    client = testing.Relation("pulsar", remote_app_name="client", remote_app_data={"namespace": "client/default"})
    token = testing.Secret({"token": "t"}, owner="app", label=f"pulsar-client-{client.id}",
                           remote_grants={client.id: {"client"}})  # fmt: skip
    state = _active_cluster(unit, probes, relations=(client,))
    peer = state.get_relations("cluster")[0]
    peer = dataclasses.replace(peer, local_app_data={**peer.local_app_data, f"client-{client.id}": '"done"'})
    others = {r for r in state.relations if r.endpoint != "cluster"}
    state = dataclasses.replace(state, relations={*others, peer}, secrets={*state.secrets, token})

    # When the relation is removed
    out = ctx.run(ctx.on.relation_broken(client), state)

    # Then the token secret is gone, and so is the record of the grant
    assert token.id not in {s.id for s in out.secrets}
    assert f"client-{client.id}" not in out.get_relations("cluster")[0].local_app_data


def _serving_non_leader(ctx: testing.Context, unit: Unit, probes: Probes) -> testing.State:
    """A non-leader whose ZooKeeper (standalone) and broker were started with three ready bookies, and serve."""
    probes.zookeeper_mode, probes.broker_ready = "standalone", True
    secret = signing_key_secret()
    state = unit.state(
        leader=False, app_data=initialized_app_data(secret), secrets=(secret,), relations=(ready_bookies(3, 3),)
    )
    return ctx.run(ctx.on.update_status(), state)


def test_a_dip_of_ready_bookies_does_not_later_restart_a_running_broker(
    ctx: testing.Context, unit: Unit, probes: Probes
) -> None:
    # Given a non-leader whose ZooKeeper and broker were started with three ready bookies, and serve
    started = _serving_non_leader(ctx, unit, probes)
    assert started.unit_status == Status.ACTIVE(role="standalone")
    applied = decoded(started.get_relations("cluster")[0].local_unit_data)["applied"]
    assert set(applied) == {"zookeeper", "broker", "token-keys"}

    # When a bookie stops being ready, so that fewer than the ensemble size are
    bookies = started.get_relations("bookkeeper")[0]
    dip = dataclasses.replace(bookies, remote_units_data={n: bookie_data(n, n != 2) for n in range(3)})
    during = ctx.run(
        ctx.on.relation_changed(dip), dataclasses.replace(started, relations={*started.relations} - {bookies} | {dip})
    )

    # Then the running broker keeps its config and its record
    assert during.get_container("pulsar").plan == started.get_container("pulsar").plan
    assert decoded(during.get_relations("cluster")[0].local_unit_data)["applied"] == applied

    # When the bookie is ready again
    back = dataclasses.replace(dip, remote_units_data={n: bookie_data(n, True) for n in range(3)})
    after = ctx.run(
        ctx.on.relation_changed(back), dataclasses.replace(during, relations={*during.relations} - {dip} | {back})
    )

    # Then nothing of the broker's own changed, so it asks for no restart
    assert "restart-request" not in after.get_relations("cluster")[0].local_unit_data
    assert after.unit_status == Status.ACTIVE(role="standalone")


def test_get_admin_credentials_lists_every_broker_after_one_scheme(ctx: testing.Context, unit: Unit) -> None:
    # Given an ensemble of two units
    secret = signing_key_secret()
    app_data = {**initialized_app_data(secret), "zk-members": [{"id": 1, "host": FQDN0}, {"id": 2, "host": FQDN1}]}

    # When the user asks for the admin credentials
    ctx.run(ctx.on.action("get-admin-credentials"), unit.state(app_data=app_data, secrets=(secret,)))

    # Then each URL has one scheme and the brokers joined by commas, as Pulsar's URL parser wants
    results = ctx.action_results or {}
    assert results["service-url"] == f"pulsar://{FQDN0}:6650,{FQDN1}:6650"
    assert results["web-service-url"] == f"http://{FQDN0}:8080,{FQDN1}:8080"


def test_names_follow_the_cluster_domain_of_the_pod(
    ctx: testing.Context, unit: Unit, probes: Probes, resolv_conf: Path
) -> None:
    # Given a pod whose resolv.conf says the cluster's domain is example.internal
    resolv_conf.write_text("search test.svc.example.internal svc.example.internal example.internal\n")

    # When the only unit gets Pebble
    out = ctx.run(ctx.on.pebble_ready(unit.container()), unit.state())

    # Then its FQDN, in peer data, in the ensemble and in zookeeper.conf, is in that domain
    name = fqdn(0, domain="example.internal")
    assert decoded(out.get_relations("cluster")[0].local_unit_data)["host"] == name
    assert decoded(out.get_relations("cluster")[0].local_app_data)["zk-members"] == [{"id": 1, "host": name}]
    assert f"server.1={name}:2888:3888\n" in (unit.conf / "zookeeper.conf").read_text()


def test_a_status_change_is_logged_once(ctx: testing.Context, unit: Unit, probes: Probes) -> None:
    # Given a unit whose status changes on a first event
    out = ctx.run(ctx.on.update_status(), unit.state(planned_units=3))
    assert out.unit_status == Status.WAITING_FOR_UNITS(joined=1, planned=3)

    # When a second event finds the same status
    ctx.run(ctx.on.update_status(), out)

    # Then the change was logged by the first event only
    logged = [
        entry.message for entry in ctx.juju_log if "status: waiting: zookeeper: waiting for units" in entry.message
    ]
    assert logged == ["pulsar-k8s/0 status: waiting: zookeeper: waiting for units to join: 1/3"]


def test_a_change_of_ensemble_restarts_zookeeper_and_leaves_the_broker_alone(
    ctx: testing.Context, unit: Unit, probes: Probes
) -> None:
    # Given a non-leader whose ZooKeeper and broker serve in an ensemble of one
    started = _serving_non_leader(ctx, unit, probes)
    broker_conf = (unit.conf / "broker.conf").read_text()

    # When the leader publishes an ensemble of two
    cluster = started.get_relations("cluster")[0]
    grown = dataclasses.replace(
        cluster,
        local_app_data={
            **cluster.local_app_data,
            "zk-members": json.dumps([{"id": 1, "host": FQDN0}, {"id": 2, "host": FQDN1}]),
        },
    )
    after = ctx.run(
        ctx.on.update_status(), dataclasses.replace(started, relations={*started.relations} - {cluster} | {grown})
    )

    # Then ZooKeeper asks to restart into it; the broker, whose ZooKeeper hosts do not follow
    # the ensemble, keeps its config and asks for nothing
    request = decoded(after.get_relations("cluster")[0].local_unit_data)["restart-request"]
    assert request == {"phase": "waiting", "services": ["zookeeper"]}
    assert (unit.conf / "broker.conf").read_text() == broker_conf
