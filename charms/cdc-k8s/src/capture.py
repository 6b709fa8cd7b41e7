"""The change data capture pipeline: the reconcile every event runs, the teardown, and the actions.

The leader runs the pipeline (one replication slot can feed one reader); other units stand by.
What the pipeline runs with is always rendered whole from the config, the database source, the
Pulsar grant and the peer state (the offsets generation); a change of any of them restarts the
service it concerns on replan.

The leader also watches the replication slot: once a capturing pipeline has seen it, a slot
missing from the database, or a server on a new timeline (a promoted standby), means a failover
lost it. Debezium then streams on from its stored offset through a new slot, so the changes in
between are missing: the status says so until a resnapshot re-reads the tables.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime

import ops
from replication import (
    DatabaseError,
    Slot,
    create_slot,
    drop_slot,
    drop_slot_and_publication,
    find_slot,
    prepare,
    slot_lag_bytes,
)

from charms.pulsar_k8s.v0.pulsar import Connection
from literals import (
    CA_FILE,
    FUNCTION_METRICS_PORT,
    FUNCTION_MODULE,
    FUNCTION_SERVICE,
    LAYER,
    PASSWORD_FILE,
    PULSAR_CA_FILE,
    SOURCE_METRICS_PORT,
    SOURCE_SERVICE,
    TOKEN_FILE,
    Status,
)
from managers.metrics import pipeline_counts
from managers.pipeline import Names, function_values, source_values
from managers.postgres import NoSource, PostgresConnection, SourceProblem
from managers.settings import CdcSettings
from state import CdcState
from workload import CdcWorkload

logger = logging.getLogger(__name__)

INACTIVE = ops.pebble.ServiceStatus.INACTIVE


@dataclass(frozen=True)
class Inputs:
    """Everything the pipeline is made from, once all of it is there."""

    settings: CdcSettings
    pulsar: Connection
    database: PostgresConnection
    enrichment: str  # the function module's source: the built-in or the user's resource


class ActionError(Exception):
    """An action refuses or fails; the message says why, and what to do."""


class Capture:
    """One event's work on the pipeline; `statuses` says what it found, `state` what it keeps."""

    def __init__(self, app: str, leader: bool, workload: CdcWorkload, state: CdcState) -> None:
        self.app = app
        self.leader = leader
        self.workload = workload
        self.state = state
        self.statuses: list[ops.StatusBase] = []

    def names(self, inputs: Inputs) -> Names:
        return Names(self.app, inputs.pulsar.namespace, inputs.settings.topic_prefix, self.state.generation)

    def reconcile(self, inputs: Inputs | None, database_gone: bool) -> None:
        """Run the pipeline `inputs` describe (leader), or none; `inputs` is None while one is missing.

        `database_gone`: neither the relation nor the config names a database any more, so the
        slot and publication of the last one are dropped (retried by every event until done).
        """
        if not self.leader:
            if stopped := self.workload.stop_pipeline():
                logger.info("standing by: stopped %s", ", ".join(sorted(stopped)))
            self.statuses.append(Status.STANDBY())
            return
        if database_gone:
            self.teardown()
            return
        if inputs is None:
            # Pulsar or the credentials are missing for now: the slot stays, to resume where it was.
            if stopped := self.workload.stop_pipeline():
                logger.info("stopped %s until the pipeline has all it needs", ", ".join(sorted(stopped)))
            return
        if self.state.error is not None:
            # The offsets generation is unknown: rendering now could move the source to other offsets.
            self.statuses.append(Status.INVALID_PEER_DATA(error=self.state.error))
            return
        names = self.names(inputs)
        tables = [(t.schema, t.name) for t in inputs.settings.tables]
        try:
            prepared = prepare(inputs.database, names.publication, tables)
            problem = prepared.problem
            if prepared.done:
                logger.info("%s", prepared.done)
        except DatabaseError as error:
            problem = f"{inputs.database.host}:{inputs.database.port}: {error}"
        if problem:
            self.statuses.append(Status.DATABASE_REFUSES(reason=problem))
            return
        slot, restart = self._watch_slot(inputs.database, names.slot)
        names = self.names(inputs)  # in the generation `_watch_slot` left
        if self._run(inputs, names, restart_source=restart) and slot is not None and slot.exists:
            self.state.saw_slot(names.slot, slot.timeline)

    def _watch_slot(self, database: PostgresConnection, name: str) -> tuple[Slot | None, bool]:
        """The slot as the database has it (None if it would not say), and whether to restart the source.

        A slot the pipeline has seen that is gone was lost: it is made again, so that the source
        streams on from its stored offset (no snapshot), and the source restarts if it runs (its
        connection was to the lost one). A slot never seen is Debezium's to make.
        """
        try:
            slot = find_slot(database, name)
        except DatabaseError as error:
            logger.warning("could not look for replication slot %s: %s", name, error)
            return None, False
        self._follow_database(slot.system, database.database)
        if self.state.app_data.slot_seen != name:
            return slot, False
        if not slot.exists:
            try:
                create_slot(database, name)
            except DatabaseError as error:
                logger.error("could not make slot %s again (the source makes it as it starts): %s", name, error)
            self._mark_lost(name, slot.timeline, "it is gone from the database; made it again")
            return Slot(True, slot.timeline), self.workload.is_running(SOURCE_SERVICE)
        seen_on = self.state.app_data.slot_timeline
        if slot.timeline and seen_on and slot.timeline != seen_on:
            # Still there, but the server was promoted since: a restarting source made it again.
            self._mark_lost(name, slot.timeline, f"the server moved from timeline {seen_on} to {slot.timeline}")
        return slot, False

    def _follow_database(self, system: str | None, database: str) -> None:
        """Start a new offsets generation when the source is another server's or database's.

        The stored offsets are a position in the WAL of the server they were taken on (and its
        standbys, which share its system identifier). Read against another server, Debezium
        would skip its changes up to that position, and take its tables as read already.
        """
        if system is None:
            return
        identity = f"{system}/{database}"
        known = self.state.app_data.source_database
        if known and known != identity:
            generation = self.state.next_generation()
            logger.info(
                "the source database is now %s (the offsets were about %s): offsets generation %d,"
                " the tables are read first",
                identity,
                known,
                generation,
            )
        self.state.app_data.source_database = identity

    def _mark_lost(self, slot: str, timeline: int | None, how: str) -> None:
        at = self.state.slot_lost(timeline)
        logger.warning(
            "replication slot %s was lost (a database failover?): %s; changes between the last one captured"
            " and %s may be missing: the resnapshot action re-reads the tables",
            slot,
            how,
            at,
        )

    def _run(self, inputs: Inputs, names: Names, restart_source: bool = False) -> bool:
        """Render and run both services; return whether the pipeline captures (both serve)."""
        archive = self.workload.connector_archive()
        if archive is None:
            self.statuses.append(Status.NO_CONNECTOR())
            return False
        # No newline: the C++ client of the Python function sends the file's bytes as they are,
        # and the broker's token verifier refuses a token with trailing whitespace.
        self.workload.write_private(TOKEN_FILE, inputs.pulsar.token)
        # The source's shell exports it for `${PG_PASSWORD}`: in a file, not in the plan.
        self.workload.write_private(PASSWORD_FILE, inputs.database.password)
        database_ca = inputs.database.tls_ca if inputs.database.tls else None
        database_ca_file = self.workload.write_private_or_remove(CA_FILE, database_ca)
        # pulsar-k8s hands out its CA with TLS URLs only: without it, a CA left from before goes.
        pulsar_ca_file = self.workload.write_private_or_remove(PULSAR_CA_FILE, inputs.pulsar.tls_ca)
        self.workload.render_configs(
            source_values(names, inputs.settings, inputs.database, archive, database_ca_file),
            function_values(names, inputs.settings, FUNCTION_MODULE),
            inputs.enrichment,
        )
        layer = self.workload.layer(inputs.pulsar.service_url, pulsar_ca_file)
        services = [SOURCE_SERVICE, FUNCTION_SERVICE]
        changed = self.workload.changes(layer, SOURCE_SERVICE)
        if changed or restart_source or SOURCE_SERVICE in self.workload.in_state(services, INACTIVE):
            # The charm (re)starts the source: what earlier runs failed on is no longer news.
            self.workload.forget_source_errors()
        if self.workload.apply_layer(LAYER, layer):
            logger.info("pipeline (re)started from %s source %s", inputs.database.source, inputs.database)
        # A replan starts what it changes: a service stopped with the same definition (or one
        # Pebble gave up on, whose errors stay until it serves) starts here.
        self.workload.start(self.workload.in_state(services, INACTIVE, ops.pebble.ServiceStatus.ERROR))
        if restart_source and not changed:
            self.workload.restart(SOURCE_SERVICE)
        return self._status(inputs)

    def _status(self, inputs: Inputs) -> bool:
        """The pipeline's status; whether it captures."""
        services = {SOURCE_SERVICE, FUNCTION_SERVICE}
        up = self.workload.running(services) & self.workload.serving()
        source = inputs.database.source
        # Not serving since its last start (stopped, restarting, or starting again): why, if it logged it.
        if SOURCE_SERVICE not in up and (error := self.workload.source_error()):
            self.statuses.append(Status.CONNECTOR_FAILS(error=error))
            return False
        if waiting := sorted(services - up):
            self.statuses.append(Status.STARTING(services=" and ".join(waiting), source=source))
            return False
        if lost := self.state.app_data.slot_lost:
            names = self.names(inputs)
            self.statuses.append(Status.SLOT_LOST(slot=names.slot, time=lost, app=self.app))
        else:
            tables = ", ".join(str(t) for t in inputs.settings.tables)
            self.statuses.append(Status.CAPTURING(tables=tables, database=inputs.database.database, source=source))
        return True

    def teardown(self) -> None:
        """The database source is going away: free the slot and the publication, and stop.

        It connects as the pipeline last did (its rendered config and its password file):
        the relation's credentials may soon be gone, since the provider drops its user when the
        relation ends, so the SQL comes first. Terminating the walsender ends the source; once
        the services are stopped, a second pass drops a slot a reconnecting source made again.
        The state forgets the slot: one missing later was dropped, not lost. Once the slot is
        gone, so are the changes its offsets point into: a new offsets generation makes a source
        started later (a new relation, other credentials) snapshot the tables first.
        """
        self.state.forget_slot()
        last = self.workload.last_source()
        if last is None:
            self.workload.stop_pipeline()
            self.workload.forget_source()  # nothing to tear down with: keep no password either
            return
        database, slot, publication = last
        try:
            done = drop_slot_and_publication(database, slot, publication)
        except DatabaseError as error:
            self.workload.stop_pipeline()
            logger.error("could not drop slot %s / publication %s: %s", slot, publication, error)
            self.statuses.append(Status.TEARDOWN_FAILED(slot=slot, reason=str(error)))
            return
        self.workload.stop_pipeline()
        try:
            done += drop_slot_and_publication(database, slot, publication)
        except DatabaseError as error:
            # Dropped once, and the source is stopped now: only a source that reconnected within
            # these moments could have made the slot again. The provider dropping the user as
            # the relation ends (as postgresql-k8s does) must not turn a done teardown into a
            # false alarm.
            logger.warning("could not check again that slot %s is gone: %s", slot, error)
        self.workload.forget_source()
        generation = self.state.next_generation()
        logger.info(
            "teardown: %s; a later source starts at offsets generation %d",
            "; ".join(done) or "nothing was left",
            generation,
        )

    def resnapshot(self, inputs: Inputs, confirm: bool) -> dict[str, str]:
        """Make Debezium read the captured tables again; the action's results. Raises ActionError.

        Debezium snapshots when it finds no stored offset. So: stop the source (the function
        reads on), drop its slot (the publication stays), start a new offsets generation, and
        reconcile: the source starts on an offset topic with nothing in it, snapshots, and
        streams from a new slot. If the slot cannot be dropped, the source starts as it was.
        """
        if inputs.settings.snapshot_mode == "never":
            raise ActionError(
                "snapshot-mode is never: Debezium would read nothing again;"
                f" set it first with: juju config {self.app} snapshot-mode=initial"
            )
        if not self.state.writable:
            reason = f"its data does not decode: {self.state.error}" if self.state.error else "it is not there yet"
            raise ActionError(f"the new offsets generation cannot be kept in the peer relation ({reason}): try again")
        if not confirm:
            raise ActionError(
                "resnapshot publishes every row of every captured table again, as read events (op: r):"
                " consumers see each row once more. To go ahead:"
                f" juju run {self.app}/leader resnapshot confirm=true"
            )
        slot = self.names(inputs).slot
        self.workload.stop([SOURCE_SERVICE])  # the function reads on: nothing is lost downstream
        try:
            done = drop_slot(inputs.database, slot)
        except DatabaseError as error:
            self.reconcile(inputs, database_gone=False)
            raise ActionError(f"could not drop replication slot {slot}: {error}") from error
        generation = self.state.next_generation()
        names = self.names(inputs)
        tables = ", ".join(str(t) for t in inputs.settings.tables)
        logger.info(
            "resnapshot: %s; offsets generation %d in %s: re-reading %s",
            "; ".join(done) or f"no slot {slot} to drop",
            generation,
            names.offset_topic,
            tables,
        )
        self.reconcile(inputs, database_gone=False)
        return {"generation": str(generation), "offset-topic": names.offset_topic, "tables": tables}

    def report(self, database: PostgresConnection | NoSource, names: Names | None) -> dict[str, str]:
        """cdc-status: the database's view of the slot, the runners' counters, the services' states."""
        services = self.workload.container.get_services(SOURCE_SERVICE, FUNCTION_SERVICE)
        results = {
            "connector": _state(services.get(SOURCE_SERVICE)),
            "function": _state(services.get(FUNCTION_SERVICE)),
        }
        if error := self.workload.source_error():
            results["connector-last-error"] = error
        if lost := self.state.app_data.slot_lost:
            results["slot-lost"] = lost
        if isinstance(database, NoSource):
            results["source"] = database.problem.value
        else:
            results["source"] = (
                f"{database.source}: {database.user}@{database.host}:{database.port}/{database.database}"
            )
            if names is not None:
                results["slot"] = names.slot
                results["offset-topic"] = names.offset_topic
                try:
                    lag = slot_lag_bytes(database, names.slot)
                    results["slot-lag-bytes"] = str(lag) if lag is not None else "no such slot"
                except DatabaseError as error:
                    results["slot-lag-bytes"] = f"unknown: {error}"
        counts = pipeline_counts(_metrics(SOURCE_METRICS_PORT), _metrics(FUNCTION_METRICS_PORT))
        figures = {
            "captured": counts.captured,
            "source-errors": counts.source_errors,
            "received": counts.received,
            "enriched": counts.enriched,
            "dead-lettered": counts.dead_lettered,
            "publish-failed": counts.publish_failed,
        }
        results.update({key: str(value) for key, value in figures.items() if value is not None})
        if counts.last_change_ms:
            results["last-change"] = datetime.fromtimestamp(counts.last_change_ms / 1000, UTC).isoformat()
        if counts.last_lag_ms is not None:
            results["mean-lag-ms"] = f"{counts.last_lag_ms:.0f}"
        return results


def _state(service: ops.pebble.ServiceInfo | None) -> str:
    return ops.pebble.ServiceStatus(service.current).value if service is not None else "not planned"


def _metrics(port: int) -> str | None:
    """A runner's Prometheus text (the charm shares the pod's network), or None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as response:
            return response.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as error:
        logger.debug("no metrics on port %d: %s", port, error)
        return None


def no_source_status(missing: NoSource) -> ops.StatusBase:
    """The status for a database source that is not there (yet)."""
    if missing.problem is SourceProblem.WAITING_FOR_CREDENTIALS:
        return Status.NO_DB_CREDENTIALS()
    if missing.problem is SourceProblem.SECRET_NOT_GRANTED:
        return Status.SECRET_NOT_GRANTED()
    if missing.problem is SourceProblem.SECRET_INVALID:
        return Status.SECRET_INVALID(reason=missing.detail)
    return Status.NO_DATABASE()
