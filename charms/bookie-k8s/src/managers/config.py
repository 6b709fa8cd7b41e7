"""The bookie's config, validated, and bookkeeper.conf rendered from its template."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charms.pulsar_k8s.v0.bookkeeper import BookieCredentials
from charms.pulsar_k8s.v0.pulsar_workload import check_size, template_environment
from literals import BOOKIE_HTTP_PORT, BOOKIE_PORT, JOURNAL_DIR, LEDGERS_DIR

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"


@dataclass(frozen=True)
class BookieConfig:
    heap: str
    direct_memory: str

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> BookieConfig:
        return cls(
            heap=check_size("bookie-heap", raw["bookie-heap"]),
            direct_memory=check_size("direct-memory", raw["direct-memory"]),
        )

    def cache_mb(self) -> int:
        """DbLedgerStorage write and read-ahead caches: a quarter of direct memory each."""
        size = int(self.direct_memory[:-1]) * (1024 if self.direct_memory.endswith("g") else 1)
        return max(16, size // 4)


def render_bookkeeper_conf(
    config: BookieConfig, advertised_address: str, metadata_service_uri: str, templates: Path = TEMPLATES
) -> str:
    return (
        template_environment(templates)
        .get_template("bookkeeper.conf.j2")
        .render(
            bookie_port=BOOKIE_PORT,
            http_port=BOOKIE_HTTP_PORT,
            advertised_address=advertised_address,
            metadata_service_uri=metadata_service_uri,
            journal_dir=JOURNAL_DIR,
            ledgers_dir=LEDGERS_DIR,
            cache_mb=config.cache_mb(),
        )
    )


def render_jaas_conf(credentials: BookieCredentials, templates: Path = TEMPLATES) -> str:
    return template_environment(templates).get_template("jaas.conf.j2").render(credentials=credentials)
