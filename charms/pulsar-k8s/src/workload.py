"""The pulsar container: paths, Pebble access and one-off commands."""

from __future__ import annotations

from charms.pulsar_k8s.v0.pulsar_workload import PebbleWorkload


class PulsarWorkload(PebbleWorkload):
    """ZooKeeper and the broker, both run from the Pulsar distribution at /pulsar."""
