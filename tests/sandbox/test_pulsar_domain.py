"""A Kubernetes cluster whose DNS domain is not cluster.local: every FQDN follows the pod's own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import Model

CHARMS = Path(__file__).resolve().parents[2] / "charms"
TEST_CHARMS = Path(__file__).resolve().parent / "charms"
DOMAIN = "k8s.example.internal"


@pytest.fixture(scope="module")
def model() -> Iterator[Model]:
    created = Model.create("t-domain", update_status_interval=3600, cluster_domain=DOMAIN)
    yield created
    created.destroy()


def test_a_cluster_in_another_dns_domain_comes_up_with_its_names(model: Model) -> None:
    # When a one-unit cluster with one bookie and a client is deployed where pods are named under DOMAIN
    model.deploy(CHARMS / "pulsar-k8s")
    model.deploy(CHARMS / "bookie-k8s")
    model.integrate("pulsar-k8s", "bookie-k8s")
    model.deploy(TEST_CHARMS / "pulsar-client-k8s", "client")
    model.integrate("client", "pulsar-k8s")
    model.wait_for_idle(timeout=600)

    # Then every name the charms hand out is the pod's own FQDN in that domain
    fqdn = f"pulsar-k8s-0.pulsar-k8s-endpoints.t-domain.svc.{DOMAIN}"
    assert model.fqdn("pulsar-k8s/0") == fqdn
    broker_conf = model.pebble("pulsar-k8s/0", "pulsar").pull("/pulsar/conf/broker.conf").read()
    assert f"advertisedAddress={fqdn}\n" in broker_conf
    bookkeeper = next(r for r in model.relations.values() if ("bookie-k8s", "bookkeeper") in r.endpoints)
    assert json.loads(bookkeeper.unit_data["bookie-k8s/0"]["bookie-id"]) == (
        f"bookie-k8s-0.bookie-k8s-endpoints.t-domain.svc.{DOMAIN}:3181"
    )
    credentials = model.run("pulsar-k8s/0", "get-admin-credentials").results
    assert credentials["service-url"] == f"pulsar://{fqdn}:6650"
    # And clients connect through them
    produced = model.run("client/0", "produce", {"topic": "named", "count": 100})
    assert produced.results == {"acked": "100", "failed": "0"}, produced.message
