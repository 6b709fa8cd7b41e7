"""The cdc container: paths, Pebble access and one-off commands."""

from __future__ import annotations

from charms.pulsar_k8s.v0.pulsar_workload import PebbleWorkload


class CdcWorkload(PebbleWorkload):
    """The Debezium source and the enrichment function, run with pulsar-admin localrun."""
