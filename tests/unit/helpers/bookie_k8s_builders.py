"""What bookie-k8s unit tests give a bookie: pulsar-k8s's side of the bookkeeper relation."""

from __future__ import annotations

import json

from ops import testing

URI = "zk+hierarchical://pulsar-k8s-0.pulsar-k8s-endpoints.test.svc.cluster.local:2181/ledgers"
# The secret pulsar-k8s grants to the relation, as bookie-k8s sees it.
CREDENTIALS = testing.Secret(
    {
        "zookeeper-username": "bookie",
        "zookeeper-password": "zk-pw",
        "bookkeeper-username": "bookkeeper",
        "bookkeeper-password": "bk-pw",
    },
    id="secret:bookiecredentials0000",
)
# pulsar-k8s's application databag once the cluster metadata exists.
PROVIDER_DATA = {
    "metadata-service-uri": json.dumps(URI),
    "cluster-name": '"pulsar"',
    "initialized": "true",
    "credentials-secret": json.dumps(CREDENTIALS.id),
}
