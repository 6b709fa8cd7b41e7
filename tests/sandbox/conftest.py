"""Sandbox tests run real pods: they need root (network namespaces) and provisioned workloads."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
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


def sandbox_model(request: pytest.FixtureRequest, name: str, **create: str) -> Iterator[Model]:
    """A fixture's model; a leftover from a crashed run is removed first.

    With PULSAR_SANDBOX_KEEP=1 a model whose tests failed stays, to be looked at with
    `python -m sandbox -m <name> status` and its pods' logs; the next run removes it.
    """
    created = Model.create(name[:24], update_status_interval=3600, **create)
    failed_before = request.session.testsfailed
    yield created
    if os.environ.get("PULSAR_SANDBOX_KEEP") == "1" and request.session.testsfailed > failed_before:
        return
    created.destroy()


@pytest.fixture(scope="module")
def model(request: pytest.FixtureRequest) -> Iterator[Model]:
    """A model named after the test module."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    yield from sandbox_model(request, "t-" + module.removeprefix("test_").replace("_", "-"))


def deploy_pulsar_cluster(model: Model, pulsar_units: int) -> None:
    """`juju deploy` pulsar-k8s, bookie-k8s -n 3 and a client, integrate them, wait until active."""
    model.deploy(CHARMS / "pulsar-k8s", num_units=pulsar_units)
    model.deploy(CHARMS / "bookie-k8s", num_units=3)
    model.integrate("pulsar-k8s", "bookie-k8s")
    model.deploy(TEST_CHARMS / "pulsar-client-k8s", "client")
    model.integrate("client", "pulsar-k8s")
    model.wait_for_idle(timeout=900)


@pytest.fixture(scope="session")
def deploy_cluster() -> Callable[[Model, int], None]:
    return deploy_pulsar_cluster
