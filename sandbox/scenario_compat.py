"""Where ops.testing (ops-scenario 8.9) and Juju disagree, narrow corrections for the sandbox and the unit tests.

- Action parameters typed as a JSON-schema list, such as loadgen-k8s's `rate: {type:
  [integer, string]}` (a number, or "max"): Juju and charmcraft accept them, ops.testing raises
  TypeError. `check_union_param_types` checks a value against any of the listed types.
- `type: secret` config options: ops.testing accepts only `secret:<id>`; Juju accepts every
  form of secret URI it parses, and "" for no secret. `accept_juju_secret_uris`.

The agent also installs, in the process that runs one event, what ops.testing cannot know
because it holds only the unit's own view of the model:

- `deny_hidden_secrets`: a secret that exists but that the unit may not read answers
  "permission denied" (ops raises ModelError), not "not found" (SecretNotFoundError).
- `record_secret_reads`: which secrets the charm got content of; Juju starts tracking a
  secret's revision for the unit then, and sends secret-changed only to units that track it.
- `serve_resources`: `resource-get` hands the unit its own copy of the file, and, when no file
  was ever attached, fails as Juju's does instead of ops.testing's RuntimeError.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from numbers import Number
from pathlib import Path
from typing import Any

import ops
from scenario import _consistency_checker, mocking

from sandbox.charmspec import SECRET_URI

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
    """Install the corrected action parameter check (idempotent)."""
    _consistency_checker._check_action_param_types = _check_action_param_types  # type: ignore[attr-defined]


def _is_juju_secret_uri(value: str | int | float | bool) -> bool:
    return value == "" or bool(SECRET_URI.match(str(value)))


def accept_juju_secret_uris() -> None:
    """Let a `type: secret` option hold what `juju config` accepts (idempotent)."""
    _consistency_checker._is_secret_identifier = _is_juju_secret_uri  # type: ignore[attr-defined]


def secret_key(secret_id: str) -> str:
    """The part of a secret URI that names the secret, whichever form the URI takes."""
    return secret_id.rsplit("/", 1)[-1].removeprefix("secret:")


def deny_hidden_secrets(hidden: frozenset[str]) -> None:
    """Reading a secret of `hidden` (by URI) fails with "permission denied", as on Juju."""
    keys = {secret_key(secret_id) for secret_id in hidden}
    find = mocking._MockModelBackend._get_secret

    def get_secret(self: Any, id: str | None = None, label: str | None = None) -> Any:
        try:
            return find(self, id, label)
        except ops.SecretNotFoundError:
            if id is not None and secret_key(id) in keys:
                raise ops.ModelError("ERROR permission denied") from None
            raise

    mocking._MockModelBackend._get_secret = get_secret  # type: ignore[method-assign]


def record_secret_reads() -> list[str]:
    """From now on, the id of each secret whose content the charm gets is appended to the list returned."""
    read: list[str] = []
    secret_get = mocking._MockModelBackend.secret_get

    def recording_secret_get(self: Any, *, id: str | None = None, label: str | None = None, **kwargs: Any) -> Any:
        content = secret_get(self, id=id, label=label, **kwargs)
        read.append(self._get_secret(id, label).id)
        return content

    mocking._MockModelBackend.secret_get = recording_secret_get  # type: ignore[method-assign]
    return read


def _not_attached(unit: str, app: str, name: str) -> ops.ModelError:
    # What Juju's resource-get answers for a resource of a local charm that was never uploaded.
    return ops.ModelError(
        "ERROR could not download resource: HTTP request failed: "
        f"Get https://.../units/unit-{unit.replace('/', '-')}/resources/{name}: resource#{app}/{name} not found"
    )


def _unit_copy(stored: Path, copy: Path) -> Path:
    """The unit's own copy of a stored resource file, brought up to date (Juju syncs it at each resource-get)."""
    if copy.is_file():
        have, want = copy.stat(), stored.stat()
        if have.st_size == want.st_size and have.st_mtime_ns == want.st_mtime_ns:
            return copy
    copy.parent.mkdir(parents=True, exist_ok=True)
    partial = copy.with_name(copy.name + ".partial")
    shutil.copy2(stored, partial)
    partial.rename(copy)
    return copy


def serve_resources(resource_dir: str | None) -> None:
    """`resource-get`: the unit's copy under `resource_dir`, or Juju's error when nothing was attached."""

    def resource_get(self: Any, resource_name: str) -> str:
        for resource in self._state.resources:
            if resource.name == resource_name:
                stored = Path(resource.path)
                if resource_dir is None:
                    return str(stored)
                return str(_unit_copy(stored, Path(resource_dir) / resource_name / stored.name))
        raise _not_attached(self.unit_name, self.app_name, resource_name)

    mocking._MockModelBackend.resource_get = resource_get  # type: ignore[method-assign]
