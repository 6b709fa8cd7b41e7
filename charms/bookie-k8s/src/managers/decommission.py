"""Taking a bookie out of the cluster before its storage goes (`juju remove-unit`).

Juju runs storage-detaching on the dying unit while its pod and volumes are still there, and
removes the pod only once the unit's hooks are done: the decommission waits in that hook
until BookKeeper has re-replicated every ledger fragment the bookie held. That wait is the
refusal to lose data: a fragment can only move to a bookie outside its ledger's ensemble, so
with fewer bookies left than the ensemble size the unit stays until a bookie is added (the
remaining units say so), or until the operator forces it out (`juju remove-unit --force`).

The hook sets the unit's status as it goes (Juju shows a status-set at once), since it may
wait for minutes.
"""

from __future__ import annotations

import logging
import time

import ops

from charms.pulsar_k8s.v0.pulsar_workload import WorkloadCommandError
from literals import Status
from workload import BookieWorkload

logger = logging.getLogger(__name__)

# One decommission command: the JVM's start, an audit, and the re-replication it waits for.
ATTEMPT_TIMEOUT = 600.0
RETRY_INTERVAL = 15.0


class Decommission:
    """The decommission of this unit's bookie, as its storage is about to go."""

    def __init__(self, workload: BookieWorkload, unit: ops.Unit, bookie_id: str) -> None:
        self.workload = workload
        self.unit = unit
        self.bookie_id = bookie_id

    def run(self) -> ops.StatusBase:
        """Stop the bookie, wait until its ledgers live elsewhere, empty its storage; the status it ends with."""
        if not self.workload.can_connect():
            # The pod is gone: autorecovery re-replicates its ledgers once the bookie is missed.
            logger.error("cannot decommission %s: its container does not answer", self.bookie_id)
            return Status.NOT_DECOMMISSIONED(reason="its container does not answer")
        if not self.workload.holds_data():  # never registered, or decommissioned already
            logger.info("%s holds no bookie data: nothing to decommission", self.bookie_id)
            return Status.DECOMMISSIONED()
        logger.info("decommissioning %s: stopping it, then waiting for its ledgers to be re-replicated", self.bookie_id)
        self.workload.stop_bookie()
        attempt = 1
        while True:
            self.unit.status = Status.DECOMMISSIONING(attempt=attempt)
            try:
                # Copy its fragments first, then let BookKeeper's decommission confirm that no
                # ledger is left on it and drop its cookie (see `recover_ledgers` for why
                # autorecovery alone is not enough).
                self.workload.recover_ledgers(self.bookie_id, ATTEMPT_TIMEOUT)
                self.workload.decommission(self.bookie_id, ATTEMPT_TIMEOUT)
                break
            except WorkloadCommandError as error:
                # Not yet possible (the bookie still registered while its session ends, no
                # bookie to move a fragment to, the metadata store out of reach): wait, retry.
                logger.warning("decommission of %s, attempt %d: %s", self.bookie_id, attempt, error.output or error)
                self.unit.status = Status.DECOMMISSION_RETRYING(attempt=attempt, error=str(error))
                time.sleep(RETRY_INTERVAL)
                attempt += 1
        self.workload.wipe_data()
        logger.info("%s decommissioned: its ledgers are on the other bookies, its storage is empty", self.bookie_id)
        return Status.DECOMMISSIONED()
