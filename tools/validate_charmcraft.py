"""Validate every charmcraft.yaml with charmcraft's own project model.

`charmcraft pack` needs an Ubuntu host with LXD or Multipass; the model it validates a
project with does not, so this runs the same validation (after charmcraft's own
preprocessing of platform shorthands and extensions) on any machine.
"""

from __future__ import annotations

import keyword
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from charmcraft import extensions, parts, preprocess
from charmcraft.models.config import JujuConfig
from charmcraft.models.project import CharmcraftProject

ROOT = Path(__file__).resolve().parent.parent
_ACTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9-_]*$")


def _validate(path: Path) -> str | None:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    try:
        preprocess.add_default_parts(data)
        preprocess.add_config(path.parent, data)
        preprocess.add_actions(path.parent, data)
        extensions.apply_extensions(path.parent, data)
        project = CharmcraftProject.unmarshal(data)
        # The project model keeps config as a plain mapping; `charmcraft pack` validates it
        # with this model when it writes config.yaml.
        if project.config:
            JujuConfig.model_validate(project.config)
    except Exception as error:  # noqa: BLE001 - report every model error, one file at a time
        return str(error).strip()
    if project.name != path.parent.name:
        return f"name {project.name!r} differs from its directory"
    return _juju_cross_checks(data)


def _juju_cross_checks(data: dict[str, Any]) -> str | None:
    """What Juju refuses at deploy time and the project model does not look at."""
    resources = data.get("resources") or {}
    storage = data.get("storage") or {}
    for name, container in (data.get("containers") or {}).items():
        resource = container.get("resource")
        if resource not in resources or resources[resource].get("type") != "oci-image":
            return f"container {name!r} needs an oci-image resource, got {resource!r}"
        for mount in container.get("mounts") or []:
            if mount.get("storage") not in storage:
                return f"container {name!r} mounts unknown storage {mount.get('storage')!r}"
    for name, spec in storage.items():
        if spec.get("type") not in ("filesystem", "block"):
            return f"storage {name!r} has type {spec.get('type')!r}: filesystem or block"
    for name, action in (data.get("actions") or {}).items():
        # charmcraft 4.5's JujuActions model fails on any input, so check what it means to.
        if not _ACTION_NAME.match(name) or keyword.iskeyword(name):
            return f"invalid action name {name!r}"
        if not isinstance(action, dict) or "description" not in action:
            return f"action {name!r} needs a description"
        for param, schema in (action.get("params") or {}).items():
            if not isinstance(schema, dict) or "type" not in schema:
                return f"action {name!r}: parameter {param!r} needs a JSON-schema type"
        for required in action.get("required") or []:
            if required not in (action.get("params") or {}):
                return f"action {name!r}: required parameter {required!r} is not declared"
    endpoints = [n for role in ("provides", "requires", "peers") for n in (data.get(role) or {})]
    if len(endpoints) != len(set(endpoints)):
        return f"endpoint names repeat across provides/requires/peers: {sorted(endpoints)}"
    return None


def main() -> int:
    parts.setup_parts()  # registers the `charm` plugin, as charmcraft does at start-up
    paths = sorted(ROOT.glob("charms/*/charmcraft.yaml")) + sorted(ROOT.glob("tests/**/charms/*/charmcraft.yaml"))
    failed = 0
    for path in paths:
        problem = _validate(path)
        print(f"{'ok  ' if problem is None else 'FAIL'} {path.relative_to(ROOT)}" + (f": {problem}" if problem else ""))
        failed += problem is not None
    if not paths:
        print("no charmcraft.yaml found")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
