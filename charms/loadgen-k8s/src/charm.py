#!/usr/bin/env python3
"""loadgen-k8s: synthetic IoT load for a pulsar-k8s cluster, driven by actions.

Every event runs one reconcile (`loadtests.py`) over one snapshot of the peer state
(`state.py`); the actions start, stop and report load tests through the same snapshot.
Statuses come from collect-status.
"""

from __future__ import annotations

import logging

import ops
from loadtests import ActionError, LoadTests

from charms.pulsar_k8s.v0.pulsar import PulsarRequirer
from charms.pulsar_k8s.v0.pulsar_workload import ImageProblem, observe_lifecycle, report_status
from literals import CONTAINER, PEER, PULSAR_RELATION, Status
from state import LoadgenState
from workload import LoadgenWorkload

logger = logging.getLogger(__name__)


class LoadgenCharm(ops.CharmBase):
    """Wires Juju events to the reconcile and to the actions; reports statuses."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.workload = LoadgenWorkload(self.unit.get_container(CONTAINER))
        self.pulsar = PulsarRequirer(self, PULSAR_RELATION)
        self._statuses: list[ops.StatusBase] = []
        observe_lifecycle(self, self._reconcile, [CONTAINER], [PULSAR_RELATION, PEER])
        framework.observe(self.on[CONTAINER].pebble_custom_notice, self._reconcile)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(self.on.start_load_test_action, self._on_start_load_test)
        framework.observe(self.on.stop_load_test_action, self._on_stop_load_test)
        framework.observe(self.on.load_test_results_action, self._on_load_test_results)

    def _blocker(self) -> ops.StatusBase | None:
        """What keeps this unit from running load at all, or None."""
        if problem := self.workload.check_image(self.unit):
            return Status.NO_PEBBLE() if problem is ImageProblem.NO_PEBBLE else Status.NO_PULSAR_IMAGE()
        if self.pulsar.relation is None:
            return Status.NO_PULSAR_RELATION()
        if error := self.pulsar.error():
            return Status.REFUSED(reason=error)
        if self.pulsar.connection() is None:
            return Status.NO_GRANT()
        return None

    def _reconcile(self, _: ops.EventBase) -> None:
        self.pulsar.publish_request()
        if (tests := self._load_tests()) is not None:
            tests.reconcile(self.pulsar.connection())
            self._statuses += tests.statuses

    def _load_tests(self) -> LoadTests | None:
        """The load tests over a fresh state snapshot; None (and a status) without a container."""
        blocker = self._blocker()
        self._statuses = [blocker] if blocker else []
        if not self.workload.can_connect():
            return None
        if self.pulsar.relation is None:
            self.workload.remove_token()
            self.workload.remove_ca()
        return LoadTests(self.unit, self.workload, self.pulsar, LoadgenState(self))

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        report_status(event, self._statuses, self.unit)

    def _run_action(self, event: ops.ActionEvent, name: str) -> None:
        tests = self._load_tests()
        if tests is None:
            event.fail("the loadgen container is not reachable yet: try again shortly")
            return
        try:
            if name == "start":
                results = tests.start(dict(event.params), self.pulsar.connection())
            elif name == "stop":
                results = tests.stop()
            else:
                if event.params.get("follow"):
                    tests.follow(event.log)
                tests.reconcile(self.pulsar.connection())
                results = tests.results(str(event.params.get("test-id") or ""))
        except ActionError as error:
            event.fail(str(error))
            return
        finally:
            self._statuses += tests.statuses
        event.set_results(results)

    def _on_start_load_test(self, event: ops.ActionEvent) -> None:
        self._run_action(event, "start")

    def _on_stop_load_test(self, event: ops.ActionEvent) -> None:
        self._run_action(event, "stop")

    def _on_load_test_results(self, event: ops.ActionEvent) -> None:
        self._run_action(event, "results")


if __name__ == "__main__":  # pragma: nocover
    ops.main(LoadgenCharm)
