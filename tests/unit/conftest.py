"""Load the four charms side by side in one test process.

Each charm is written as Juju runs it: `src/` and `lib/` on the path, flat module names
(`charm`, `literals`, `workload`, `managers`, `charms.*`). Four such charms collide in one
process. Here each charm is imported once, in isolation, and its modules are registered
under a package named after the charm: `pulsar_k8s.charm`, `pulsar_k8s.literals`,
`bookie_k8s.workload`, `pulsar_k8s.charms.pulsar_k8s.v0.pulsar_workload`, ...

Tests import from those names; the charms themselves are unchanged. Module objects keep
the references they bound at import time, so each charm keeps seeing its own modules.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

CHARMS_DIR = Path(__file__).resolve().parents[2] / "charms"


def _top_level_names(*roots: Path) -> set[str]:
    names = set()
    for root in roots:
        for entry in root.iterdir() if root.is_dir() else []:
            if entry.suffix == ".py":
                names.add(entry.stem)
            elif entry.is_dir() and not entry.name.startswith(("_", ".")):
                names.add(entry.name)
    return names


def _module_names(root: Path) -> list[str]:
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts:
            names.append(".".join(parts))
    return names


def _rename(module: types.ModuleType, new_name: str) -> None:
    """Give a module, and the classes and functions it defines, their name under the alias.

    `inspect.getfile` (which ops.testing uses to find charmcraft.yaml) and pickle look a
    class up through `sys.modules[cls.__module__]`, so the names must match the registry.
    """
    old_name = module.__name__
    for value in vars(module).values():
        if isinstance(value, (type, types.FunctionType)) and value.__module__ == old_name:
            value.__module__ = new_name
    module.__name__ = new_name


def load_charm(charm_dir: Path, alias: str) -> types.ModuleType:
    """Import one charm's src/ and lib/ in isolation and expose them under `alias`."""
    src, lib = charm_dir / "src", charm_dir / "lib"
    owned = _top_level_names(src, lib)

    def is_owned(name: str) -> bool:
        return name.split(".")[0] in owned

    saved = {name: module for name, module in sys.modules.items() if is_owned(name)}
    for name in saved:
        del sys.modules[name]
    sys.path[:0] = [str(src), str(lib)]
    try:
        for name in _module_names(src) + _module_names(lib):
            importlib.import_module(name)
        loaded = {name: module for name, module in sys.modules.items() if is_owned(name)}
    finally:
        sys.path.remove(str(src))
        sys.path.remove(str(lib))
        for name in [n for n in sys.modules if is_owned(n)]:
            del sys.modules[name]
        sys.modules.update(saved)

    package = types.ModuleType(alias, f"modules of the {charm_dir.name} charm")
    package.__path__ = []  # a package, so that `alias.x.y` imports resolve through sys.modules
    sys.modules[alias] = package
    for name in sorted(loaded):
        _rename(loaded[name], f"{alias}.{name}")
        sys.modules[f"{alias}.{name}"] = loaded[name]
        parent_name, _, child = f"{alias}.{name}".rpartition(".")
        parent = sys.modules.get(parent_name)
        if parent is None:  # namespace packages such as `charms` have no module of their own here
            parent = types.ModuleType(parent_name)
            parent.__path__ = []
            sys.modules[parent_name] = parent
        setattr(parent, child, loaded[name])
    return package


for _charm_dir in sorted(CHARMS_DIR.iterdir()):
    if (_charm_dir / "charmcraft.yaml").is_file():
        load_charm(_charm_dir, _charm_dir.name.replace("-", "_"))


# ---------------------------------------------------------------- shared fixtures

import pytest  # noqa: E402

RESOLV_CONF = "search test.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"


@pytest.fixture(autouse=True)
def resolv_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The pod's resolv.conf, as Kubernetes writes it for a pod of model `test`.

    The charms read it from the charm container's /etc/resolv.conf; here every charm's copy
    of the workload library reads this file instead (tests may rewrite it).
    """
    path = tmp_path / "resolv.conf"
    path.write_text(RESOLV_CONF)
    for alias in ("pulsar_k8s", "bookie_k8s", "loadgen_k8s", "cdc_k8s"):
        library = sys.modules[f"{alias}.charms.pulsar_k8s.v0.pulsar_workload"]
        monkeypatch.setattr(library, "RESOLV_CONF", path)
    return path


@pytest.fixture
def pulsar_image(tmp_path: Path) -> Path:
    """A minimal stand-in for the image's /pulsar tree, to mount into a test container."""
    root = tmp_path / "pulsar-image"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "pulsar").write_text("#!/bin/sh\n")
    (root / "lib").mkdir()
    (root / "lib" / "org.apache.pulsar-pulsar-broker-common-4.0.8.jar").write_bytes(b"")
    return root


# ---------------------------------------------------------------- ops.testing and union types

from sandbox import scenario_compat  # noqa: E402

scenario_compat.check_union_param_types()
