"""The charm's config, parsed and checked as a whole (pure logic).

A bad value raises InvalidConfigError naming the option; the charm then blocks and leaves the
running pipeline as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from charms.pulsar_k8s.v0.pulsar_workload import InvalidConfigError

# Debezium 1.9's PostgreSQL snapshot modes, but `custom` (it needs a class we do not ship).
SNAPSHOT_MODES = ("initial", "initial_only", "never", "always", "exported")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")  # an unquoted PostgreSQL identifier
_DATABASE = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}")
# Topic names are built from these: Pulsar allows [A-Za-z0-9_=:.-] in a topic's local name.
_TOPIC_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class Table:
    """One captured table, as `schema.table`."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class CdcSettings:
    """What the user configured; see charmcraft.yaml for each option's meaning."""

    database: str
    tables: tuple[Table, ...]
    topic_prefix: str
    snapshot_mode: str
    routing_field: str = ""
    routing_map: dict[str, str] = field(default_factory=dict)
    credentials_secret: str = ""

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> CdcSettings:
        database = str(config.get("database-name", "")).strip()
        if not _DATABASE.fullmatch(database):
            raise InvalidConfigError("database-name", f"{database!r} is not a database name")
        prefix = str(config.get("topic-prefix", "")).strip()
        if not _TOPIC_PART.fullmatch(prefix):
            raise InvalidConfigError("topic-prefix", f"{prefix!r}: letters, digits, '_', '-' and '.' only")
        mode = str(config.get("snapshot-mode", "")).strip()
        if mode not in SNAPSHOT_MODES:
            raise InvalidConfigError("snapshot-mode", f"{mode!r} is not one of {', '.join(SNAPSHOT_MODES)}")
        routing_field = str(config.get("routing-field", "")).strip()
        if routing_field and not _FIELD_PATH.fullmatch(routing_field):
            raise InvalidConfigError("routing-field", f"{routing_field!r} is not a dotted field path like after.region")
        routing_map = _routing_map(str(config.get("routing-map", "")))
        if routing_map and not routing_field:
            raise InvalidConfigError("routing-map", "set routing-field too: which field's value picks the topic")
        secret = config.get("postgresql-credentials") or ""
        return cls(
            database=database,
            tables=_tables(str(config.get("tables", ""))),
            topic_prefix=prefix,
            snapshot_mode=mode,
            routing_field=routing_field,
            routing_map=routing_map,
            credentials_secret=str(secret).strip(),
        )


def _tables(value: str) -> tuple[Table, ...]:
    tables: list[Table] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        schema, dot, name = item.partition(".")
        if not dot or not _IDENTIFIER.fullmatch(schema) or not _IDENTIFIER.fullmatch(name):
            raise InvalidConfigError("tables", f"{item!r} is not schema.table (e.g. public.customers)")
        table = Table(schema, name)
        if table not in tables:
            tables.append(table)
    if not tables:
        raise InvalidConfigError("tables", "name at least one schema.table to capture")
    return tuple(tables)


def _routing_map(value: str) -> dict[str, str]:
    """`value=suffix,...`: a message whose routing field has `value` goes to `<topic>-enriched-<suffix>`."""
    routes: dict[str, str] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        key, sep, suffix = item.rpartition("=")
        key, suffix = key.strip(), suffix.strip()
        if not sep or not key or not _TOPIC_PART.fullmatch(suffix):
            raise InvalidConfigError("routing-map", f"{item!r} is not value=suffix (suffix: letters, digits, '_-.')")
        if key in routes:
            raise InvalidConfigError("routing-map", f"{key!r} is mapped twice")
        routes[key] = suffix
    return routes
