"""The sandbox's Kubernetes API without pods: patches, authorization, revisions and the partition.

The request handling runs against a model of three greeter units whose pods are only
described (no namespace, no Pebble); one test serves it over HTTP on this machine's loopback
to a real lightkube client. tests/sandbox/test_sandbox_k8s_api.py runs it from charm code in pods.
"""

from __future__ import annotations

import json
import pickle
import re
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.sandbox_models import GREETER, described_state
from lightkube import ApiError, Client, KubeConfig
from lightkube.resources.apps_v1 import StatefulSet
from lightkube.resources.core_v1 import Pod as PodResource
from lightkube.types import PatchType

from sandbox import Model, SandboxError, cli, persistence, pods, statefulset
from sandbox.charmspec import missing_requirements, pinned_requirements, read_pins
from sandbox.kubeapi import KubeApi, _Server, kubeconfig, write_private
from sandbox.state import AppState, PodAction
from sandbox.statefulset import ApiStatusError, patched_partition

REPO = Path(__file__).resolve().parents[2]
MODEL_UUID = "0c4b8a1e-3f2d-4e5a-8b6c-7d8e9f0a1b2c"
REVISION = re.compile(r"^web-[0-9a-f]{10}$")


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Model:
    """Application "web" (three units, not trusted) and "other" (one unit), described only."""
    monkeypatch.setenv("PULSAR_SANDBOX_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(pods, "SOCKETS_ROOT", tmp_path / "sockets")
    state = described_state(tmp_path / "home", "k8s", MODEL_UUID, {"web": 3, "other": 1})
    created = Model(state)  # adopts the applications' first revisions and tokens
    monkeypatch.setattr(created._watcher, "pod_ready", lambda unit: unit.number != 1)
    return created


def api(model: Model) -> KubeApi:
    return KubeApi(model.state, threading.RLock(), model._watcher.pod_ready)


def bearer(model: Model, app: str) -> str:
    return f"Bearer {model.apps[app].api_token}"


STS = "/apis/apps/v1/namespaces/k8s/statefulsets/web"


def get(model: Model, path: str, app: str = "web") -> tuple[int, dict[str, Any]]:
    return api(model).handle("GET", path, bearer(model, app), "", b"")


def patch(
    model: Model, body: Any, content_type: str = statefulset.STRATEGIC_PATCH, app: str = "web", path: str = STS
) -> tuple[int, dict[str, Any]]:
    return api(model).handle("PATCH", path, bearer(model, app), content_type, json.dumps(body).encode())


def partition_patch(value: Any) -> dict[str, Any]:
    return {"spec": {"updateStrategy": {"rollingUpdate": {"partition": value}}}}


def doc(model: Model) -> dict[str, Any]:
    return statefulset.statefulset_doc(model.state, model.apps["web"], {})


# ---------------------------------------------------------------------- patches


@pytest.mark.parametrize("content_type", [statefulset.STRATEGIC_PATCH, statefulset.MERGE_PATCH])
def test_a_merge_patch_moves_the_partition(model: Model, content_type: str) -> None:
    assert patched_partition(doc(model), content_type, partition_patch(2)) == 2
    assert patched_partition(doc(model), content_type + "; charset=utf-8", partition_patch(0)) == 0


def test_a_json_patch_moves_the_partition(model: Model) -> None:
    path = "/spec/updateStrategy/rollingUpdate/partition"
    operations = [{"op": "test", "path": path, "value": 0}, {"op": "replace", "path": path, "value": 3}]
    assert patched_partition(doc(model), statefulset.JSON_PATCH, operations) == 3


def test_removing_the_partition_means_zero_and_unchanged_fields_pass(model: Model) -> None:
    # Given a StatefulSet whose partition is 2
    model.apps["web"].partition = 2
    # When a patch deletes it (null), or carries fields with the values they have
    unchanged = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"}, **partition_patch(None)}
    # Then the partition is Kubernetes' default, 0
    assert patched_partition(doc(model), statefulset.MERGE_PATCH, unchanged) == 0


def test_a_patch_of_the_status_is_ignored(model: Model) -> None:
    body = {"status": {"replicas": 7}, **partition_patch(1)}
    assert patched_partition(doc(model), statefulset.STRATEGIC_PATCH, body) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"spec": {"replicas": 5}}, "spec.replicas"),
        ({"spec": {"updateStrategy": {"type": "OnDelete"}}}, "spec.updateStrategy.type"),
        ({"metadata": {"labels": {"extra": "x"}}}, "metadata.labels.extra"),
        ({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}}}}, "maxUnavailable"),
        ({"spec": {"$patch": "replace"}}, "spec.$patch"),
        (partition_patch(-1), "must be greater than or equal to 0"),
        (partition_patch("2"), "must be an integer"),
        (partition_patch(True), "must be an integer"),
    ],
)
def test_anything_but_a_valid_partition_is_invalid(model: Model, body: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiStatusError) as refused:
        patched_partition(doc(model), statefulset.STRATEGIC_PATCH, body)
    assert (refused.value.code, refused.value.reason) == (422, "Invalid")
    assert refused.value.message.startswith('StatefulSet.apps "web" is invalid: ')
    assert field in refused.value.message


def test_a_bad_json_patch_is_invalid_and_server_side_apply_unsupported(model: Model) -> None:
    with pytest.raises(ApiStatusError) as bad:
        patched_partition(doc(model), statefulset.JSON_PATCH, [{"op": "move", "path": "/spec", "from": "/x"}])
    assert bad.value.code == 422
    with pytest.raises(ApiStatusError) as apply:
        patched_partition(doc(model), statefulset.APPLY_PATCH, partition_patch(1))
    assert apply.value.code == 415


# ---------------------------------------------------------------------- authentication and authorization


def test_a_request_without_a_known_token_is_unauthorized(model: Model) -> None:
    for authorization in (None, "Bearer not-a-token", f"Basic {model.apps['web'].api_token}"):
        code, body = api(model).handle("GET", STS, authorization, "", b"")
        assert code == 401
        assert body == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }


def test_an_untrusted_application_is_forbidden_naming_its_service_account(model: Model) -> None:
    # When the untrusted application reads its StatefulSet, patches it, and reads a pod
    reads = get(model, STS)
    patches = patch(model, partition_patch(1))
    pod = get(model, "/api/v1/namespaces/k8s/pods/web-0")

    # Then each is Forbidden, as Kubernetes words it, and nothing changed
    assert reads[0] == patches[0] == pod[0] == 403
    assert reads[1]["reason"] == "Forbidden"
    assert reads[1]["message"] == (
        'statefulsets.apps "web" is forbidden: User "system:serviceaccount:k8s:web" cannot get resource '
        '"statefulsets" in API group "apps" in the namespace "k8s"'
    )
    assert "cannot patch resource" in patches[1]["message"]
    assert pod[1]["message"] == (
        'pods "web-0" is forbidden: User "system:serviceaccount:k8s:web" cannot get resource "pods" '
        'in API group "" in the namespace "k8s"'
    )
    assert model.apps["web"].partition == 0


def test_a_trusted_application_reads_its_statefulset_and_pods(model: Model) -> None:
    # Given the application trusted (juju trust --scope=cluster)
    model.trust("web")

    # When it reads its StatefulSet and a pod
    code, found = get(model, STS)
    pod_code, pod = get(model, "/api/v1/namespaces/k8s/pods/web-1")

    # Then it gets them, with the rollout's figures and the pod's revision and readiness
    assert code == pod_code == 200
    revision = model.apps["web"].current_revision
    assert REVISION.match(revision)
    assert found["metadata"]["name"] == "web"
    assert found["spec"]["replicas"] == 3
    assert found["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert {k: found["status"][k] for k in ("replicas", "readyReplicas", "updatedReplicas")} == {
        "replicas": 3,
        "readyReplicas": 2,  # web/1 is not ready here
        "updatedReplicas": 3,
    }
    assert found["status"]["currentRevision"] == found["status"]["updateRevision"] == revision
    assert pod["metadata"]["name"] == "web-1"
    assert pod["metadata"]["labels"]["controller-revision-hash"] == revision
    assert pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "1"
    assert pod["status"]["conditions"][0] == {"type": "Ready", "status": "False"}


def test_trust_is_per_application_and_cluster_wide(model: Model) -> None:
    # Given "other" trusted and "web" not
    model.trust("other")

    # When each patches the other's StatefulSet
    by_other = patch(model, partition_patch(2), app="other")
    by_web = patch(model, partition_patch(1), app="web", path="/apis/apps/v1/namespaces/k8s/statefulsets/other")

    # Then the trusted one may, and the untrusted one's token is refused as its own account
    assert by_other[0] == 200
    assert by_other[1]["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 2
    assert model.apps["web"].partition == 2
    assert by_web[0] == 403
    assert 'User "system:serviceaccount:k8s:web"' in by_web[1]["message"]
    # And trust taken away again forbids it
    model.trust("other", remove=True)
    assert patch(model, partition_patch(0), app="other")[0] == 403


def test_unknown_names_and_paths_are_not_found(model: Model) -> None:
    model.trust("web")
    assert get(model, "/apis/apps/v1/namespaces/k8s/statefulsets/nope")[1]["message"] == (
        'statefulsets.apps "nope" not found'
    )
    assert get(model, "/api/v1/namespaces/k8s/pods/web-7")[1]["message"] == 'pods "web-7" not found'
    assert get(model, "/api/v1/namespaces/elsewhere/pods/web-0")[0] == 404
    code, body = get(model, "/api/v1/namespaces/k8s/services/web")
    assert (code, body["reason"], body["kind"]) == (404, "NotFound", "Status")
    assert api(model).handle("DELETE", STS, bearer(model, "web"), "", b"")[0] == 405


def test_a_patch_moves_the_partition_unless_it_is_a_dry_run(model: Model) -> None:
    model.trust("web")
    generation = model.apps["web"].generation
    body = json.dumps(partition_patch(1)).encode()
    code, dry = api(model).handle("PATCH", STS + "?dryRun=All", bearer(model, "web"), statefulset.MERGE_PATCH, body)
    assert code == 200
    assert dry["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 1
    assert model.apps["web"].partition == 0
    code, done = patch(model, partition_patch(2))
    assert code == 200
    assert model.apps["web"].partition == 2
    assert done["metadata"]["generation"] == generation + 1
    code, refused = patch(model, partition_patch(-3))
    assert (code, refused["reason"]) == (422, "Invalid")
    assert model.apps["web"].partition == 2


# ---------------------------------------------------------------------- revisions and the partition


def test_revision_names_are_kubernetes_style_and_deterministic() -> None:
    first = statefulset.revision_name("web", 1, "/charms/greeter", {"file": "abc"})
    assert REVISION.match(first)
    assert first == statefulset.revision_name("web", 1, "/charms/greeter", {"file": "abc"})
    assert first != statefulset.revision_name("web", 2, "/charms/greeter", {"file": "abc"})
    assert first != statefulset.revision_name("web", 1, "/charms/greeter", {"file": "abe"})


def test_pods_at_or_above_the_partition_get_the_update_revision(model: Model) -> None:
    # Given a new template and partition 2 of 3
    app = model.apps["web"]
    old = app.current_revision
    new = statefulset.new_template(app, app.charm)
    app.partition = 2
    units = [model.units[u] for u in app.units]

    # Then only ordinal 2 is to be replaced, and a new pod's revision follows its ordinal
    assert (app.current_revision, app.update_revision) == (old, new)
    assert [statefulset.revision_for_ordinal(app, n) for n in range(4)] == [old, old, new, new]
    following = statefulset.next_to_update(app, units)
    assert following is not None
    assert following.name == "web/2"
    # When it runs the new revision, the update is held by the partition, not done
    following.revision = new
    assert statefulset.next_to_update(app, units) is None
    assert not statefulset.rolling(app, units)
    assert not statefulset.complete_if_done(app, units)
    assert app.current_revision == old
    # And once the partition is 0 and every pod runs it, it is the current revision
    app.partition = 0
    assert [u.name for u in units if u is statefulset.next_to_update(app, units)] == ["web/1"]
    for unit in units:
        unit.revision = new
    assert statefulset.complete_if_done(app, units)
    assert app.current_revision == new
    assert list(app.revisions) == [new]


def test_the_rollout_replaces_the_highest_pod_at_or_above_the_partition(model: Model) -> None:
    # Given a refresh with the partition at 2 (the pods are only described: nothing is driven)
    model.set_partition("web", 2, settle=False)
    model.refresh("web", GREETER, settle=False)

    # When the StatefulSet controller looks
    with model._lock:
        model._scheduler._advance_rollouts()

    # Then only web/2 is being replaced
    queued = {name: [type(i).__name__ for i in model.units[name].queue] for name in model.apps["web"].units}
    assert queued == {"web/0": [], "web/1": [], "web/2": ["EventSpec", "PodAction"]}
    assert model.apps["web"].replacing == "web/2"

    # When it is back on the new revision and ready, and the partition still 2
    unit = model.units["web/2"]
    unit.queue.clear()
    unit.revision = model.apps["web"].update_revision
    with model._lock:
        model._scheduler._advance_rollouts()

    # Then nothing else is replaced, and the view says so
    view = model.statefulset("web")
    assert (view.partition, view.rolling, view.updated) == (2, False, ["web/2"])
    assert view.current_revision != view.update_revision
    assert model.pod_revision("web/0") == view.current_revision

    # When the partition is lowered, the next pod goes without another refresh
    model.set_partition("web", 0, settle=False)
    with model._lock:
        model._scheduler._advance_rollouts()
    assert any(isinstance(i, PodAction) for i in model.units["web/1"].queue)
    assert model.statefulset("web").rolling


def test_the_partition_and_revisions_are_kept_with_the_model(model: Model) -> None:
    # Given a partition and a new revision
    model.set_partition("web", 1, settle=False)
    model.refresh("web", GREETER, settle=False)
    before = model.statefulset("web")

    # When the model is saved and loaded
    model.save()
    loaded = Model(persistence.load("k8s"))

    # Then they are as they were, with each pod's revision and the application's token
    assert loaded.statefulset("web") == before
    assert loaded.apps["web"].api_token == model.apps["web"].api_token
    assert "web-" in loaded.status()


def test_a_model_saved_before_revisions_adopts_its_template(model: Model) -> None:
    # Given an application pickled as before revisions existed
    app = model.apps["web"]
    legacy = dict(app.__dict__, rollout=["web/2"])
    for key in ("revisions", "current_revision", "update_revision", "partition", "api_token"):
        legacy.pop(key)
    restored = AppState.__new__(AppState)
    restored.__setstate__(legacy)

    # Then it loads with no revision, and the model adopts one for it and its pods
    assert (restored.partition, restored.update_revision, restored.revisions) == (0, "", {})
    model.apps["web"] = restored
    for name in restored.units:
        model.units[name].revision = ""
    model._adopt_revisions()
    assert REVISION.match(restored.current_revision)
    assert {model.pod_revision(u) for u in restored.units} == {restored.current_revision}
    assert restored.api_token
    assert pickle.loads(pickle.dumps(restored)).update_revision == restored.update_revision  # noqa: S301


def test_a_negative_partition_is_refused(model: Model) -> None:
    with pytest.raises(SandboxError, match="greater than or equal to 0"):
        model.set_partition("web", -1, settle=False)


# ---------------------------------------------------------------------- how charm code finds the server


def test_the_kubeconfig_is_private_and_lightkube_reads_it(tmp_path: Path) -> None:
    # Given a pod's kubeconfig
    path = tmp_path / "kube" / "config"
    write_private(path, kubeconfig("http://10.97.0.1:40000", "k8s", "web", "secret-token"))

    # Then only its owner reads it, and lightkube finds the server, token and namespace in it
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    single = KubeConfig.from_file(path).get()
    assert single is not None
    assert single.cluster.server == "http://10.97.0.1:40000"
    assert single.user is not None
    assert single.user.token == "secret-token"
    assert single.namespace == "k8s"


@pytest.fixture
def served(model: Model) -> Iterator[str]:
    """The model's API over HTTP on this machine's loopback (pods reach it on their bridge)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    server = _Server(sock, api(model))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def client(model: Model, url: str, app: str) -> Client:
    config = KubeConfig.from_dict(yaml.safe_load(kubeconfig(url, "k8s", app, model.apps[app].api_token)))
    return Client(config=config, field_manager=app)


def test_lightkube_drives_the_partition_over_http(model: Model, served: str) -> None:
    # Given the application trusted
    model.trust("web")
    kube = client(model, served, "web")

    # When lightkube patches the partition (its default strategic merge patch) and reads back
    kube.patch(StatefulSet, "web", partition_patch(2))
    found = kube.get(StatefulSet, "web")
    pod = kube.get(PodResource, "web-2")
    kube.patch(StatefulSet, "web", partition_patch(1), patch_type=PatchType.MERGE)
    path = "/spec/updateStrategy/rollingUpdate/partition"
    kube.patch(StatefulSet, "web", [{"op": "replace", "path": path, "value": 0}], patch_type=PatchType.JSON)

    # Then the model's StatefulSet moved, and lightkube parsed what it got
    assert found.spec is not None
    assert found.spec.updateStrategy is not None
    assert found.spec.updateStrategy.rollingUpdate is not None
    assert found.spec.updateStrategy.rollingUpdate.partition == 2
    assert found.status is not None
    assert found.status.updateRevision == model.apps["web"].update_revision
    assert pod.metadata is not None
    assert pod.metadata.labels is not None
    assert pod.metadata.labels["apps.kubernetes.io/pod-index"] == "2"
    assert model.apps["web"].partition == 0


def test_lightkube_raises_the_apis_refusals(model: Model, served: str) -> None:
    # Given "web" untrusted
    kube = client(model, served, "web")

    # When it reads its StatefulSet, lightkube raises ApiError with the Status
    with pytest.raises(ApiError) as forbidden:
        kube.get(StatefulSet, "web")
    assert forbidden.value.status.code == 403
    assert forbidden.value.status.reason == "Forbidden"

    # And once trusted, an invalid patch is Invalid and an unknown pod NotFound
    model.trust("web")
    with pytest.raises(ApiError) as invalid:
        kube.patch(StatefulSet, "web", {"spec": {"replicas": 9}})
    assert invalid.value.status.code == 422
    with pytest.raises(ApiError) as missing:
        kube.get(PodResource, "web-9")
    assert missing.value.status.code == 404


# ---------------------------------------------------------------------- charm dependencies


def test_every_charms_pins_are_in_the_sandboxs_runtime() -> None:
    # Given the sandbox's charm runtime (requirements/unit.txt, what tox installs)
    runtime = read_pins(REPO / "requirements" / "unit.txt")

    # Then every charm's pinned package is there at its version (lightkube among them)
    charms = [*REPO.glob("charms/*"), *REPO.glob("tests/sandbox/charms/*")]
    for charm in charms:
        for name, version in pinned_requirements(charm).items():
            assert runtime.get(name) == version, f"{charm.name} needs {name}=={version}"
    for charm in ("charms/pulsar-k8s", "charms/bookie-k8s", "tests/sandbox/charms/greeter-k8s"):
        assert pinned_requirements(REPO / charm)["lightkube"] == "1.0.1"


def test_a_charm_whose_pins_are_not_installed_is_named(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("# pins\nops==3.9.0\npsycopg[binary]==3.3.9\nlightkube==1.0.1\n")
    installed = {"ops": "3.9.0", "psycopg": "3.3.9"}
    assert missing_requirements(tmp_path, installed.get) == ["lightkube==1.0.1"]


# ---------------------------------------------------------------------- the command line


def test_the_cli_trusts_moves_the_partition_and_shows_it(model: Model, capsys: pytest.CaptureFixture[str]) -> None:
    # Given the model where the command line finds it
    model.save()

    # When the user trusts the application and sets its partition
    assert cli.main(["-m", "k8s", "trust", "web"]) == 0
    assert cli.main(["-m", "k8s", "set-partition", "web", "2"]) == 0
    assert cli.main(["-m", "k8s", "set-partition", "web", "-1"]) == 1
    capsys.readouterr()
    assert cli.main(["-m", "k8s", "status"]) == 0
    shown = capsys.readouterr().out

    # Then both are kept with the model, and status shows the partition and each pod's revision
    loaded = Model(persistence.load("k8s"))
    assert loaded.apps["web"].trusted
    assert loaded.statefulset("web").partition == 2
    revision = loaded.statefulset("web").current_revision
    lines = shown.splitlines()
    table = lines.index(next(line for line in lines if line.startswith("StatefulSet ")))
    row = next(line.split() for line in lines[table:] if line.startswith("web "))
    assert row == ["web", "3", "0", "3", "2", revision, revision]  # no pod is ready: none runs here
    assert revision in next(line for line in shown.splitlines() if line.startswith("web/0"))
    assert cli.main(["-m", "k8s", "trust", "web", "--remove"]) == 0
    assert not Model(persistence.load("k8s")).apps["web"].trusted
