"""The change data capture pipeline: the reconcile every event runs, the teardown, and the actions.

The leader runs the pipeline (one replication slot can feed one reader); other units stand by.
What the pipeline runs with is always rendered whole from the config, the database source and
the Pulsar grant; a change of any of them restarts the service it concerns on replan.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime

import ops
from replication import DatabaseError, drop_slot_and_publication, prepare, slot_lag_bytes

from charms.pulsar_k8s.v0.pulsar import Connection
from literals import (
    CA_FILE,
    FUNCTION_METRICS_PORT,
    FUNCTION_MODULE,
    FUNCTION_SERVICE,
    LAYER,
    SOURCE_METRICS_PORT,
    SOURCE_SERVICE,
    TOKEN_FILE,
    Status,
)
from managers.metrics import pipeline_counts
from managers.pipeline import Names, function_values, source_values
from managers.postgres import NoSource, PostgresConnection, SourceProblem
from managers.settings import CdcSettings
from workload import CdcWorkload

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inputs:
    """Everything the pipeline is made from, once all of it is there."""

    settings: CdcSettings
    pulsar: Connection
    database: PostgresConnection
    enrichment: str  # the function module's source: the built-in or the user's resource


class Capture:
    """One event's work on the pipeline; `statuses` says what it found."""

    def __init__(self, app: str, leader: bool, workload: CdcWorkload) -> None:
        self.app = app
        self.leader = leader
        self.workload = workload
        self.statuses: list[ops.StatusBase] = []

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
        names = Names(self.app, inputs.pulsar.namespace, inputs.settings.topic_prefix)
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
        self._run(inputs, names)

    def _run(self, inputs: Inputs, names: Names) -> None:
        archive = self.workload.connector_archive()
        if archive is None:
            self.statuses.append(Status.NO_CONNECTOR())
            return
        self.workload.write_private(TOKEN_FILE, inputs.pulsar.token + "\n")
        ca_file = None
        if inputs.database.tls and inputs.database.tls_ca:
            self.workload.write_private(CA_FILE, inputs.database.tls_ca)
            ca_file = CA_FILE
        else:
            self.workload.remove(CA_FILE)
        self.workload.render_configs(
            source_values(names, inputs.settings, inputs.database, archive, ca_file),
            function_values(names, inputs.settings, FUNCTION_MODULE),
            inputs.enrichment,
        )
        layer = self.workload.layer(inputs.pulsar.service_url, inputs.database.password)
        if self.workload.apply_layer(LAYER, layer):
            logger.info("pipeline (re)started from %s source %s", inputs.database.source, inputs.database)
        running = self.workload.running([SOURCE_SERVICE, FUNCTION_SERVICE])
        waiting = sorted({SOURCE_SERVICE, FUNCTION_SERVICE} - running)
        if not waiting and not self.workload.serving():
            waiting = [SOURCE_SERVICE, FUNCTION_SERVICE]  # running, not answering yet
        tables = ", ".join(str(t) for t in inputs.settings.tables)
        source = inputs.database.source
        if waiting:
            self.statuses.append(Status.STARTING(services=" and ".join(waiting), source=source))
        else:
            self.statuses.append(Status.CAPTURING(tables=tables, database=inputs.database.database, source=source))

    def teardown(self) -> None:
        """The database source is going away: free the slot and the publication, and stop.

        It connects as the pipeline last did (its rendered config and its service's environment):
        the relation's credentials may soon be gone, since the provider drops its user when the
        relation ends, so the SQL comes first. Terminating the walsender ends the source; once
        the services are stopped, a second pass drops a slot a reconnecting source made again.
        """
        last = self.workload.last_source()
        if last is None:
            self.workload.stop_pipeline()
            return
        database, slot, publication = last
        try:
            done = drop_slot_and_publication(database, slot, publication)
            self.workload.stop_pipeline()
            done += drop_slot_and_publication(database, slot, publication)
        except DatabaseError as error:
            self.workload.stop_pipeline()
            logger.error("could not drop slot %s / publication %s: %s", slot, publication, error)
            self.statuses.append(Status.TEARDOWN_FAILED(slot=slot, reason=str(error)))
            return
        self.workload.forget_source()
        logger.info("teardown: %s", "; ".join(done) or "nothing was left")

    def report(self, database: PostgresConnection | NoSource, names: Names | None) -> dict[str, str]:
        """cdc-status: the database's view of the slot, the runners' counters, the services' states."""
        services = self.workload.container.get_services(SOURCE_SERVICE, FUNCTION_SERVICE)
        results = {
            "connector": _state(services.get(SOURCE_SERVICE)),
            "function": _state(services.get(FUNCTION_SERVICE)),
        }
        if isinstance(database, NoSource):
            results["source"] = database.problem.value
        else:
            results["source"] = (
                f"{database.source}: {database.user}@{database.host}:{database.port}/{database.database}"
            )
            if names is not None:
                results["slot"] = names.slot
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
