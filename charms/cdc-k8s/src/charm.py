#!/usr/bin/env python3
"""cdc-k8s: change data capture from PostgreSQL into Pulsar, enriched by a Python function.

Every event runs one reconcile (`capture.py`) over the config, the database source
(`database.py`), the Pulsar grant and the peer state (`state.py`); removing the database
relation or the application tears the replication slot down. The `resnapshot` action re-reads
the captured tables through the same reconcile. Statuses come from collect-status.
"""

from __future__ import annotations

import enum
import logging

import ops
from capture import ActionError, Capture, Inputs, no_source_status
from database import DatabaseSource

from charms.pulsar_k8s.v0.pulsar import PulsarRequirer
from charms.pulsar_k8s.v0.pulsar_workload import ImageProblem, InvalidConfigError, observe_lifecycle, report_status
from literals import (
    CONTAINER,
    CREDENTIALS_OPTION,
    DATABASE_RELATION,
    ENRICHMENT_RESOURCE,
    PEER,
    PULSAR_RELATION,
    Status,
)
from managers.pipeline import Names
from managers.postgres import NoSource, PostgresConnection, SourceProblem
from managers.settings import CdcSettings
from state import CdcState
from workload import CdcWorkload

logger = logging.getLogger(__name__)


class Refused(enum.Enum):
    """The user's enrichment resource was refused (see `_enrichment`)."""

    REFUSED = "refused"


REFUSED = Refused.REFUSED


class CdcCharm(ops.CharmBase):
    """Wires Juju events to the reconcile, the teardown and the actions; reports statuses."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.workload = CdcWorkload(self.unit.get_container(CONTAINER))
        self.pulsar = PulsarRequirer(self, PULSAR_RELATION)
        self._statuses: list[ops.StatusBase] = []
        observe_lifecycle(self, self._reconcile, [CONTAINER], [PULSAR_RELATION, DATABASE_RELATION, PEER])
        framework.observe(self.on[DATABASE_RELATION].relation_departed, self._on_database_departed)
        framework.observe(self.on.remove, self._on_remove)
        framework.observe(self.on.cdc_status_action, self._on_cdc_status)
        framework.observe(self.on.resnapshot_action, self._on_resnapshot)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)

    def _capture(self) -> Capture | None:
        """The pipeline over this event's view; None (and a status) while the container is not usable."""
        if problem := self.workload.check_image(self.unit):
            self._statuses = [Status.NO_PEBBLE() if problem is ImageProblem.NO_PEBBLE else Status.NO_PULSAR_IMAGE()]
            return None
        return Capture(self.app.name, self.unit.is_leader(), self.workload, CdcState(self))

    def _reconcile(self, _: ops.EventBase) -> None:
        self.pulsar.publish_request()
        if (pipeline := self._pipeline()) is None:
            return
        capture, inputs, gone = pipeline
        capture.reconcile(inputs, database_gone=gone)
        self._done(capture)

    def _pipeline(self) -> tuple[Capture, Inputs | None, bool] | None:
        """The pipeline, its inputs (None while one is missing), and whether the database is gone.

        None (and the statuses say why) when nothing of the pipeline may change.
        """
        self._statuses = []
        try:
            settings = CdcSettings.parse(self.config)
        except InvalidConfigError as error:
            # The pipeline keeps running as it was: nothing below runs on a config we cannot read.
            self._statuses = [Status.INVALID_CONFIG(message=str(error))]
            return None
        database = DatabaseSource(self, DATABASE_RELATION, settings.database, settings.credentials_secret)
        database.publish_request()
        if (capture := self._capture()) is None:
            return None
        source = database.connection()
        inputs = self._inputs(settings, source)
        if isinstance(inputs, Refused):
            return None  # a refused enrichment module: the pipeline keeps running as it was
        gone = isinstance(source, NoSource) and source.problem is SourceProblem.NO_SOURCE
        return capture, inputs, gone

    def _done(self, capture: Capture) -> None:
        # What the pipeline found first: a slot left behind matters more than a missing relation.
        self._statuses = capture.statuses + self._statuses
        capture.state.save()

    def _inputs(self, settings: CdcSettings, source: PostgresConnection | NoSource) -> Inputs | Refused | None:
        """What the pipeline is made of, or None with the statuses saying what is missing.

        REFUSED when the user's enrichment module cannot serve: nothing may change then.
        """
        pulsar = self.pulsar.connection()
        if self.pulsar.relation is None:
            self._statuses.append(Status.NO_PULSAR_RELATION())
        elif error := self.pulsar.error():
            self._statuses.append(Status.PULSAR_REFUSED(reason=error))
        elif pulsar is None:
            self._statuses.append(Status.NO_GRANT())
        if isinstance(source, NoSource):
            self._statuses.append(no_source_status(source))
        if pulsar is None or isinstance(source, NoSource):
            return None
        if (enrichment := self._enrichment()) is None:
            return REFUSED
        return Inputs(settings, pulsar, source, enrichment)

    def _enrichment(self) -> str | None:
        """The function module: the user's `enrichment` resource if attached and sound, else the built-in."""
        try:
            path = self.model.resources.fetch(ENRICHMENT_RESOURCE)
        except (ops.ModelError, NameError):
            return self.workload.builtin_enrichment()
        try:
            module = path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            self._statuses.append(Status.BAD_ENRICHMENT(reason=f"cannot read it: {error}"))
            return None
        if not module.strip():  # an empty upload is how `juju attach-resource` takes a resource back
            return self.workload.builtin_enrichment()
        if problem := self.workload.check_enrichment(module):
            self._statuses.append(Status.BAD_ENRICHMENT(reason=problem))
            return None
        return module

    def _on_database_departed(self, event: ops.RelationDepartedEvent) -> None:
        # The last database unit leaves: the relation is being removed (or the database goes).
        # Tear down now, while its user still exists: the provider drops it when the relation ends.
        if event.relation.units or self.config.get(CREDENTIALS_OPTION) or not self.unit.is_leader():
            return
        if (capture := self._capture()) is not None:
            capture.teardown()
            capture.state.save()
            self._statuses = [*capture.statuses, Status.NO_DATABASE()]

    def _on_remove(self, _: ops.RemoveEvent) -> None:
        # Only when the application goes: a unit going in a scale-down leaves the slot to the next leader.
        if self.app.planned_units() > 0 or not self.unit.is_leader():
            return
        if (capture := self._capture()) is not None:
            capture.teardown()

    def _on_cdc_status(self, event: ops.ActionEvent) -> None:
        if not self.unit.is_leader():
            event.fail(f"the leader runs the pipeline: run cdc-status on {self.app.name}/leader")
            return
        try:
            settings = CdcSettings.parse(self.config)
        except InvalidConfigError as error:
            event.fail(str(error))
            return
        if (capture := self._capture()) is None:
            event.fail("the cdc container is not reachable yet: try again shortly")
            return
        database = DatabaseSource(self, DATABASE_RELATION, settings.database, settings.credentials_secret)
        pulsar = self.pulsar.connection()
        generation = capture.state.generation
        names = Names(self.app.name, pulsar.namespace, settings.topic_prefix, generation) if pulsar else None
        event.set_results(capture.report(database.connection(), names))

    def _on_resnapshot(self, event: ops.ActionEvent) -> None:
        if not self.unit.is_leader():
            event.fail(f"the leader runs the pipeline: run resnapshot on {self.app.name}/leader")
            return
        if (pipeline := self._pipeline()) is not None:
            capture, inputs, gone = pipeline
            if inputs is not None and not gone:
                try:
                    event.set_results(capture.resnapshot(inputs, confirm=bool(event.params.get("confirm"))))
                except ActionError as error:
                    event.fail(str(error))
                finally:
                    self._done(capture)
                return
        why = self._statuses[0].message if self._statuses else "the cdc container is not reachable yet"
        event.fail(f"no pipeline runs as configured, nothing to re-read: {why}")

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        report_status(event, self._statuses, self.unit)


if __name__ == "__main__":  # pragma: nocover
    ops.main(CdcCharm)
