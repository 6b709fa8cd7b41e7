"""One correction to ops.testing's consistency checks, shared by the sandbox's agent and the unit tests.

ops.testing (ops-scenario 8.9) raises TypeError on an action parameter typed as a JSON-schema
list, such as loadgen-k8s's `rate: {type: [integer, string]}` (a number, or "max"), which Juju
and charmcraft accept. `check_union_param_types` replaces that one check with one that checks
a value against any of the listed types, and otherwise does what the original does.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Number
from typing import Any

from scenario import _consistency_checker

_JSON_TYPES: dict[str, type] = {
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": Number,
    "array": Sequence,
    "object": dict,
}


def _check_action_param_types(charm_spec: Any, action: Any, errors: list[str], warnings: list[str]) -> None:
    params = ((charm_spec.actions or {}).get(action.name) or {}).get("params") or {}
    for name, value in action.params.items():
        declared = (params.get(name) or {}).get("type")
        if name not in params or not declared:
            errors.append(f"param {name} is not a valid parameter for {action.name}: missing from action specification")
            continue
        kinds = [declared] if isinstance(declared, str) else list(declared)
        expected = tuple(_JSON_TYPES.get(kind, object) for kind in kinds)
        if not isinstance(value, expected) or (isinstance(value, bool) and "boolean" not in kinds):
            errors.append(f"param {name} is of type {type(value)}: expecting {declared}")


def check_union_param_types() -> None:
    """Install the corrected check (idempotent)."""
    _consistency_checker._check_action_param_types = _check_action_param_types  # type: ignore[attr-defined]
