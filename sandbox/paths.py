"""Where the sandbox keeps provisioned artifacts and model state on this machine."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.errors import SandboxError

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Downloads and builds shared by every clone of the project (cached between runs)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("PULSAR_CHARMS_CACHE", Path(base) / "pulsar-charms"))


def state_dir() -> Path:
    """Models: their Juju-side state, pods, storage and logs."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(os.environ.get("PULSAR_SANDBOX_HOME", Path(base) / "pulsar-sandbox"))


MANIFEST = "artifacts.json"


@dataclass(frozen=True)
class Artifacts:
    """What provisioning produced: the paths the sandbox runs workloads from.

    The pulsar-all tree and the earlier distributions came later: a manifest written before
    them still loads, without them, and only a container of such an image then asks for
    provisioning again.
    """

    pebble: Path
    pulsar_home: Path
    pulsar_version: str
    workload_python: Path
    java_home: Path
    pulsar_all_home: Path | None = None  # the Pulsar tree plus connectors/
    debezium_postgres_nar: Path | None = None  # in pulsar_all_home/connectors/
    # Earlier Pulsar distributions, by version: the trees of the plain image's older tags.
    earlier_pulsar_homes: dict[str, Path] = field(default_factory=dict)

    @property
    def pulsar_versions(self) -> list[str]:
        """Every provisioned tag of the plain Pulsar image, sorted."""
        return sorted([self.pulsar_version, *self.earlier_pulsar_homes])

    def pulsar_tree(self, version: str) -> Path | None:
        """The Pulsar distribution of a plain image's tag, if provisioned."""
        return self.pulsar_home if version == self.pulsar_version else self.earlier_pulsar_homes.get(version)

    @classmethod
    def load(cls) -> Artifacts:
        manifest = cache_dir() / MANIFEST
        if not manifest.is_file():
            raise SandboxError("workloads are not provisioned: run `tox -e provision` first")
        data = json.loads(manifest.read_text())
        artifacts = cls(
            pebble=Path(data["pebble"]),
            pulsar_home=Path(data["pulsar_home"]),
            pulsar_version=data["pulsar_version"],
            workload_python=Path(data["workload_python"]),
            java_home=Path(data["java_home"]),
            pulsar_all_home=Path(data["pulsar_all_home"]) if "pulsar_all_home" in data else None,
            debezium_postgres_nar=Path(data["debezium_postgres_nar"]) if "debezium_postgres_nar" in data else None,
            earlier_pulsar_homes={v: Path(p) for v, p in data.get("earlier_pulsar_homes", {}).items()},
        )
        required = (artifacts.pebble, artifacts.pulsar_home, artifacts.workload_python)
        required += tuple(artifacts.earlier_pulsar_homes.values())
        optional = (artifacts.pulsar_all_home, artifacts.debezium_postgres_nar)
        for path in (*required, *(p for p in optional if p is not None)):
            if not path.exists():
                raise SandboxError(f"provisioned artifact {path} is missing: run `tox -e provision`")
        return artifacts

    def save(self) -> None:
        data: dict[str, str | dict[str, str]] = {
            "pebble": str(self.pebble),
            "pulsar_home": str(self.pulsar_home),
            "pulsar_version": self.pulsar_version,
            "workload_python": str(self.workload_python),
            "java_home": str(self.java_home),
        }
        if self.pulsar_all_home is not None and self.debezium_postgres_nar is not None:
            data["pulsar_all_home"] = str(self.pulsar_all_home)
            data["debezium_postgres_nar"] = str(self.debezium_postgres_nar)
        if self.earlier_pulsar_homes:
            data["earlier_pulsar_homes"] = {v: str(p) for v, p in self.earlier_pulsar_homes.items()}
        (cache_dir() / MANIFEST).write_text(json.dumps(data, indent=2) + "\n")
