"""Loading a test charm's src/charm.py as a module of its own (test charms are not packages)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_charm_module(charm_dir: Path, name: str) -> ModuleType:
    """Import `charm_dir`/src/charm.py under `name` (registered, so ops.testing finds its classes)."""
    spec = importlib.util.spec_from_file_location(name, charm_dir / "src" / "charm.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
