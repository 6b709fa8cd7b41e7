"""The client charms' modules share one cluster: pulsar-k8s -n 1, bookie-k8s -n 3 and a client.

Its model's Kubernetes DNS domain is not cluster.local, so every name the charms hand out
is checked against the pods' own FQDNs there (test_loadgen.py's first test). Each module
deploys its charm on it, and leaves nothing of its own running when it is done.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox import Model
from tests.sandbox.conftest import deploy_pulsar_cluster, sandbox_model

CLUSTER_DOMAIN = "k8s.example.internal"


@pytest.fixture(scope="package")
def model(request: pytest.FixtureRequest) -> Iterator[Model]:
    yield from sandbox_model(request, "t-client-charms", cluster_domain=CLUSTER_DOMAIN)


@pytest.fixture(scope="package")
def pulsar_cluster(model: Model) -> Model:
    deploy_pulsar_cluster(model, 1)
    return model
