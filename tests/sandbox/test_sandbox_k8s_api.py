"""Charm code drives its StatefulSet's rolling update through the sandbox's Kubernetes API.

The greeter's `statefulset` action uses lightkube's default `Client()`, unchanged, from inside
its pod: it reads and patches its StatefulSet and reads a pod, as Canonical's data charms do
for a safe `juju refresh`. The tests follow one application through that story, in order:
untrusted, trusted and held by a partition, then released.
"""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import yaml

from sandbox import Model, pods
from sandbox.procs import run

GREETER = Path(__file__).resolve().parent / "charms" / "greeter-k8s"
APP = "kube"
UNITS = [f"{APP}/0", f"{APP}/1", f"{APP}/2"]


def stops(model: Model) -> list[str]:
    return [r.unit for r in model.event_records if r.kind == "stop"]


def test_an_untrusted_application_is_forbidden_from_charm_code(model: Model) -> None:
    # Given an application deployed without trust
    model.deploy(GREETER, APP, num_units=3)
    model.wait_for_idle([APP], timeout=180)

    # When its charm code reads its StatefulSet with lightkube's default client
    result = model.run(f"{APP}/0", "statefulset")

    # Then the API refuses it as Kubernetes would refuse the application's service account
    assert result.status == "failed"
    assert result.results["code"] == 403
    assert result.results["reason"] == "Forbidden"
    assert result.results["message"] == (
        f'statefulsets.apps "{APP}" is forbidden: User "system:serviceaccount:{model.name}:{APP}" cannot get '
        f'resource "statefulsets" in API group "apps" in the namespace "{model.name}"'
    )
    # And the pod's kubeconfig is its own (0600), names the bridge and the model's namespace,
    # and the token is not on the unit agent's command line
    kubeconfig = model.units[f"{APP}/0"].pod.kubeconfig
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    config = yaml.safe_load(kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"].startswith(f"http://{pods.bridge_address()}:")
    assert config["contexts"][0]["context"]["namespace"] == model.name
    agent = model.units[f"{APP}/0"].pod.agent
    assert agent is not None
    assert model.apps[APP].api_token not in Path(f"/proc/{agent.pid}/cmdline").read_text()


def test_a_trusted_charm_holds_a_refresh_at_its_partition(model: Model, tmp_path: Path) -> None:
    # Given the application trusted, and a new revision of its charm
    model.trust(APP)
    old = model.statefulset(APP).current_revision
    new_charm = tmp_path / "greeter-k8s"
    shutil.copytree(GREETER, new_charm)
    source = new_charm / "src" / "charm.py"
    source.write_text(source.read_text().replace('VERSION = "1"', 'VERSION = "2"'))

    # When its charm code sets the partition to 2 of 3 (lightkube's strategic merge patch)
    patched = model.run(f"{APP}/0", "statefulset", {"partition": 2})

    # Then it sees its StatefulSet and pod as Kubernetes serves them
    assert patched.status == "completed", patched.message
    assert patched.results["partition"] == 2
    assert patched.results["replicas"] == 3
    assert patched.results["current-revision"] == patched.results["update-revision"] == old
    assert (patched.results["pod-revision"], patched.results["pod-index"]) == (old, "0")
    assert (patched.results["pod-ready"], patched.results["pod-phase"]) == ("True", "Running")

    # When the application is refreshed
    model.event_records.clear()
    model.refresh(APP, new_charm)

    # Then only unit 2 was replaced: it runs the new code and revision, units 0 and 1 the old
    view = model.statefulset(APP)
    assert stops(model) == [f"{APP}/2"]
    assert (view.partition, view.rolling, view.updated) == (2, False, [f"{APP}/2"])
    assert view.current_revision == old
    assert view.update_revision != old
    assert [model.units[u].workload_version for u in UNITS] == ["1", "1", "2"]
    assert [model.pod_revision(u) for u in UNITS] == [old, old, view.update_revision]
    assert model.units[f"{APP}/0"].charm.root == GREETER
    # And the new code sees the same from the API
    seen = model.run(f"{APP}/2", "statefulset")
    assert seen.results["updated-replicas"] == 1
    assert seen.results["pod-revision"] == view.update_revision
    assert seen.results["current-revision"] == old

    # When the application scales up while the partition holds
    model.add_unit(APP)

    # Then the new pod (ordinal 3, above the partition) is created from the update revision
    assert model.pod_revision(f"{APP}/3") == view.update_revision
    assert model.units[f"{APP}/3"].workload_version == "2"
    model.remove_unit(APP)
    model.wait_for_idle([APP], timeout=120)


def test_lowering_the_partition_lets_the_rollout_go_on(model: Model) -> None:
    # Given the rollout held at partition 2 (the previous test)
    update = model.statefulset(APP).update_revision
    model.event_records.clear()

    # When charm code lowers the partition to 0 (a merge patch this time), and nothing else is done
    lowered = model.run(f"{APP}/2", "statefulset", {"partition": 0, "patch-type": "merge"})
    model.wait_for_idle([APP], timeout=240)

    # Then the rolling update went on without another refresh, highest first, and is complete
    assert lowered.status == "completed", lowered.message
    assert stops(model) == [f"{APP}/1", f"{APP}/0"]
    view = model.statefulset(APP)
    assert (view.partition, view.rolling) == (0, False)
    assert view.current_revision == view.update_revision == update
    assert [model.units[u].workload_version for u in UNITS] == ["2", "2", "2"]
    assert "Partition" in model.status()


def test_another_applications_token_is_refused(model: Model) -> None:
    # Given a second, untrusted application
    model.deploy(GREETER, "nosy")
    model.wait_for_idle(["nosy"], timeout=120)

    # When its charm code patches the trusted application's StatefulSet
    from_nosy = model.run("nosy/0", "statefulset", {"name": APP, "partition": 3})
    # And the trusted application's charm code presents the other's token, or a made-up one
    borrowed = model.run(f"{APP}/0", "statefulset", {"token": model.apps["nosy"].api_token})
    forged = model.run(f"{APP}/0", "statefulset", {"token": "not-a-token"})
    # And trusted code asks for a negative partition
    negative = model.run(f"{APP}/0", "statefulset", {"partition": -1, "patch-type": "json"})

    # Then the token is the identity: the other application's is forbidden, a made-up one
    # unauthorized, a negative partition invalid, and nothing changed
    nosy_account = f'User "system:serviceaccount:{model.name}:nosy"'
    for answer in (from_nosy, borrowed, forged, negative):  # an API answer, not a client-side failure
        assert "code" in answer.results, (answer.status, answer.message)
    assert (from_nosy.results["code"], borrowed.results["code"]) == (403, 403)
    assert nosy_account in from_nosy.results["message"]
    assert "cannot patch" in from_nosy.results["message"]
    assert nosy_account in borrowed.results["message"]
    assert (forged.results["code"], forged.results["reason"]) == (401, "Unauthorized")
    assert (negative.results["code"], negative.results["reason"]) == (422, "Invalid")
    assert model.statefulset(APP).partition == 0


def _bridge_mac(model: Model) -> str:
    shown = run(["ip", "-j", "-n", pods.cluster_ns(model.name), "link", "show", "br0"], "reading the bridge")
    return json.loads(shown)[0]["address"]


def test_the_api_servers_link_address_stays_when_pods_join_and_leave(model: Model) -> None:
    # Given the cluster's bridge, where every pod reaches the API server
    cluster = pods.cluster_ns(model.name)
    before = _bridge_mac(model)

    # When a port with the lowest MAC there can be joins it, as a new pod's would, and leaves
    run(["ip", "-n", cluster, "link", "add", "lowest", "type", "veth", "peer", "name", "lowest-peer"], "a port")
    try:
        run(["ip", "-n", cluster, "link", "set", "lowest", "address", "00:00:00:00:00:01"], "its address")
        run(["ip", "-n", cluster, "link", "set", "lowest", "master", "br0", "up"], "joining the bridge")
        joined = _bridge_mac(model)
    finally:
        run(["ip", "-n", cluster, "link", "del", "lowest"], "removing the port")

    # Then the bridge's MAC never moved: no pod's ARP entry for the API server goes stale
    assert before == joined == _bridge_mac(model) == pods.BRIDGE_MAC
