"""What the sandbox needs to know about a charm, read from its charmcraft.yaml."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from sandbox.errors import SandboxError

# Juju's config option types and the Python values that satisfy them.
_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int": (int,),
    "float": (float, int),
    "boolean": (bool,),
    "secret": (str,),
}

# A secret URI as Juju parses one: `secret:<id>`, `secret://<model uuid>/<id>`, or the bare id.
SECRET_URI = re.compile(
    r"^(?:secret:(?://[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/)?)?[0-9a-z]{20}$"
)

# JSON-schema types of action parameters.
_PARAM_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


@dataclass(frozen=True)
class Endpoint:
    """One relation endpoint of a charm."""

    name: str
    interface: str
    role: str  # "provides", "requires" or "peers"
    limit: int | None = None


@dataclass(frozen=True)
class ContainerSpec:
    """A workload container: its image resource and storage mounts."""

    name: str
    resource: str | None
    upstream_source: str | None
    mounts: dict[str, str] = field(default_factory=dict)  # storage name -> location


@dataclass(frozen=True)
class FileResource:
    """A `type: file` resource: what the charm gets from `resource-get` is named `filename`."""

    name: str
    filename: str


@dataclass(frozen=True)
class CharmSpec:
    """The parts of a charm's charmcraft.yaml that the sandbox acts on."""

    root: Path
    name: str
    raw: dict[str, Any]
    containers: dict[str, ContainerSpec]
    storage: dict[str, dict[str, Any]]
    endpoints: dict[str, Endpoint]
    config_options: dict[str, dict[str, Any]]
    actions: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, root: Path) -> CharmSpec:
        path = root / "charmcraft.yaml"
        if not path.is_file():
            raise SandboxError(f"{root} is not a charm: no charmcraft.yaml")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise SandboxError(f"{path} is not valid YAML: {error}".splitlines()[0]) from None
        missing = [key for key in ("name", "type", "summary", "description") if key not in raw]
        if missing or raw.get("type") != "charm":
            raise SandboxError(
                f"{path} is not a charm's charmcraft.yaml (missing: {', '.join(missing) or 'type: charm'})"
            )
        resources = raw.get("resources", {})
        containers = {}
        for name, spec in (raw.get("containers") or {}).items():
            resource = spec.get("resource")
            upstream = (resources.get(resource) or {}).get("upstream-source") if resource else None
            mounts = {m["storage"]: m["location"] for m in spec.get("mounts", [])}
            containers[name] = ContainerSpec(name, resource, upstream, mounts)
        endpoints = {}
        for role in ("provides", "requires", "peers"):
            for name, spec in (raw.get(role) or {}).items():
                endpoints[name] = Endpoint(name, spec["interface"], role, spec.get("limit"))
        return cls(
            root=root,
            name=raw["name"],
            raw=raw,
            containers=containers,
            storage=dict(raw.get("storage") or {}),
            endpoints=endpoints,
            config_options=dict((raw.get("config") or {}).get("options") or {}),
            actions=dict(raw.get("actions") or {}),
        )

    @property
    def file_resources(self) -> dict[str, FileResource]:
        """The charm's `type: file` resources (its oci-image ones are its containers' images)."""
        return {
            name: FileResource(name, str(spec.get("filename") or name))
            for name, spec in (self.raw.get("resources") or {}).items()
            if (spec or {}).get("type") == "file"
        }

    @property
    def image_resources(self) -> set[str]:
        """The charm's `type: oci-image` resources: each is a container's image."""
        return {c.resource for c in self.containers.values() if c.resource is not None}

    def upstream_image(self, resource: str) -> str | None:
        """The image an oci-image resource names by default (its upstream-source)."""
        return next((c.upstream_source for c in self.containers.values() if c.resource == resource), None)

    def with_images(self, images: dict[str, str]) -> CharmSpec:
        """The charm with attached images (resource -> image reference) in place of upstream-source."""
        containers = {
            name: replace(c, upstream_source=images.get(c.resource or "", c.upstream_source))
            for name, c in self.containers.items()
        }
        return replace(self, containers=containers)

    @property
    def peers(self) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.role == "peers"]

    def config_defaults(self) -> dict[str, Any]:
        return {k: v["default"] for k, v in self.config_options.items() if "default" in v}

    def parse_config(self, values: dict[str, str]) -> dict[str, Any]:
        """Turn `key=value` strings from a command line into typed config values."""
        typed: dict[str, Any] = {}
        for key, text in values.items():
            option = self._option(key)
            kind = option.get("type", "string")
            try:
                if kind == "int":
                    typed[key] = int(text)
                elif kind == "float":
                    typed[key] = float(text)
                elif kind == "boolean":
                    if text.lower() not in ("true", "false"):
                        raise ValueError(text)
                    typed[key] = text.lower() == "true"
                else:
                    typed[key] = text
            except ValueError:
                raise SandboxError(f'option "{key}" expected {kind}, got "{text}"') from None
        return typed

    def validate_config(self, values: dict[str, Any]) -> None:
        """Refuse unknown options and values of the wrong type, as `juju config` does.

        A `secret` option takes a secret URI (or "" for none); Juju only parses it, so a URI
        of a secret that does not exist, or is not granted, is accepted.
        """
        for key, value in values.items():
            kind = self._option(key).get("type", "string")
            allowed = _CONFIG_TYPES.get(kind, (str,))
            if isinstance(value, bool) and kind != "boolean":
                allowed = ()
            if not isinstance(value, allowed):
                raise SandboxError(f'option "{key}" expected {kind}, got {json.dumps(value)}')
            if kind == "secret" and value and not SECRET_URI.match(str(value)):
                raise SandboxError(f'invalid secret URI for option "{key}": secret URI "{value}" not valid')

    def _option(self, key: str) -> dict[str, Any]:
        if key not in self.config_options:
            raise SandboxError(f'unknown option "{key}" for charm "{self.name}"')
        return self.config_options[key]

    def validate_action(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Check an action call against the charm's schema; return params with defaults."""
        if action not in self.actions:
            known = ", ".join(sorted(self.actions)) or "none"
            raise SandboxError(f'unknown action "{action}" for charm "{self.name}" (known: {known})')
        schema = self.actions[action] or {}
        properties: dict[str, Any] = schema.get("params") or {}
        result: dict[str, Any] = {}
        for key, value in params.items():
            if key not in properties:
                if schema.get("additionalProperties", True) is False:
                    raise SandboxError(f'action "{action}" has no parameter "{key}"')
                result[key] = value
                continue
            result[key] = _coerce_param(action, key, value, properties[key])
        for key, prop in properties.items():
            if key not in result and "default" in prop:
                result[key] = prop["default"]
        for key in schema.get("required") or []:
            if key not in result:
                raise SandboxError(f'action "{action}" needs parameter "{key}"')
        return result


def _coerce_param(action: str, key: str, value: Any, prop: dict[str, Any]) -> Any:
    """Action params from a command line arrive as strings; type them like Juju's YAML parse."""
    kind = prop.get("type")
    if kind is None or isinstance(kind, list):  # untyped, or a union such as [integer, string]
        kinds = [] if kind is None else [str(k) for k in kind]
        if isinstance(value, str) and kinds != ["string"]:  # Juju reads a command line's value as YAML
            with contextlib.suppress(yaml.YAMLError):
                value = yaml.safe_load(value)
        allowed_any = tuple(t for k in kinds for t in _PARAM_TYPES.get(k, (object,)))
        if kinds and (not isinstance(value, allowed_any) or (isinstance(value, bool) and "boolean" not in kinds)):
            raise SandboxError(f'action "{action}": parameter "{key}" must be {" or ".join(kinds)}, got {value!r}')
        if "enum" in prop and value not in prop["enum"]:
            raise SandboxError(f'action "{action}": parameter "{key}" must be one of {prop["enum"]}, got {value!r}')
        return value
    if isinstance(value, str) and kind != "string":
        with contextlib.suppress(yaml.YAMLError):
            value = yaml.safe_load(value)
    allowed = _PARAM_TYPES.get(kind, (object,))
    if isinstance(value, bool) and kind in ("integer", "number"):
        allowed = ()
    if not isinstance(value, allowed):
        raise SandboxError(f'action "{action}": parameter "{key}" must be {kind}, got {value!r}')
    if "enum" in prop and value not in prop["enum"]:
        raise SandboxError(f'action "{action}": parameter "{key}" must be one of {prop["enum"]}, got {value!r}')
    return value


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def pinned_requirements(charm_root: Path) -> dict[str, str]:
    """The charm's `name==version` pins from its requirements.txt (what charmcraft would pack)."""
    return read_pins(charm_root / "requirements.txt")


def read_pins(path: Path) -> dict[str, str]:
    """The `name==version` lines of a requirements file (extras and comments left out)."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        found = _PIN.match(line.strip())
        if found:
            pins[found.group(1)] = found.group(3)
    return pins


def missing_requirements(charm_root: Path, installed: Callable[[str], str | None]) -> list[str]:
    """The charm's pins that the sandbox's Python lacks (or has at another version).

    The unit agent runs the charm with the sandbox's own Python: its packages stand in for
    what `charmcraft pack` puts in the charm's venv.
    """
    pins = pinned_requirements(charm_root)
    return [f"{name}=={version}" for name, version in pins.items() if installed(name) != version]


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def check_requirements(charm: CharmSpec) -> None:
    """Refuse a charm whose pinned packages the sandbox cannot give it."""
    missing = missing_requirements(charm.root, installed_version)
    if missing:
        raise SandboxError(
            f'charm "{charm.name}" needs {", ".join(missing)}, which the sandbox\'s Python lacks: '
            "add the pin to requirements/unit.txt (the sandbox's charm runtime) and reinstall it"
        )
