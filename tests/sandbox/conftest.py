"""Sandbox tests run real pods: they need root (network namespaces) and provisioned workloads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import Model

TEST_CHARMS = Path(__file__).resolve().parent / "charms"
CHARMS = Path(__file__).resolve().parents[2] / "charms"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="sandbox tests create network namespaces: run as root")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def model(request: pytest.FixtureRequest) -> Iterator[Model]:
    """A model named after the test module; a leftover from a crashed run is removed first."""
    name = "t-" + request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    created = Model.create(name[:24], update_status_interval=3600)
    yield created
    created.destroy()
