"""What the charm asks of PostgreSQL itself: readiness, the slot, and the teardown Debezium never does.

Debezium's slot and publication outlive it and would pin WAL forever. A logical slot does not
survive a failover (before PostgreSQL 17): the charm looks for it, and makes it again.

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


@dataclass(frozen=True)
class Slot:
    """What the server says of a replication slot now."""

    exists: bool
    # The server's WAL timeline (None if it would not say): promoting a standby starts a new one.
    timeline: int | None = None
    # The server's system identifier (None if it would not say): its standbys share it, another
    # server's differs, and the source's offsets are positions in one system's WAL.
    system: str | None = None


def find_slot(database: PostgresConnection, slot: str) -> Slot:
    """Whether the slot exists, the server's current timeline and its system. Raises DatabaseError."""
    with _connect(database) as connection:
        exists = connection.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
        try:
            # A WAL file's name starts with its timeline, in hex; any role may ask (on a primary).
            wal_file = connection.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
        except psycopg.Error as error:
            logger.debug("no timeline from the server: %s", _one_line(error))
            wal_file = None
        try:
            system = connection.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
        except psycopg.Error as error:
            logger.debug("no system identifier from the server: %s", _one_line(error))
            system = None
    timeline = int(wal_file[0][:8], 16) if wal_file and wal_file[0] else None
    return Slot(exists=exists is not None, timeline=timeline, system=str(system[0]) if system and system[0] else None)


def create_slot(database: PostgresConnection, slot: str) -> bool:
    """Make the logical slot Debezium streams from (pgoutput); False if it exists already."""
    with _connect(database) as connection:
        try:
            connection.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        except psycopg.errors.DuplicateObject:
            return False  # a restarting source made it first
    return True


def drop_slot(database: PostgresConnection, slot: str) -> list[str]:
    """Stop the slot's walsender and drop the slot; the publication stays. Raises DatabaseError."""
    with _connect(database) as connection:
        return _drop_slot(connection, slot)


def drop_slot_and_publication(database: PostgresConnection, slot: str, publication: str) -> list[str]:
    """Free what Debezium left: stop the slot's walsender, drop the slot, drop the publication.

    Returns what it did, for the log and the status. Raises DatabaseError if the server refuses.
    """
    with _connect(database) as connection:
        done = _drop_slot(connection, slot)
        exists = connection.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)).fetchone()
        if exists is not None:
            connection.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(publication)))
            done.append(f"dropped publication {publication}")
    return done


def _drop_slot(connection: psycopg.Connection, slot: str) -> list[str]:
    done: list[str] = []
    active = connection.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
    if active is not None:
        if active[0] is not None:
            connection.execute("SELECT pg_terminate_backend(%s)", (active[0],))
            done.append(f"stopped the walsender of slot {slot}")
        # A terminated walsender releases its slot a moment later.
        _drop_slot_when_released(connection, slot)
        done.append(f"dropped replication slot {slot}")
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
