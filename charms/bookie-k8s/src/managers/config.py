"""The bookie's config, validated, and bookkeeper.conf rendered from its template."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from literals import BOOKIE_HTTP_PORT, BOOKIE_PORT, JOURNAL_DIR, LEDGERS_DIR

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"
_SIZE = re.compile(r"^[1-9][0-9]*[mg]$")


class InvalidConfigError(Exception):
    """A config option has a value the charm cannot use; the message names the option."""

    def __init__(self, option: str, reason: str) -> None:
        self.option = option
        super().__init__(f"invalid config {option}: {reason}")


@dataclass(frozen=True)
class BookieConfig:
    heap: str
    direct_memory: str

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> BookieConfig:
        for option in ("bookie-heap", "direct-memory"):
            if not _SIZE.match(str(raw[option])):
                raise InvalidConfigError(option, f"{raw[option]!r} (a size such as 512m or 2g)")
        return cls(heap=str(raw["bookie-heap"]), direct_memory=str(raw["direct-memory"]))

    def cache_mb(self) -> int:
        """DbLedgerStorage write and read-ahead caches: a quarter of direct memory each."""
        size = int(self.direct_memory[:-1]) * (1024 if self.direct_memory.endswith("g") else 1)
        return max(16, size // 4)


def render_bookkeeper_conf(
    config: BookieConfig, advertised_address: str, metadata_service_uri: str, templates: Path = TEMPLATES
) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - a Java properties file, not HTML
    )
    return env.get_template("bookkeeper.conf.j2").render(
        bookie_port=BOOKIE_PORT,
        http_port=BOOKIE_HTTP_PORT,
        advertised_address=advertised_address,
        metadata_service_uri=metadata_service_uri,
        journal_dir=JOURNAL_DIR,
        ledgers_dir=LEDGERS_DIR,
        cache_mb=config.cache_mb(),
    )
