"""Pods as Kubernetes runs them for Juju: probes, container restarts, rolling refresh, DNS.

Readiness is Pebble's `/v1/health?level=ready` (a pod with an empty plan is ready), a
container failing `level=alive` probes three times in a row is restarted (writable layer and
plan lost, storage kept, pebble-ready again), `refresh` replaces pods one at a time from the
highest ordinal, and each pod resolves names in its model's cluster domain. Every hook runs
with ops.testing's consistency checks on.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import ops
import pytest
from ops import testing

from sandbox import Model, SandboxError
from sandbox.agent import _load_charm_type, _run_forked
from sandbox.wire import EventRequest, EventSpec

GREETER = Path(__file__).resolve().parent / "charms" / "greeter-k8s"
_SAW = re.compile(r"^\s+INFO saw (\S+) .* services=(\S+)$")


def seen(model: Model, unit: str) -> list[tuple[str, str]]:
    """(event, Pebble services at the start of the hook) for each hook the unit's charm logged."""
    return [(m.group(1), m.group(2)) for line in model.debug_log(unit).splitlines() if (m := _SAW.match(line))]


def status_line(model: Model, unit: str) -> str:
    return next(line for line in model.status().splitlines() if line.startswith(unit))


def test_a_saved_model_is_driven_on_by_another_process(model: Model) -> None:
    # Given a deployed application, saved
    model.deploy(GREETER, "probe")
    model.wait_for_idle(["probe"], timeout=90)
    model.save()

    # When another Model object loads it (as each CLI call does) and acts on it
    loaded = Model.load(model.name)
    result = loaded.run("probe/0", "fetch", {"url": "http://localhost:8080/index.html"})

    # Then it drives the same pods and state
    assert result.results["body"] == "hello from probe/0"
    assert loaded.leader("probe") == "probe/0"
    assert loaded.units["probe/0"].pod.address == model.units["probe/0"].pod.address


def test_a_pod_with_an_empty_plan_is_ready(model: Model) -> None:
    # Given a unit whose pod runs but whose charm has not planned anything yet
    model.deploy(GREETER, "empty", settle=False)
    time.sleep(1.2)  # the startup probe's period

    # Then its pod is ready
    assert model.pebble("empty/0", "web").get_plan().services == {}
    assert model.pod_ready("empty/0")
    model.wait_for_idle(["empty"], timeout=90)


def test_what_a_container_writes_outside_storage_is_its_own(model: Model) -> None:
    # Given two units of an application
    model.deploy(GREETER, "private", num_units=2)
    model.wait_for_idle(["private"], timeout=120)

    # When one container writes under /var and /opt, outside its image and storage
    script = "mkdir -p /var/lib/private-test /opt/private-test && echo mine > /var/lib/private-test/f"
    model.pebble("private/0", "web").exec(["sh", "-c", script]).wait()

    # Then it reads its file back, the other pod and the host do not see it
    own = model.pebble("private/0", "web").exec(["cat", "/var/lib/private-test/f"]).wait_output()[0]
    assert own == "mine\n"
    other = model.pebble("private/1", "web").exec(["ls", "/var/lib"]).wait_output()[0]
    assert "private-test" not in other.split()
    assert not Path("/var/lib/private-test").exists()
    assert not Path("/opt/private-test").exists()

    # And a new pod of that unit starts without it, as a container's root file system does
    model.restart_pod("private/0")
    after = model.pebble("private/0", "web").exec(["ls", "/var/lib"]).wait_output()[0]
    assert "private-test" not in after.split()


def test_ready_checks_gate_the_pods_readiness(model: Model) -> None:
    # Given a ready pod
    assert model.pod_ready("probe/0")

    # When the charm adds a ready check that fails
    model.config("probe", {"ready-path": "/missing.html"}, settle=False)
    model.drive_until(lambda m: not m.pod_ready("probe/0"), timeout=30)

    # Then the pod is not ready, as status shows
    assert " not ready " in status_line(model, "probe/0")

    # When the check passes again
    model.config("probe", {"ready-path": "/index.html"}, settle=False)
    model.drive_until(lambda m: m.pod_ready("probe/0"), timeout=30)
    model.wait_for_idle(["probe"], timeout=60)

    # Then the pod is ready again
    assert " not ready " not in status_line(model, "probe/0")
    assert " ready " in status_line(model, "probe/0")


def test_a_failing_alive_check_restarts_the_container(model: Model) -> None:
    # Given files on storage and in the container's own file system, and probes every second
    model.probe_period = 1.0
    model.run("probe/0", "write-files", {"content": "kept across the restart"})
    old_pebble = model.units["probe/0"].pod.containers["web"].process
    before = len(seen(model, "probe/0"))

    # When the service behind the alive check stops
    model.pebble("probe/0", "web").stop_services(["web"])
    model.drive_until(lambda m: m.units["probe/0"].restarts == 1, timeout=60)
    model.wait_for_idle(["probe"], timeout=60)

    # Then the kubelet restarted the container: a new Pebble with an empty plan, so the charm
    # got pebble-ready and planned again; storage stayed, the writable layer did not
    assert not old_pebble.alive()
    assert ("web_pebble_ready", "none") in seen(model, "probe/0")[before:]
    assert model.pebble("probe/0", "web").get_services(["web"])[0].is_running()
    assert model.run("probe/0", "read-files").results == {"kept": "kept across the restart", "lost": "missing"}
    assert "(1 restart)" in status_line(model, "probe/0")
    model.probe_period = 5.0


def test_refresh_replaces_pods_one_at_a_time_from_the_highest(model: Model, tmp_path: Path) -> None:
    # Given three units with a file each on storage, and a new revision of their charm
    model.deploy(GREETER, "roll", num_units=3)
    model.wait_for_idle(["roll"], timeout=120)
    units = ["roll/0", "roll/1", "roll/2"]
    for unit in units:
        model.run(unit, "write-files", {"content": f"data of {unit}"})
    new_charm = tmp_path / "greeter-k8s"
    shutil.copytree(GREETER, new_charm)
    source = new_charm / "src" / "charm.py"
    source.write_text(source.read_text().replace('VERSION = "1"', 'VERSION = "2"'))
    pebbles = {unit: model.units[unit].pod.containers["web"].process for unit in units}
    before = {unit: len(seen(model, unit)) for unit in units}
    model.event_records.clear()
    unavailable: list[set[str]] = []

    def rolled_out(m: Model) -> bool:
        unavailable.append({u for u in units if not m.pod_ready(u)})
        return not m.statefulset("roll").rolling

    # When the application is refreshed
    model.refresh("roll", new_charm, settle=False)
    model.drive_until(rolled_out, timeout=240)
    model.wait_for_idle(["roll"], timeout=120)

    # Then every pod was replaced, highest ordinal first, never two unavailable at once
    assert not any(pebbles[unit].alive() for unit in units)
    stops = [r.unit for r in model.event_records if r.kind == "stop"]
    assert stops == ["roll/2", "roll/1", "roll/0"]
    assert all(len(down) <= 1 for down in unavailable)
    # And each new pod's agent ran the new charm, from an empty plan, in Juju's order
    for unit in units:
        after = seen(model, unit)[before[unit] :]
        assert [kind for kind, _ in after[:5]] == [
            "stop",
            "upgrade_charm",
            "config_changed",
            "start",
            "web_pebble_ready",
        ]
        assert after[1] == ("upgrade_charm", "none")
        assert model.units[unit].workload_version == "2"
        assert model.run(unit, "read-files").results == {"kept": f"data of {unit}", "lost": "missing"}


def test_pods_resolve_names_in_their_cluster_domain() -> None:
    # Given a model in a cluster whose domain is not cluster.local
    domain_model = Model.create("t-sb-domain", update_status_interval=3600, cluster_domain="example.internal")
    try:
        domain_model.deploy(GREETER, "dns", num_units=2)
        domain_model.wait_for_idle(["dns"], timeout=120)

        # When charm code reads its resolv.conf and a unit fetches another by FQDN
        resolv = domain_model.run("dns/1", "read-local", {"path": "/etc/resolv.conf"}).results["content"]
        fqdn = domain_model.fqdn("dns/0")
        fetched = domain_model.run("dns/1", "fetch", {"url": f"http://{fqdn}:8080/index.html"})

        # Then the pod's search list, FQDNs and hosts files use that domain
        assert "search t-sb-domain.svc.example.internal svc.example.internal example.internal" in resolv
        assert fqdn == "dns-0.dns-endpoints.t-sb-domain.svc.example.internal"
        assert fetched.results["body"] == "hello from dns/0"
        hosts = domain_model.run("dns/1", "exec", {"command": "cat /etc/hosts"}).results["stdout"]
        assert fqdn in hosts
    finally:
        domain_model.destroy()


def test_every_event_runs_with_the_consistency_checks() -> None:
    # Given a pebble-check-failed event whose check is not in the container's plan
    container = testing.Container(
        "web",
        can_connect=True,
        check_infos={testing.CheckInfo("web-up", level=ops.pebble.CheckLevel.ALIVE)},
    )
    request = EventRequest(
        event=EventSpec("pebble_check_failed", container="web", check="web-up"),
        state=testing.State(containers={container}),
        pebble_sockets={},
        app="greeter-k8s",
        unit_id=0,
        trusted=False,
    )

    # When the unit agent runs it
    reply = _run_forked(_load_charm_type(GREETER), request)

    # Then ops.testing refuses the inconsistent State, as the hook's error
    assert reply.error is not None
    assert "InconsistentScenarioError" in reply.error_line
    assert "plan has no checks" in reply.error


def test_an_action_parameter_outside_the_schema_is_refused(model: Model) -> None:
    with pytest.raises(SandboxError, match='action "fetch" has no parameter "extra" in its schema'):
        model.run("probe/0", "fetch", {"url": "http://localhost:8080/", "extra": "1"})
