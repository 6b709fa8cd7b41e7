"""The pipeline's names and the values of its two config files (pure logic).

One Debezium source per application captures the configured tables through one replication
slot and one publication, both named after the application, and writes each table's changes to
`<prefix>.<schema>.<table>` in our namespace. One enrichment function reads those topics and
writes `<topic>-enriched` (or a routed `<topic>-enriched-<suffix>`), and what it cannot read to
`<prefix>.dead-letter`.

The source keeps its offsets (where in the WAL it is) in a topic: in generation 0 the default
of Pulsar's Debezium source, after each resnapshot `<source>-debezium-offset-topic-<generation>`,
a topic with no offset in it yet, so that the source snapshots the tables again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from managers.postgres import PostgresConnection
from managers.settings import CdcSettings

POLL_INTERVAL_MS = 100
HEARTBEAT_MS = 10_000  # a quiet table still moves the slot's confirmed position (WAL is freed)
ENRICHMENT_CLASS = "enrichment.Enrichment"  # the function's module (file name) and class
_SLOT_CHARS = re.compile(r"[^a-z0-9_]")


@dataclass(frozen=True)
class Names:
    """Everything named after the application or the config, in one place."""

    app: str
    namespace: str  # tenant/namespace granted by pulsar-k8s
    topic_prefix: str
    generation: int = 0  # of the offsets (state.py)

    @property
    def slot(self) -> str:
        """PostgreSQL replication slot: lower case letters, digits and '_', at most 63."""
        return _SLOT_CHARS.sub("_", f"cdc_{self.app}".lower())[:63]

    @property
    def publication(self) -> str:
        return _SLOT_CHARS.sub("_", f"cdc_{self.app}_publication".lower())[:63]

    @property
    def source(self) -> str:
        return f"{self.app}-source"

    @property
    def offset_topic(self) -> str:
        """Where the source keeps its offsets; in generation 0, the default of Pulsar's Debezium source."""
        base = self.topic(f"{self.source}-debezium-offset-topic")
        return f"{base}-{self.generation}" if self.generation else base

    @property
    def function(self) -> str:
        return f"{self.app}-enrichment"

    def topic(self, local_name: str) -> str:
        return f"persistent://{self.namespace}/{local_name}"

    def table_topic(self, schema: str, table: str) -> str:
        return self.topic(f"{self.topic_prefix}.{schema}.{table}")

    @property
    def dead_letter_topic(self) -> str:
        return self.topic(f"{self.topic_prefix}.dead-letter")

    @property
    def default_topic(self) -> str:
        """The source's declared topic; Debezium writes each table to its own topic instead."""
        return self.topic(f"{self.topic_prefix}.default")


def source_values(
    names: Names, settings: CdcSettings, database: PostgresConnection, archive: str, ca_file: str | None
) -> dict[str, object]:
    """What templates/source.json.j2 renders. Every connector value is a string (see the template)."""
    connector = {
        "database.hostname": database.host,
        "database.port": str(database.port),
        "database.user": database.user,
        "database.dbname": database.database,
        "database.server.name": settings.topic_prefix,
        "plugin.name": "pgoutput",
        "slot.name": names.slot,
        "publication.name": names.publication,
        # The charm keeps the publication to exactly the configured tables (replication.py).
        "publication.autocreate.mode": "disabled",
        "table.include.list": ",".join(str(t) for t in settings.tables),
        "snapshot.mode": settings.snapshot_mode,
        "decimal.handling.mode": "string",
        "heartbeat.interval.ms": str(HEARTBEAT_MS),
        # How long Debezium's queue waits before it looks for changes again when it found none:
        # its default (500 ms) is most of the commit-to-topic lag of a quiet table.
        "poll.interval.ms": str(POLL_INTERVAL_MS),
        # A delete is one change event; its Kafka-style tombstone would reach the function as an
        # empty message and be dead-lettered.
        "tombstones.on.delete": "false",
        "database.sslmode": ("verify-full" if ca_file else "require") if database.tls else "disable",
    }
    if database.tls and ca_file:
        connector["database.sslrootcert"] = ca_file
    if names.generation:
        # Generation 0 leaves the key out: a deployment made before resnapshot keeps its offsets.
        connector["offset.storage.topic"] = names.offset_topic
    tenant, namespace = names.namespace.split("/", 1)
    return {
        "tenant": tenant,
        "namespace": namespace,
        "name": names.source,
        "topic": names.default_topic,
        "archive": archive,
        "connector": connector,
    }


def function_values(names: Names, settings: CdcSettings, module: str) -> dict[str, object]:
    """What templates/function.json.j2 renders."""
    tenant, namespace = names.namespace.split("/", 1)
    return {
        "tenant": tenant,
        "namespace": namespace,
        "name": names.function,
        "module": module,
        "class_name": ENRICHMENT_CLASS,
        "inputs": [names.table_topic(t.schema, t.name) for t in settings.tables],
        "subscription": names.function,
        "user_config": {
            "dead-letter-topic": names.dead_letter_topic,
            "routing-field": settings.routing_field,
            "routing-map": settings.routing_map,
        },
    }
