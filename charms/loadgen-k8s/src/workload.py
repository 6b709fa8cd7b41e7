"""The loadgen container: paths, Pebble access and one-off commands."""

from __future__ import annotations

from charms.pulsar_k8s.v0.pulsar_workload import PebbleWorkload


class LoadgenWorkload(PebbleWorkload):
    """Producer and consumer workers run with the image's python3 and pulsar-client."""
