"""Leaving the ZooKeeper ensemble before the pod goes (`juju remove-unit`).

Juju runs storage-detaching on the dying unit while its pod is still up, and deletes the pod
only once the unit's hooks are done. The leader drops the dying server from the published
ensemble as soon as the unit departs, and the survivors restart into the smaller ensemble
one at a time. Until each has, the old ensemble still counts the dying server: were it gone
already, a survivor's restart would leave, say, two of four old members running, less than
a quorum. So the dying unit waits in that hook, its ZooKeeper serving, until every survivor
runs an ensemble without it and serves (ZooKeeper's `conf` and `srvr`).

Shrinking one server at a time is what keeps this safe: any majority of the new ensemble
meets any majority of the old one, so the servers on either configuration cannot elect two
leaders. The dying server must not lead meanwhile: a survivor restarted without it in its
ensemble ignores it, and so can follow no leader. ZooKeeper prefers the highest server id
when elections tie, and a scale-down removes the highest, so it often leads: the dying unit
then restarts its server, and the others elect a survivor in the seconds it takes to return.

A dying leader does not wait: the survivors' restarts need the restart lock, which only a
leader hands out, and Juju elects another only once this unit is gone. Its ensemble then
shrinks after it has left, with the short window that waiting avoids elsewhere (the README
says so).
"""

from __future__ import annotations

import logging
import time

import ops

from charms.pulsar_k8s.v0.pulsar_workload import pod_fqdn
from literals import ZOOKEEPER_SERVICE, Status
from managers.ensemble import server_id, should_hand_over, still_counting
from workload import PulsarWorkload

logger = logging.getLogger(__name__)

# Each survivor restarts in turn (a JVM start and a quorum sync each): minutes at most. A
# survivor that never comes back must not keep the unit forever; the ensemble shrinks anyway.
LEAVE_TIMEOUT = 900.0
POLL_INTERVAL = 2.0
# How long a restarted server may take to serve again, before the wait goes on regardless.
RESTART_TIMEOUT = 120.0


class EnsembleDeparture:
    """The dying unit's wait, as its storage is about to go, until the survivors no longer count its server."""

    def __init__(
        self, workload: PulsarWorkload, unit: ops.Unit, model_name: str, domain: str, planned_units: int
    ) -> None:
        self.workload = workload
        self.unit = unit
        self.server = server_id(unit.name)
        app = unit.name.rsplit("/", 1)[0]
        # On Kubernetes the survivors of a scale-down are the lowest ordinals.
        self.survivors = {
            server_id(f"{app}/{n}"): pod_fqdn(f"{app}/{n}", model_name, domain) for n in range(planned_units)
        }

    def run(self) -> ops.StatusBase:
        """Wait until no surviving server counts this one; the status the unit ends with."""
        if not self.survivors:
            return Status.LEFT_ENSEMBLE()
        if self.unit.is_leader():
            logger.warning("%s leaves without waiting for the ensemble: it is the leader", self.unit.name)
            return Status.LEFT_UNWAITED(reason="it was the leader")
        deadline = time.monotonic() + LEAVE_TIMEOUT
        while True:
            survivors = {sid: self._look(host) for sid, host in self.survivors.items()}
            pending = still_counting(self.server, survivors)
            leads = should_hand_over(self.server, self.workload.zookeeper_mode(), survivors)
            if pending and leads and time.monotonic() <= deadline:
                logger.info(
                    "server %d leads ZooKeeper as it leaves: restarting it, so that a survivor leads", self.server
                )
                self.unit.status = Status.HANDING_OVER()
                self.workload.restart(ZOOKEEPER_SERVICE)
                self.workload.wait_for_zookeeper(RESTART_TIMEOUT)
                continue
            if not pending:
                logger.info("server %d left the ZooKeeper ensemble: every survivor serves without it", self.server)
                return Status.LEFT_ENSEMBLE()
            if time.monotonic() > deadline:
                logger.warning(
                    "server %d leaves after %.0fs while servers %s still count it", self.server, LEAVE_TIMEOUT, pending
                )
                return Status.LEFT_UNWAITED(reason=f"servers {_ids(pending)} still counted it")
            self.unit.status = Status.LEAVING_ENSEMBLE(pending=_ids(pending))
            time.sleep(POLL_INTERVAL)

    def _look(self, host: str) -> tuple[set[int] | None, str | None]:
        return self.workload.zookeeper_membership(host), self.workload.zookeeper_mode(host)


def _ids(servers: list[int]) -> str:
    return ", ".join(str(s) for s in servers)
