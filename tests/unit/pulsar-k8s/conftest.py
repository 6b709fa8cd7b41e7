"""Fixtures for pulsar-k8s unit tests."""

from __future__ import annotations

from pathlib import Path

import lightkube
import pytest
from helpers.kubernetes import FakeKubernetes
from helpers.pulsar_k8s_builders import Probes, Unit
from ops import testing

from pulsar_k8s.charm import PulsarCharm
from pulsar_k8s.workload import PulsarWorkload


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> Probes:
    """Stand-ins for the workload's network probes (ZooKeeper's srvr and conf, the broker's status page)."""
    answers = Probes()
    monkeypatch.setattr(PulsarWorkload, "zookeeper_mode", lambda self, host="localhost": answers.zookeeper(host))
    monkeypatch.setattr(PulsarWorkload, "zookeeper_membership", lambda self, host="localhost": answers.membership(host))
    monkeypatch.setattr(PulsarWorkload, "broker_ready", lambda self, host="localhost": answers.broker(host))
    return answers


@pytest.fixture
def ctx() -> testing.Context:
    return testing.Context(PulsarCharm, app_name="pulsar-k8s", unit_id=0)


@pytest.fixture
def unit(tmp_path: Path, pulsar_image: Path) -> Unit:
    built = Unit(tmp_path / "unit", pulsar_image)
    built.conf.mkdir(parents=True)
    built.zookeeper.mkdir(parents=True)
    return built


@pytest.fixture(autouse=True)
def kubernetes(monkeypatch: pytest.MonkeyPatch) -> FakeKubernetes:
    """The Kubernetes API, as lightkube's client sees it: the application trusted, no refresh under way."""
    cluster = FakeKubernetes("pulsar-k8s")
    monkeypatch.setattr(lightkube, "Client", cluster.client)
    return cluster
