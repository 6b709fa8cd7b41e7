"""An application's StatefulSet as Kubernetes keeps it: revisions, the rolling-update partition.

Juju runs each application as a StatefulSet named after it. Every change of the pod template
(a refresh to a new charm, a new file resource) is a new controller revision. The rolling
update replaces, highest ordinal first and one at a time, the pods whose ordinal is at or above
the partition and that run an older revision; pods below the partition keep the revision
they run (`currentRevision`) until the partition is lowered. Once every pod runs the newest
revision (`updateRevision`), it is the current one.

Everything here is pure: the model (`model.py`), the scheduler and the API server
(`kubeapi.py`) call it under the model lock.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.charmspec import CharmSpec
    from sandbox.state import AppState, ModelState, UnitState

# Juju's container for the unit agent and the charm, in every pod of a sidecar charm.
CHARM_CONTAINER = "charm"
PARTITION_PATH = ("spec", "updateStrategy", "rollingUpdate", "partition")


class ApiStatusError(Exception):
    """A request the API server refuses, as a Kubernetes `Status` (code, reason, message)."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


# ------------------------------------------------------------------ revisions


def revision_name(app: str, generation: int, charm_root: str, resources: dict[str, str]) -> str:
    """A controller revision's name, `<app>-<10 hex>`: deterministic from the template and its number."""
    template = "\n".join([app, str(generation), charm_root, *(f"{k}={v}" for k, v in sorted(resources.items()))])
    return f"{app}-{hashlib.sha256(template.encode()).hexdigest()[:10]}"


def new_template(app: AppState, charm: CharmSpec) -> str:
    """The pod template changed: a new revision becomes the update revision; returns it.

    The current revision stays what the pods ran before (a first template is both). Its
    containers run the attached images, or else the charm's upstream-source. Revisions no pod
    can be created from any more are forgotten.
    """
    app.template_generation += 1
    fingerprints = {name: rev.fingerprint for name, rev in app.resources.items()}
    images = {name: rev.reference for name, rev in app.images.items()}
    name = revision_name(app.name, app.template_generation, str(charm.root), {**fingerprints, **images})
    app.revisions[name] = charm.with_images(images)
    app.update_revision = name
    if not app.current_revision:
        app.current_revision = name
    app.generation += 1
    _forget_unused(app)
    return name


def _forget_unused(app: AppState) -> None:
    for name in [n for n in app.revisions if n not in (app.current_revision, app.update_revision)]:
        del app.revisions[name]


def revision_for_ordinal(app: AppState, ordinal: int) -> str:
    """The revision a new pod of this ordinal is created from (Kubernetes' newVersionedStatefulSetPod)."""
    return app.update_revision if ordinal >= app.partition else app.current_revision


def next_to_update(app: AppState, units: list[UnitState]) -> UnitState | None:
    """The pod the rolling update replaces next: the highest ordinal >= partition not on the update revision."""
    behind = [u for u in units if u.number >= app.partition and u.revision != app.update_revision and not u.dying]
    return max(behind, key=lambda u: u.number, default=None)


def rolling(app: AppState, units: list[UnitState]) -> bool:
    """Whether the rolling update still has work to do (pods held back by the partition do not count)."""
    return app.replacing is not None or next_to_update(app, units) is not None


def complete_if_done(app: AppState, units: list[UnitState]) -> bool:
    """Once every pod runs the update revision, it becomes the current revision; says whether it did now."""
    if app.current_revision == app.update_revision or app.replacing is not None:
        return False
    if any(u.revision != app.update_revision for u in units):
        return False
    app.current_revision = app.update_revision
    _forget_unused(app)
    return True


def set_partition(app: AppState, partition: int) -> None:
    if partition != app.partition:
        app.partition = partition
        app.generation += 1


@dataclass(frozen=True)
class StatefulSetView:
    """What a test reads of an application's StatefulSet (`Model.statefulset`)."""

    name: str
    replicas: int
    partition: int
    current_revision: str
    update_revision: str
    pod_revisions: dict[str, str]  # unit -> the revision its pod was created from
    rolling: bool  # pods at or above the partition still to replace

    @property
    def updated(self) -> list[str]:
        return sorted(u for u, rev in self.pod_revisions.items() if rev == self.update_revision)


def view(model: ModelState, app: AppState) -> StatefulSetView:
    units = model.app_units(app.name)
    return StatefulSetView(
        name=app.name,
        replicas=len(model.alive_units(app.name)),
        partition=app.partition,
        current_revision=app.current_revision,
        update_revision=app.update_revision,
        pod_revisions={u.name: u.revision for u in units},
        rolling=rolling(app, units),
    )


# ------------------------------------------------------------------ the served objects


def _labels(app: str) -> dict[str, str]:
    # Juju's selector labels on every pod of an application.
    return {"app.kubernetes.io/name": app}


def _containers(charm: CharmSpec) -> list[dict[str, Any]]:
    containers = [{"name": CHARM_CONTAINER, "image": "jujusolutions/charm-base:ubuntu-24.04"}]
    containers += [
        {"name": name, "image": spec.upstream_source or "unknown"} for name, spec in sorted(charm.containers.items())
    ]
    return containers


def statefulset_doc(model: ModelState, app: AppState, ready: dict[str, bool]) -> dict[str, Any]:
    """The StatefulSet as the API serves it; `ready` is each unit's pod Ready condition."""
    units = model.app_units(app.name)
    charm = app.revisions.get(app.update_revision, app.charm)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": app.name,
            "namespace": model.name,
            "generation": app.generation,
            "labels": {"app.kubernetes.io/managed-by": "juju", **_labels(app.name)},
        },
        "spec": {
            "replicas": len(model.alive_units(app.name)),
            "selector": {"matchLabels": _labels(app.name)},
            "serviceName": f"{app.name}-endpoints",
            "podManagementPolicy": "Parallel",
            "template": {
                "metadata": {"labels": _labels(app.name)},
                "spec": {"containers": _containers(charm)},
            },
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": app.partition}},
        },
        "status": {
            "observedGeneration": app.generation,
            "replicas": len(units),
            "readyReplicas": sum(1 for u in units if ready.get(u.name)),
            "availableReplicas": sum(1 for u in units if ready.get(u.name)),
            "currentReplicas": sum(1 for u in units if u.revision == app.current_revision),
            "updatedReplicas": sum(1 for u in units if u.revision == app.update_revision),
            "currentRevision": app.current_revision,
            "updateRevision": app.update_revision,
            "collisionCount": 0,
        },
    }


def pod_doc(model: ModelState, unit: UnitState, ready: bool) -> dict[str, Any]:
    """One unit's pod as the API serves it."""
    running = unit.pod.agent is not None and unit.agent_status != "allocating"
    condition = "True" if ready else "False"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": unit.pod.hostname,
            "namespace": model.name,
            "labels": {
                **_labels(unit.app),
                "controller-revision-hash": unit.revision,
                "apps.kubernetes.io/pod-index": str(unit.number),
                "statefulset.kubernetes.io/pod-name": unit.pod.hostname,
            },
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": unit.app, "uid": "", "controller": True}
            ],
        },
        "spec": {
            "containers": _containers(unit.charm),
            "hostname": unit.pod.hostname,
            "subdomain": f"{unit.app}-endpoints",
        },
        "status": {
            "phase": "Running" if running else "Pending",
            "podIP": unit.pod.address,
            "conditions": [
                {"type": "Ready", "status": condition},
                {"type": "ContainersReady", "status": condition},
            ],
        },
    }


# ------------------------------------------------------------------ patches

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 merge: a map merges key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge(merged.get(key), value)
    return merged


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 on maps (the served objects' lists are not patchable here): add, replace, remove, test."""
    if not isinstance(operations, list):
        raise ValueError("a JSON patch is a list of operations")
    doc = copy.deepcopy(doc)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise ValueError(f"invalid JSON patch operation {operation!r}")
        op, parts = operation["op"], _pointer(str(operation["path"]))
        if not parts:
            raise ValueError("the whole object cannot be patched")
        parent = doc
        for part in parts[:-1]:
            if not isinstance(parent, dict) or part not in parent:
                raise ValueError(f"path {operation['path']} not found")
            parent = parent[part]
        if not isinstance(parent, dict):
            raise ValueError(f"path {operation['path']} is not in an object")
        last = parts[-1]
        if op == "test":
            if parent.get(last) != operation.get("value"):
                raise ValueError(f"test failed at {operation['path']}")
        elif op in ("add", "replace"):
            if op == "replace" and last not in parent:
                raise ValueError(f"path {operation['path']} not found")
            parent[last] = copy.deepcopy(operation.get("value"))
        elif op == "remove":
            if last not in parent:
                raise ValueError(f"path {operation['path']} not found")
            del parent[last]
        else:
            raise ValueError(f"JSON patch operation {op!r} not supported")
    return doc


def _differences(before: Any, after: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[tuple[str, ...]] = []
        for key in sorted(set(before) | set(after), key=str):
            found += _differences(before.get(key), after.get(key), (*path, str(key)))
        return found
    return [] if before == after else [path]


def patched_partition(doc: dict[str, Any], content_type: str, patch: Any) -> int:
    """The partition a PATCH of the served StatefulSet `doc` asks for.

    The patch may change `spec.updateStrategy.rollingUpdate.partition` only (removing it
    means 0, Kubernetes' default); any other change to what the sandbox does not model is
    Invalid (422). The status is a subresource: a patch of it here is ignored, as Kubernetes
    ignores it.
    """
    name = doc["metadata"]["name"]
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        if kind in (MERGE_PATCH, STRATEGIC_PATCH):
            if not isinstance(patch, dict):
                raise ValueError("a merge patch is a JSON object")
            after = _merge(doc, patch)
        elif kind == JSON_PATCH:
            after = _json_patch(doc, patch)
        else:
            raise ApiStatusError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_PATCH}",
            )
    except ValueError as error:
        raise ApiStatusError(422, "Invalid", f'StatefulSet.apps "{name}" is invalid: {error}') from None
    if not isinstance(after, dict):
        raise _invalid(name, "metadata", "the patched object is not an object")
    after["status"] = doc["status"]
    for changed in _differences(doc, after):
        if changed[: len(PARTITION_PATH)] != PARTITION_PATH:
            field = ".".join(changed)
            raise _invalid(name, field, "the sandbox's StatefulSet allows changing only " + ".".join(PARTITION_PATH))
    partition: Any = after
    for key in PARTITION_PATH:
        partition = partition.get(key) if isinstance(partition, dict) else None
    if partition is None:
        return 0
    if isinstance(partition, bool) or not isinstance(partition, int):
        raise _invalid(name, ".".join(PARTITION_PATH), f"Invalid value: {partition!r}: must be an integer")
    if partition < 0:
        raise _invalid(
            name, ".".join(PARTITION_PATH), f"Invalid value: {partition}: must be greater than or equal to 0"
        )
    return partition


def _invalid(name: str, field: str, detail: str) -> ApiStatusError:
    message = f'StatefulSet.apps "{name}" is invalid: {field}: {detail}'
    details = {"name": name, "group": "apps", "kind": "StatefulSet", "causes": [{"field": field, "message": detail}]}
    return ApiStatusError(422, "Invalid", message, details)


# ------------------------------------------------------------------ authorization


def service_account(namespace: str, app: str) -> str:
    """The user a request of the application's pods authenticates as (Juju names the account after the app)."""
    return f"system:serviceaccount:{namespace}:{app}"


def authorize(
    namespace: str, app: str, trusted: bool, verb: str, resource: str, group: str, name: str, target_ns: str
) -> None:
    """RBAC as Juju sets it: a trusted application's account has cluster-wide rights, another none here."""
    if trusted:
        return
    qualified = f"{resource}.{group}" if group else resource
    where = f' in the namespace "{target_ns}"'
    raise ApiStatusError(
        403,
        "Forbidden",
        f'{qualified} "{name}" is forbidden: User "{service_account(namespace, app)}" cannot {verb} '
        f'resource "{resource}" in API group "{group}"{where}',
        {"name": name, "group": group, "kind": resource},
    )
