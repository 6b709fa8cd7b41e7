"""The sandbox itself, proved with the greeter test charm on real Pebble.

The tests of this module build on each other in order, as one story of a model's life.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ops
import pytest

from sandbox import HookFailedError, Model, SandboxError, WaitTimeoutError
from sandbox.paths import state_dir
from sandbox.persistence import cleanup_model

GREETER = Path(__file__).resolve().parent / "charms" / "greeter-k8s"


def test_deploy_brings_units_up_with_real_pebble(model: Model) -> None:
    # When two greeter applications are deployed
    model.deploy(GREETER, "alpha", num_units=2)
    model.deploy(GREETER, "beta", config={"message": "hey"})
    model.wait_for_idle(["alpha", "beta"], timeout=60)

    # Then each unit's real Pebble runs the web service the charm planned
    for unit in ("alpha/0", "alpha/1", "beta/0"):
        plan = model.pebble(unit, "web").get_plan()
        assert plan.services["web"].command == "python3 -m http.server 8080 --directory /pulsar/www"
        assert model.pebble(unit, "web").get_services(["web"])[0].is_running()
    # And the peers see each other, the first unit leads, opened ports are recorded
    assert model.units["alpha/0"].workload_status.message == "serving 'hello' on :8080 (1 peers)"
    assert model.leader("alpha") == "alpha/0"
    assert "8080/tcp" in model.status()


def test_pods_reach_each_other_by_fqdn(model: Model) -> None:
    # When a unit fetches another unit's page through its Kubernetes-style FQDN
    url = f"http://{model.fqdn('alpha/0')}:8080/index.html"
    result = model.run("alpha/1", "fetch", {"url": url})

    # Then the request crossed pods and the FQDN has the Kubernetes shape
    assert result.status == "completed"
    assert result.results["body"] == "hello from alpha/0"
    assert model.fqdn("alpha/0") == "alpha-0.alpha-endpoints.t-sandbox.svc.cluster.local"
    assert model.address("alpha/0") != model.address("alpha/1")


def test_localhost_in_charm_code_is_the_pod(model: Model) -> None:
    # When charm code on a unit fetches localhost
    result = model.run("beta/0", "fetch", {"url": "http://localhost:8080/index.html"})

    # Then it reaches its own workload, not another pod's
    assert result.results["body"] == "hey from beta/0"


def test_relation_carries_data_both_ways_and_a_secret(model: Model) -> None:
    # When beta is integrated with alpha
    relation = model.integrate("alpha:greeting", "beta:upstream")
    model.wait_for_idle(["alpha", "beta"], timeout=60)

    # Then the requirer wrote its unit data, the provider answered in app data with a secret id
    data = model.relation_data(relation.id)
    assert data.unit_data["beta/0"]["name"] == "beta/0"
    assert data.app_data["alpha"]["greeting"] == "hello"
    # And the requirer read the granted secret's content
    assert data.unit_data["beta/0"]["received"] == "hello"
    assert data.unit_data["beta/0"]["token-length"] == "16"
    assert model.units["beta/0"].workload_status.message == "heard 'hello'"


def test_a_granted_secret_is_readable_and_others_are_not(model: Model) -> None:
    secret_id = model.relation_data(0 + _greeting_relation(model)).app_data["alpha"]["token-secret"]
    # Given a third application that was never granted the secret
    model.deploy(GREETER, "gamma")
    model.wait_for_idle(["gamma"], timeout=60)

    # When both the grantee and the stranger try to read it
    granted = model.run("beta/0", "read-secret", {"id": secret_id})
    refused = model.run("gamma/0", "read-secret", {"id": secret_id})

    # Then only the grantee can
    assert granted.status == "completed"
    assert len(granted.results["token"]) == 16
    assert refused.status == "failed"
    assert refused.message.startswith("cannot read secret")


def test_a_non_leader_cannot_write_application_data(model: Model) -> None:
    # When a non-leader writes its application's databag
    result = model.run("alpha/1", "write-app-data", {"value": "x"})

    # Then Juju's rule holds: the write is refused
    assert result.status == "failed"
    assert "is not leader" in result.message


def test_config_change_flows_through_relation_data(model: Model) -> None:
    # When the provider's greeting changes
    model.config("alpha", {"message": "hola"})
    model.wait_for_idle(["alpha", "beta"], timeout=60)

    # Then the new greeting reaches the requirer through relation-changed
    assert model.units["beta/0"].workload_status.message == "heard 'hola'"
    assert model.run("alpha/0", "fetch", {"url": "http://localhost:8080/"}).results["body"] == "hola from alpha/0"


def test_exec_runs_in_the_workload_container_and_fails_loudly(model: Model) -> None:
    # When the charm execs commands in its container
    ok = model.run("alpha/0", "exec", {"command": "hostname"})
    bad = model.run("alpha/0", "exec", {"command": "ls /no/such/path"})

    # Then they run in the pod (its hostname), and a failure carries exit code and stderr
    assert ok.results["stdout"] == "alpha-0"
    assert bad.status == "failed"
    assert bad.message.startswith("exit code 2:")
    assert "No such file" in bad.message


def test_pod_restart_keeps_storage_and_loses_the_rest(model: Model) -> None:
    # Given files written on storage and in the container's own file system
    model.run("beta/0", "write-files", {"content": "abc"})
    old_pebble = model.units["beta/0"].pod.containers["web"].process

    # When the pod is deleted and comes back
    model.restart_pod("beta/0")
    model.wait_for_idle(["beta"], timeout=60)

    # Then storage survived, the rest is gone, and a new Pebble runs a replanned service
    result = model.run("beta/0", "read-files")
    assert result.results == {"kept": "abc", "lost": "missing"}
    assert not old_pebble.alive()
    assert model.pebble("beta/0", "web").get_services(["web"])[0].is_running()
    assert model.units["beta/0"].workload_status.name == "active"


def test_pebble_check_failure_and_recovery_become_events(model: Model) -> None:
    # Given a healthy unit
    client = model.pebble("gamma/0", "web")

    # When its service stops, the check fails; when it starts again, the check recovers
    client.stop_services(["web"])
    model.wait_for_idle(["gamma"], status="maintenance", timeout=30)
    failed_message = model.units["gamma/0"].workload_status.message
    client.start_services(["web"])
    model.wait_for_idle(["gamma"], timeout=30)

    # Then the charm saw both events
    assert failed_message == "check web-up failing"
    assert model.units["gamma/0"].workload_status.name == "active"
    assert client.get_checks(names=["web-up"])[0].status == ops.pebble.CheckStatus.UP


def test_wait_for_idle_names_the_stuck_unit_and_why(model: Model) -> None:
    # When config puts a unit in blocked state
    model.config("gamma", {"port": 80})

    # Then waiting for active fails with the unit and its message
    with pytest.raises(WaitTimeoutError, match=r"gamma/0 is blocked: invalid port 80: use 1024-65535"):
        model.wait_for_idle(["gamma"], timeout=3)
    model.config("gamma", reset=["port"])
    model.wait_for_idle(["gamma"], timeout=30)


def test_remove_unit_departs_peers_and_moves_leadership(model: Model) -> None:
    # Given alpha/1 leads alpha
    model.elect_leader("alpha/1")

    # When alpha is scaled down by one unit (its highest ordinal, the leader, goes)
    assert model.remove_unit("alpha", num_units=1) == ["alpha/1"]
    model.wait_for_idle(["alpha"], timeout=60)

    # Then the remaining unit leads and sees no peers; the old pod's namespace is gone
    assert model.leader("alpha") == "alpha/0"
    assert model.units["alpha/0"].workload_status.message == "serving 'hola' on :8080 (0 peers)"
    assert (
        "psb-t-sandbox-alpha-1"
        not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    )


def test_bad_input_is_a_one_line_error(model: Model) -> None:
    with pytest.raises(SandboxError, match='unit "nope/0" not found'):
        model.run("nope/0", "fetch", {"url": "x"})
    with pytest.raises(SandboxError, match='unknown action "dance"'):
        model.run("gamma/0", "dance")
    with pytest.raises(SandboxError, match='option "port" expected int, got "eighty"'):
        model.config("gamma", {"port": "eighty"})
    with pytest.raises(SandboxError, match="ambiguous integration alpha beta; specify endpoints"):
        model.integrate("alpha", "beta")
    with pytest.raises(SandboxError, match='relation "alpha:greeting beta:upstream" already exists'):
        model.integrate("alpha:greeting", "beta:upstream")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-m", "no-such-model", "status"], 'ERROR model "no-such-model" not found'),
        (["-m", "t-sandbox", "run", "gamma/0", "dance"], 'ERROR unknown action "dance"'),
        (["-m", "t-sandbox", "config", "gamma", "port=eighty"], 'ERROR option "port" expected int'),
        (["-m", "t-sandbox", "add-unit", "nope"], 'ERROR application "nope" not found'),
    ],
)
def test_cli_bad_input_is_one_line_without_traceback(model: Model, argv: list[str], message: str) -> None:
    model.save()
    result = subprocess.run([sys.executable, "-m", "sandbox", *argv], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_cli_run_prints_results_like_juju(model: Model) -> None:
    model.save()
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "-m", "t-sandbox", "run", "gamma/0", "exec", "command=hostname"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "stdout: gamma-0" in result.stdout


def test_a_crashed_run_is_cleaned_up_by_the_next() -> None:
    # Given a model whose owner died without destroying it
    crashed = Model.create("t-crash")
    crashed.deploy(GREETER, "solo")
    processes = [crashed.units["solo/0"].pod.agent, crashed.units["solo/0"].pod.containers["web"].process]
    del crashed

    # When a model of the same name is created
    fresh = Model.create("t-crash")

    # Then the old processes are gone and the new model starts empty
    assert all(p is not None and not p.alive() for p in processes)
    assert fresh.units == {}
    fresh.destroy()
    assert not (state_dir() / "t-crash").exists()


def test_destroy_leaves_nothing_behind() -> None:
    # Given a model with a running unit
    doomed = Model.create("t-doomed")
    doomed.deploy(GREETER, "solo")
    pod = doomed.units["solo/0"].pod
    processes = [pod.agent, pod.containers["web"].process]

    # When it is destroyed
    cleanup_model("t-doomed")

    # Then its processes, namespaces and files are gone
    assert all(p is not None and not p.alive() for p in processes)
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert "psb-t-doomed" not in namespaces
    assert not (state_dir() / "t-doomed").exists()


def test_hook_errors_are_reported_with_the_hook_and_the_exception(model: Model, tmp_path: Path) -> None:
    # Given a charm whose config-changed raises
    broken = tmp_path / "broken-k8s"
    broken.mkdir()
    (broken / "src").mkdir()
    (broken / "charmcraft.yaml").write_text(
        "name: broken-k8s\ntype: charm\nsummary: fails\ndescription: fails\n"
        "base: ubuntu@24.04\nplatforms:\n  amd64:\n"
        "config:\n  options:\n    x:\n      type: int\n      default: 1\n"
    )
    (broken / "src" / "charm.py").write_text(
        "import ops\n\n\nclass Broken(ops.CharmBase):\n"
        "    def __init__(self, framework):\n        super().__init__(framework)\n"
        "        framework.observe(self.on.config_changed, self._boom)\n\n"
        "    def _boom(self, _):\n        raise RuntimeError('boom')\n"
    )
    # When it is deployed
    model.deploy(broken, "broken")

    # Then waiting fails at once, naming the unit, the hook and the exception
    with pytest.raises(HookFailedError, match=r'broken/0: hook failed: "config_changed": RuntimeError: boom'):
        model.wait_for_idle(["broken"], timeout=30)
    assert "hook failed" in model.status()


def _greeting_relation(model: Model) -> int:
    return next(r.id for r in model.relations.values() if ("alpha", "greeting") in r.endpoints)
