"""Pins that must agree across the repository."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sandbox.provision import PEBBLE_VERSION, PULSAR_VERSION

ROOT = Path(__file__).resolve().parents[2]
CHARMCRAFT_FILES = sorted(ROOT.glob("charms/*/charmcraft.yaml"))


@pytest.mark.parametrize("path", CHARMCRAFT_FILES, ids=lambda p: p.parent.name)
def test_images_pin_the_provisioned_pulsar_version(path: Path) -> None:
    resources = yaml.safe_load(path.read_text())["resources"]
    for resource in resources.values():
        if resource["type"] == "oci-image":
            assert resource["upstream-source"].endswith(f":{PULSAR_VERSION}"), resource


def test_pebble_pin_matches_its_go_module() -> None:
    go_mod = (ROOT / "sandbox" / "pebble" / "go.mod").read_text()
    assert f"github.com/canonical/pebble {PEBBLE_VERSION}" in go_mod


@pytest.mark.parametrize("path", CHARMCRAFT_FILES, ids=lambda p: p.parent.name)
def test_charm_pins_its_python_dependencies(path: Path) -> None:
    for line in (path.parent / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert "==" in line, f"{path.parent.name}: unpinned requirement {line!r}"


@pytest.mark.parametrize("path", CHARMCRAFT_FILES, ids=lambda p: p.parent.name)
def test_charms_assume_only_what_they_use(path: Path) -> None:
    # Nothing calls the Kubernetes API: no charm needs `k8s-api` (nor `juju deploy --trust`).
    assert yaml.safe_load(path.read_text())["assumes"] == ["juju >= 3.6"]
