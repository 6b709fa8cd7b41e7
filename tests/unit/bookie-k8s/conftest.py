"""Fixtures for bookie-k8s unit tests."""

from __future__ import annotations

import lightkube
import pytest
from helpers.kubernetes import FakeKubernetes


@pytest.fixture(autouse=True)
def kubernetes(monkeypatch: pytest.MonkeyPatch) -> FakeKubernetes:
    """The Kubernetes API, as lightkube's client sees it: the application trusted, no refresh under way."""
    cluster = FakeKubernetes("bookie-k8s")
    monkeypatch.setattr(lightkube, "Client", cluster.client)
    return cluster
