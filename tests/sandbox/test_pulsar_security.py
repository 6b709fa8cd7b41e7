"""Security by default, tried from the attacker's side: pulsar-k8s -n 3, bookie-k8s -n 3.

The attacker is the test client's pod: a pod of the model that is no unit of the cluster,
with the Pulsar distribution's own tools. Nothing here uses a credential the cluster did not
hand to that pod, unless the test says it plays a stolen one.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path

import ops
import pytest

from sandbox import Model
from tests.sandbox.client_charms.test_loadgen import _finished_on_target
from tests.sandbox.conftest import CHARMS
from tests.sandbox.writers import acknowledged_and_lost, start_writer

TEST_CHARMS = Path(__file__).resolve().parent / "charms"
ATTACKER = ("client/0", "client")
CLUSTER_CONTAINERS = {"pulsar-k8s": "pulsar", "bookie-k8s": "bookie"}
ALL_CONTAINERS = {**CLUSTER_CONTAINERS, "client": "client"}
IMAGE_UID = 10000
# A small JVM for each tool the attacker runs; logs on the console, where the test reads them.
TOOL_ENV = {"PULSAR_MEM": "-Xmx96m", "BOOKIE_MEM": "-Xmx96m", "PULSAR_LOG_APPENDER": "Console"}
REFUSED_SESSION = "Session closed because client failed to authenticate"


@pytest.fixture(scope="module", autouse=True)
def cluster(model: Model, deploy_cluster: Callable[[Model, int], None]) -> Model:
    deploy_cluster(model, 3)
    return model


def _fqdn(model: Model, unit: str) -> str:
    return model.fqdn(unit)


def _attack(model: Model, argv: list[str], environment: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a command in the attacker's pod as the image's user; its exit code and output."""
    process = model.pebble(*ATTACKER).exec(
        argv,
        environment={**TOOL_ENV, **(environment or {})},
        user_id=IMAGE_UID,
        group_id=0,
        combine_stderr=True,
        timeout=180,
    )
    try:
        output, _ = process.wait_output()
    except ops.pebble.ExecError as error:
        return error.exit_code, str(error.stdout)
    return 0, output


def _put(model: Model, path: str, content: str) -> None:
    model.pebble(*ATTACKER).push(path, content, make_dirs=True, user_id=IMAGE_UID, group_id=0, permissions=0o600)


def _zookeeper_shell(model: Model, *command: str, jaas: str | None = None) -> tuple[int, str]:
    server = f"{_fqdn(model, 'pulsar-k8s/0')}:2181"
    environment = {}
    if jaas is not None:
        _put(model, "/tmp/attacker-jaas.conf", jaas)
        environment["PULSAR_EXTRA_OPTS"] = (
            "-Djava.security.auth.login.config=/tmp/attacker-jaas.conf -Dzookeeper.fips-mode=false"
        )
    return _attack(model, ["/pulsar/bin/pulsar", "zookeeper-shell", "-server", server, *command], environment)


def _client_jaas(section: str, username: str, password: str) -> str:
    return (
        f"{section} {{\n    org.apache.zookeeper.server.auth.DigestLoginModule required\n"
        f'    username="{username}"\n    password="{password}";\n}};\n'
    )


def _charm_secret(model: Model, secret_id: str) -> dict[str, str]:
    """A charm secret's latest content, as its owner sees it."""
    secret = next(s for s in model.secrets.values() if s.id == secret_id)
    return secret.revisions[secret.latest]


def _secret_by_label(model: Model, label: str) -> dict[str, str]:
    secret = next(s for s in model.secrets.values() if s.label == label and s.owner == "pulsar-k8s")
    return secret.revisions[secret.latest]


def _cluster_znodes(model: Model) -> str:
    """`ls /` through a session the cluster itself would open (its Client login), in a unit's pod."""
    jaas = "-Djava.security.auth.login.config=/pulsar/conf/jaas.conf -Dzookeeper.fips-mode=false"
    process = model.pebble("pulsar-k8s/0", "pulsar").exec(
        ["/pulsar/bin/pulsar", "zookeeper-shell", "-server", "localhost:2181", "ls", "/"],
        environment={**TOOL_ENV, "PULSAR_EXTRA_OPTS": jaas},
        user_id=IMAGE_UID,
        group_id=0,
        combine_stderr=True,
        timeout=180,
    )
    output, _ = process.wait_output()
    # The shell prints the children as `[a, b]` among its log lines.
    return next(line for line in output.splitlines() if line.startswith("[") and line.endswith("]"))


def test_zookeeper_refuses_a_session_without_credentials(model: Model) -> None:
    # When the attacker reads the namespaces' policies, and writes a znode, without credentials
    read = _zookeeper_shell(model, "ls", "/admin/policies")
    write = _zookeeper_shell(model, "create", "/attacker", "x")

    # Then ZooKeeper closes both sessions, and nothing was written
    for exit_code, output in (read, write):
        assert exit_code != 0
        assert REFUSED_SESSION in output
    assert "admin" in _cluster_znodes(model)
    assert "attacker" not in _cluster_znodes(model)


def test_zookeeper_refuses_a_guessed_password(model: Model) -> None:
    # When the attacker logs in as the brokers' user with a guessed password
    jaas = _client_jaas("Client", "pulsar", "pulsar")
    exit_code, output = _zookeeper_shell(model, "create", "/attacker", "x", jaas=jaas)

    # Then the login fails and nothing is written
    assert exit_code != 0
    assert "attacker" not in _cluster_znodes(model)
    assert "AuthFailed" in output or REFUSED_SESSION in output


def test_a_bookie_refuses_a_client_without_bookkeeper_credentials(model: Model) -> None:
    # Given an attacker who stole the bookies' ZooKeeper login (so it finds the bookies)
    credentials = _secret_by_label(model, "bookie-credentials")
    stolen = _client_jaas("Client", credentials["zookeeper-username"], credentials["zookeeper-password"])
    hosts = ";".join(f"{_fqdn(model, f'pulsar-k8s/{n}')}:2181" for n in range(3))
    conf = f"metadataServiceUri=zk+hierarchical://{hosts}/ledgers\n"
    environment = {
        "BOOKIE_CONF": "/tmp/attacker-bk.conf",
        "BOOKIE_EXTRA_OPTS": "-Djava.security.auth.login.config=/tmp/attacker-jaas.conf -Dzookeeper.fips-mode=false",
    }
    simpletest = ["/pulsar/bin/bookkeeper", "shell", "simpletest", "-ensemble", "1", "-writeQuorum", "1"]
    simpletest += ["-ackQuorum", "1", "-numEntries", "10"]

    # When it writes a ledger without BookKeeper credentials
    _put(model, "/tmp/attacker-jaas.conf", stolen)
    _put(model, "/tmp/attacker-bk.conf", conf)
    _, refusal = _attack(model, simpletest, environment)

    # Then the bookies refuse it (BookKeeper's shell exits 0 even when its command fails)
    assert "BKUnauthorizedAccessException" in refusal, refusal[-2000:]
    assert "Failed to process command 'simpletest'" in refusal

    # And the same tool with the BookKeeper login the cluster uses writes (the refusal was the bookies')
    bookkeeper = _client_jaas("BookKeeper", credentials["bookkeeper-username"], credentials["bookkeeper-password"])
    _put(model, "/tmp/attacker-jaas.conf", stolen + bookkeeper)
    sasl = "clientAuthProviderFactoryClass=org.apache.bookkeeper.sasl.SASLClientProviderFactory\n"
    _put(model, "/tmp/attacker-bk.conf", conf + sasl)
    _, output = _attack(model, simpletest, environment)
    assert "Failed to process command" not in output, output[-2000:]
    assert "BKUnauthorizedAccessException" not in output


def test_the_bookie_admin_api_answers_only_inside_its_pod(model: Model) -> None:
    # When the attacker calls a bookie's admin API, and the bookie's own pod does
    probe = (
        "import sys, urllib.request\n"
        "try:\n"
        "    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)\n"
        "except OSError as error:\n"
        "    print('refused', error)\n"
    )
    bookie = _fqdn(model, "bookie-k8s/0")
    _, attacker = _attack(model, ["python3", "-c", probe, f"http://{bookie}:8000/api/v1/bookie/info"])
    inside = model.pebble("bookie-k8s/0", "bookie").exec(
        ["python3", "-c", probe, "http://localhost:8000/api/v1/bookie/info"], user_id=IMAGE_UID, group_id=0
    )
    answer, _ = inside.wait_output()

    # Then only the pod's own call gets an answer
    assert attacker.startswith("refused"), attacker
    assert answer.strip() == "200", answer


def test_every_process_of_the_cluster_runs_as_the_image_user(model: Model) -> None:
    for unit in sorted(model.units):
        app = unit.split("/")[0]
        if app not in CLUSTER_CONTAINERS:
            continue
        processes = model.container_processes(unit, CLUSTER_CONTAINERS[app])
        assert any("java" in " ".join(p.argv) for p in processes), f"{unit}: no JVM found"
        for process in processes:
            assert (process.uid, process.gid) == (IMAGE_UID, 0), f"{unit}: {process.argv[:3]} runs as {process.uid}"


def test_no_secret_is_on_a_command_line_or_in_a_plan(model: Model) -> None:
    # Given every value of every Juju secret of the model, and the admin token an action prints
    admin = model.run("pulsar-k8s/0", "get-admin-credentials").results["token"]
    values = {admin} | {
        value for secret in model.secrets.values() for value in secret.revisions[secret.latest].values()
    }
    values = {value for value in values if len(value) >= 16}
    assert len(values) >= 6  # the signing key, 4 passwords, the client's token, the admin token

    # Then none is in the command line of any process of any pod, nor in any Pebble plan
    for unit in sorted(model.units):
        container = ALL_CONTAINERS[unit.split("/")[0]]
        for process in model.container_processes(unit, container):
            line = " ".join(process.argv)
            assert not [v for v in values if v in line], f"{unit}: a secret in {process.argv[:3]}"
        plan = model.pebble(unit, container).get_plan().to_yaml()
        assert not [v for v in values if v in plan], f"{unit}: a secret in the Pebble plan"


# ---------------------------------------------------------------- TLS

TLS_PROVIDER = "self-signed-certificates"
SUSTAINED_DOWN = 5.0  # seconds


def _grant(model: Model) -> dict[str, str]:
    relation = model.relation("pulsar-k8s", "client")
    return {key: json.loads(value) for key, value in relation.app_data["pulsar-k8s"].items()}


def _reachable(model: Model, host: str, port: int) -> bool:
    """Whether a TCP connection from the attacker's pod to host:port is accepted."""
    check = f"import socket; socket.create_connection(({host!r}, {port}), timeout=5).close()"
    exit_code, _ = _attack(model, ["python3", "-c", check])
    return exit_code == 0


def test_a_certificates_provider_gives_brokers_tls_and_clients_the_ca(model: Model) -> None:
    # When the user integrates pulsar-k8s with a certificates provider
    model.deploy(TEST_CHARMS / TLS_PROVIDER, TLS_PROVIDER)
    model.integrate("pulsar-k8s", TLS_PROVIDER)
    model.wait_for_idle(timeout=900)

    # Then the client is handed TLS URLs and the provider's CA
    grant = _grant(model)
    ca = model.run(f"{TLS_PROVIDER}/0", "get-ca-certificate").results["ca-certificate"]
    assert grant["service-url"] == ",".join(
        [f"pulsar+ssl://{_fqdn(model, 'pulsar-k8s/0')}:6651"]
        + [f"{_fqdn(model, f'pulsar-k8s/{n}')}:6651" for n in (1, 2)]
    )
    assert grant["tls-ca"].strip() == ca.strip()
    # And it produces and consumes over TLS, verifying the brokers with that CA
    produced = model.run("client/0", "produce", {"topic": "over-tls", "count": 100})
    assert produced.results == {"acked": "100", "failed": "0"}, produced.message
    consumed = model.run("client/0", "consume", {"topic": "over-tls", "count": 100, "subscription": "tls"})
    assert consumed.results == {"received": "100"}, consumed.message


def _metrics_status_without_token(model: Model, host: str) -> str:
    """The HTTP status a broker's /metrics answers the attacker's pod, over TLS, with no token."""
    _put(model, "/tmp/attacker-ca.pem", _grant(model)["tls-ca"])
    script = (
        "import ssl, urllib.error, urllib.request\n"
        "context = ssl.create_default_context(cafile='/tmp/attacker-ca.pem')\n"
        "try:\n"
        f"    print(urllib.request.urlopen('https://{host}:8443/metrics/', timeout=10, context=context).status)\n"
        "except urllib.error.HTTPError as error:\n"
        "    print(error.code)\n"
    )
    exit_code, output = _attack(model, ["python3", "-c", script])
    assert exit_code == 0, output
    return output.strip().splitlines()[-1]


def test_tls_required_refuses_plaintext_and_metrics_can_ask_for_a_token(model: Model) -> None:
    # When the user closes the plaintext ports, and asks for a token on /metrics (one roll for both)
    model.config("pulsar-k8s", {"tls-required": True, "metrics-authentication": True})
    model.wait_for_idle(timeout=600)

    # Then no broker accepts a plaintext connection, and the TLS ones still serve the client
    for n in range(3):
        host = _fqdn(model, f"pulsar-k8s/{n}")
        assert not _reachable(model, host, 6650)
        assert not _reachable(model, host, 8080)
        assert _reachable(model, host, 6651)
    produced = model.run("client/0", "produce", {"topic": "tls-only", "count": 100})
    assert produced.results == {"acked": "100", "failed": "0"}, produced.message
    # And /metrics refuses a scraper without a token, and answers one with a token of the cluster
    host = _fqdn(model, "pulsar-k8s/0")
    assert _metrics_status_without_token(model, host) == "401"
    leader = model.leader("pulsar-k8s")
    assert leader is not None
    admin = model.run(leader, "get-admin-credentials").results["token"]
    assert model.run("client/0", "admin", {"path": "/metrics/", "token": admin}).results["status"] == "200"


def test_a_load_test_runs_over_tls(model: Model) -> None:
    # Given a load generator integrated while only TLS is open
    model.deploy(CHARMS / "loadgen-k8s", "loadgen-k8s")
    model.integrate("loadgen-k8s", "pulsar-k8s")
    model.wait_for_idle(timeout=600)

    # When the user runs a short load test
    params = {"rate": 500, "duration": "10s", "warm-up": "2s", "partitions": 2, "device-count": 100, "topic": "tls"}
    started = model.run("loadgen-k8s/0", "start-load-test", params)
    assert started.status == "completed", started.message

    # Then it reaches its rate with no failed message: its clients trust the CA pulsar-k8s handed over
    _finished_on_target(model, "loadgen-k8s/0", started.results["test-id"], target=500, tolerance=0.1)


def test_a_renewal_rolls_the_brokers_one_at_a_time_and_loses_no_acknowledged_message(model: Model) -> None:
    # Given a writer that keeps writing over TLS, every acknowledgement recorded
    secret = _charm_secret(model, _grant(model)["secret-credentials"])
    chains = {n: _chain(model, n) for n in range(3)}
    writer = start_writer(model, secret["token"], "renewals", 4000)

    # When the provider renews every certificate
    time.sleep(10)
    model.run(f"{TLS_PROVIDER}/0", "renew-certificates")
    # A restarting broker's readiness check stays down for tens of seconds; a probe that missed
    # once on a loaded machine (its threshold is 1) is down for a second: only the first counts.
    down_since: dict[int, float] = {}
    down: list[int] = []

    def renewed(model: Model) -> bool:
        now = time.monotonic()
        for n in range(3):
            if _broker_check_up(model, n):
                down_since.pop(n, None)
            else:
                down_since.setdefault(n, now)
        down.append(sum(now - since >= SUSTAINED_DOWN for since in down_since.values()))
        return all(_chain(model, n) != chains[n] for n in range(3)) and _all_active(model)

    model.drive_until(renewed, timeout=600)
    model.wait_for_idle(timeout=600)

    # Then each broker got its new certificate, and never more than one was down at a time
    assert max(down) <= 1, down
    # And every message the writer saw acknowledged is there to read
    acked, lost = acknowledged_and_lost(model, writer, "renewals")
    assert len(acked) > 3000
    assert lost == set()


def _chain(model: Model, n: int) -> str:
    return model.pebble(f"pulsar-k8s/{n}", "pulsar").pull("/pulsar/conf/tls/broker-chain.pem").read()


def _broker_check_up(model: Model, n: int) -> bool:
    checks = model.pebble(f"pulsar-k8s/{n}", "pulsar").get_checks(names=["broker-ready"])
    return bool(checks) and checks[0].status == ops.pebble.CheckStatus.UP


def _all_active(model: Model) -> bool:
    units = [u for name, u in model.units.items() if name.startswith("pulsar-k8s/")]
    return all(isinstance(u.workload_status, ops.ActiveStatus) for u in units)


# ---------------------------------------------------------------- token expiry


def _expiry(token: str) -> int:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]


def test_client_tokens_expire_and_the_leader_renews_them(model: Model) -> None:
    # Given client tokens that live the shortest lifetime allowed, a minute, and a leader that
    # reconciles every 10 s
    model.update_status_interval = 10
    model.config("pulsar-k8s", {"token-lifetime": "1m"})
    model.wait_for_idle(timeout=300)
    secret_id = _grant(model)["secret-credentials"]
    first = _charm_secret(model, secret_id)["token"]
    assert _expiry(first) - time.time() <= 60

    # When a third of its lifetime is left, and then it has expired
    model.drive_until(lambda m: _charm_secret(m, secret_id)["token"] != first, timeout=120)
    renewed = _charm_secret(model, secret_id)["token"]
    model.drive_until(lambda _: time.time() > _expiry(first) + 5, timeout=120)

    # Then the broker refuses the expired token, and the client works on with its renewed one
    # (listing its namespace's topics: a call its role may make)
    path = "/admin/v2/persistent/client/default"
    assert model.run("client/0", "admin", {"path": path, "token": first}).results["status"] == "401"
    assert model.run("client/0", "admin", {"path": path, "token": renewed}).results["status"] == "200"
    produced = model.run("client/0", "produce", {"topic": "after-renewal", "count": 100})
    assert produced.results == {"acked": "100", "failed": "0"}, produced.message

    model.config("pulsar-k8s", {"token-lifetime": "28d"})
    model.update_status_interval = 3600
    model.wait_for_idle(timeout=300)


# ---------------------------------------------------------------- signing key rotation


def _header(token: str) -> dict[str, str]:
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))


def _signing_key_ids(model: Model) -> list[str]:
    content = _secret_by_label(model, "token-signing-key")
    return sorted(value for key, value in content.items() if key.endswith("-kid"))


def _admin_status(model: Model, token: str) -> str:
    """What the broker answers the client's pod for a call its role may make, with `token`."""
    path = "/admin/v2/persistent/client/default"
    return model.run("client/0", "admin", {"path": path, "token": token}).results["status"]


def test_rotate_signing_key_reissues_every_token_and_refuses_the_old_key_with_no_outage(model: Model) -> None:
    # Given a writer that keeps writing with the client's token, every acknowledgement recorded,
    # and an admin token printed before
    leader = model.leader("pulsar-k8s")
    assert leader is not None
    grant = _grant(model)
    secret_id = grant["secret-credentials"]
    old_token = _charm_secret(model, secret_id)["token"]
    old_admin = model.run(leader, "get-admin-credentials").results["token"]
    [old_kid] = _signing_key_ids(model)
    writer = start_writer(model, old_token, "rotation", 3000)

    # When the operator rotates the signing key
    time.sleep(10)
    rotated = model.run(leader, "rotate-signing-key")
    assert rotated.status == "completed", rotated.message
    new_kid = rotated.results["new-key-id"]
    assert rotated.results["retiring-key-id"] == old_kid
    # A second rotation is refused while this one runs
    again = model.run(leader, "rotate-signing-key")
    assert again.status == "failed"
    assert "under way" in again.message

    # Then the old key leaves once every broker and the client hold tokens of the new one
    model.drive_until(lambda m: _signing_key_ids(m) == [new_kid], timeout=600)
    model.wait_for_idle(timeout=300)
    new_token = _charm_secret(model, secret_id)["token"]
    assert _header(new_token)["kid"] == new_kid
    # The brokers refuse the old key's tokens once they read their key set again (each minute)
    deadline = time.monotonic() + 180
    while _admin_status(model, old_token) != "401":
        assert time.monotonic() < deadline, "the old key's token is still accepted"
        time.sleep(5)
    assert _admin_status(model, old_admin) == "401"
    # And the new ones work: the client's (read through secret-changed), and a new admin token
    assert _admin_status(model, new_token) == "200"
    new_admin = model.run(leader, "get-admin-credentials").results["token"]
    assert _header(new_admin)["kid"] == new_kid
    assert _admin_status(model, new_admin) == "200"
    produced = model.run("client/0", "produce", {"topic": "after-rotation", "count": 100})
    assert produced.results == {"acked": "100", "failed": "0"}, produced.message
    # And every message the writer saw acknowledged is there to read, all of them acknowledged: no
    # broker restarted
    acked, lost = acknowledged_and_lost(model, writer, "rotation")
    assert len(acked) == 3000
    assert lost == set()
