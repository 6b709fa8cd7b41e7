"""What the charm asks of PostgreSQL itself: readiness, slot lag, and the teardown Debezium never does.

Debezium's slot and publication outlive it and would pin WAL forever.

The charm connects from its own container with psycopg, as the same role as Debezium.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql

from managers.postgres import PostgresConnection

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5


class DatabaseError(Exception):
    """The database could not be reached or refused a statement; the message is one line."""


@contextlib.contextmanager
def _connect(database: PostgresConnection) -> Iterator[psycopg.Connection]:
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as ca:
        options: dict[str, object] = {
            "host": database.host,
            "port": database.port,
            "dbname": database.database,
            "user": database.user,
            "password": database.password,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "sslmode": "disable",
            "application_name": "cdc-k8s",
        }
        if database.tls:
            options["sslmode"] = "require"
            if database.tls_ca:
                ca.write(database.tls_ca)
                ca.flush()
                options.update(sslmode="verify-full", sslrootcert=ca.name)
        try:
            with psycopg.connect(**options, autocommit=True) as connection:  # type: ignore[arg-type]
                yield connection
        except psycopg.Error as error:
            raise DatabaseError(_one_line(error)) from error


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


@dataclass(frozen=True)
class Preparation:
    """What `prepare` found: why Debezium cannot stream (`problem`), or what it changed (`done`)."""

    problem: str | None = None
    done: str | None = None


def prepare(database: PostgresConnection, publication: str, tables: list[tuple[str, str]]) -> Preparation:
    """Check the server can feed Debezium, then keep the publication to exactly `tables`.

    Debezium's walsender needs `wal_level=logical` and a superuser or replication role. The
    charm owns the publication: Debezium 1.9 creates a filtered one once but never changes its
    tables, so a table added to the config would never be published. One connection for both.
    """
    with _connect(database) as connection:
        wal_level = connection.execute("SHOW wal_level").fetchone()
        role = connection.execute(
            "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        if wal_level is None or wal_level[0] != "logical":
            level = wal_level[0] if wal_level else "unknown"
            return Preparation(f"the server runs wal_level={level}: logical decoding needs wal_level=logical")
        if role is None or not (role[0] or role[1]):
            return Preparation(
                f"role {database.user} has neither SUPERUSER nor REPLICATION: it cannot start a walsender"
            )
        return Preparation(done=_keep_publication(connection, publication, tables))


def _keep_publication(connection: psycopg.Connection, publication: str, tables: list[tuple[str, str]]) -> str | None:
    wanted = sql.SQL(", ").join(sql.Identifier(schema, table) for schema, table in tables)
    exists = connection.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)).fetchone()
    if exists is None:
        create = sql.SQL("CREATE PUBLICATION {} FOR TABLE {}")
        connection.execute(create.format(sql.Identifier(publication), wanted))
        return f"created publication {publication}"
    current = connection.execute(
        "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (publication,)
    ).fetchall()
    if sorted(current) == sorted(tables):
        return None
    connection.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(sql.Identifier(publication), wanted))
    return f"publication {publication} now publishes {', '.join(f'{s}.{t}' for s, t in tables)}"


def slot_lag_bytes(database: PostgresConnection, slot: str) -> int | None:
    """WAL the slot holds back (current position minus what Debezium confirmed), or None without the slot."""
    with _connect(database) as connection:
        row = connection.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint"
            " FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else None


def drop_slot_and_publication(database: PostgresConnection, slot: str, publication: str) -> list[str]:
    """Free what Debezium left: stop the slot's walsender, drop the slot, drop the publication.

    Returns what it did, for the log and the status. Raises DatabaseError if the server refuses.
    """
    done: list[str] = []
    with _connect(database) as connection:
        active = connection.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        if active is not None:
            if active[0] is not None:
                connection.execute("SELECT pg_terminate_backend(%s)", (active[0],))
                done.append(f"stopped the walsender of slot {slot}")
            # A terminated walsender releases its slot a moment later.
            _drop_slot_when_released(connection, slot)
            done.append(f"dropped replication slot {slot}")
        exists = connection.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)).fetchone()
        if exists is not None:
            connection.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(publication)))
            done.append(f"dropped publication {publication}")
    return done


def _drop_slot_when_released(connection: psycopg.Connection, slot: str, attempts: int = 20) -> None:
    for attempt in range(attempts):
        try:
            connection.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            return
        except psycopg.errors.ObjectInUse:
            if attempt == attempts - 1:
                raise
            connection.execute("SELECT pg_sleep(0.25)")
