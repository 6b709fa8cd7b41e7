#!/usr/bin/env python3
"""pulsar-k8s: a ZooKeeper ensemble and Pulsar brokers, one of each per unit.

Every event runs one reconcile: the leader's application-wide work (`leader.py`), then this
unit's own (`unit.py`), both reading one snapshot of the state (`state.py`). Statuses are set
through collect-status from what the reconcile found.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import ops
from charmlibs.interfaces.tls_certificates import Mode, TLSCertificatesRequiresV4

from charms.pulsar_k8s.v0.bookkeeper import BookKeeperProvider
from charms.pulsar_k8s.v0.pulsar import PulsarProvider
from charms.pulsar_k8s.v0.pulsar_workload import (
    RemovalWatch,
    cluster_domain,
    observe_lifecycle,
    pod_fqdn,
    report_status,
)
from charms.pulsar_k8s.v0.refresh import Kubernetes, KubernetesError, RefreshPlan, arm_for_refresh, guard_statuses
from leader import LeaderWork
from literals import (
    BOOKKEEPER_RELATION,
    CERTIFICATES_RELATION,
    CLIENT_RELATION,
    CONTAINER,
    PEER,
    SUPERUSER_ROLE,
    Status,
)
from managers import auth
from managers.config import ConfigRenderer, broker_service_url, web_service_url
from managers.departure import EnsembleDeparture
from managers.ensemble import server_id
from managers.tls import certificate_request
from state import ClusterState
from unit import UnitWork
from workload import PulsarWorkload

logger = logging.getLogger(__name__)


def _count(ready: int, total: int, noun: str) -> str:
    """`3 brokers` when all are ready, `2/3 brokers` when not, `1 broker`."""
    counted = f"{ready}" if ready == total else f"{ready}/{total}"
    return f"{counted} {noun}{'' if total == 1 else 's'}"


class PulsarCharm(ops.CharmBase):
    """Wires Juju events to the reconcile and to the actions; reports statuses."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.removal = RemovalWatch(self, [PEER, BOOKKEEPER_RELATION, CLIENT_RELATION, CERTIFICATES_RELATION])
        self.workload = PulsarWorkload(self.unit.get_container(CONTAINER))
        self.kubernetes = Kubernetes(self.app.name, self.model.name)
        self.bookkeeper = BookKeeperProvider(self, BOOKKEEPER_RELATION)
        self.clients = PulsarProvider(self, CLIENT_RELATION)
        self.renderer = ConfigRenderer()
        domain = cluster_domain(self.model.name)
        fqdn = pod_fqdn(self.unit.name, self.model.name, domain)
        self.tls_request = certificate_request(self.unit.name, fqdn, self.app.name, self.model.name, domain)
        # Before the reconcile is wired: the library handles the certificates relation's events
        # first, and tells of a new certificate with certificate-available.
        self.certificates = TLSCertificatesRequiresV4(self, CERTIFICATES_RELATION, [self.tls_request], mode=Mode.UNIT)
        self._state: ClusterState | None = None
        self._failures: list[ops.StatusBase] = []
        self._unit_status: ops.StatusBase | None = None
        self._rotation: str | None = None
        self._refresh: RefreshPlan | KubernetesError | None = None
        relations = [PEER, BOOKKEEPER_RELATION, CLIENT_RELATION, CERTIFICATES_RELATION]
        observe_lifecycle(self, self._reconcile, [CONTAINER], relations)
        framework.observe(self.certificates.on.certificate_available, self._reconcile)
        framework.observe(self.on.zookeeper_storage_detaching, self._on_storage_detaching)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(self.on.collect_app_status, self._on_collect_app_status)
        # The certificates library removes every obsolete revision of this application's
        # secrets (it observes secret-remove for all of them); the reconcile learns which client
        # no longer reads a token of the retiring key.
        framework.observe(self.on.secret_remove, self._reconcile)
        framework.observe(self.on.get_admin_credentials_action, self._on_get_admin_credentials)
        framework.observe(self.on.rotate_signing_key_action, self._on_rotate_signing_key)
        framework.observe(self.on.cluster_status_action, self._on_cluster_status)
        framework.observe(self.on.pre_upgrade_check_action, self._on_pre_upgrade_check)

    def _snapshot(self) -> ClusterState:
        provided, key = self.certificates.get_assigned_certificate(self.tls_request)
        state = ClusterState(
            self,
            self.workload,
            self.bookkeeper,
            dying=self.removal.dying,
            certificate=(provided, key),
            kubernetes=self.kubernetes,
        )
        # Brokers whose plaintext ports are closed are probed over TLS, verified with the CA.
        self.workload.web_tls = state.tls.client_context() if state.tls and state.tls_only else None
        return state

    def _reconcile(self, event: ops.EventBase) -> None:
        state = self._state = self._snapshot()
        broken = event.relation if isinstance(event, ops.RelationBrokenEvent) else None
        broken_client = broken if broken is not None and broken.name == CLIENT_RELATION else None
        obsolete = (event.secret.id or "", event.revision) if isinstance(event, ops.SecretRemoveEvent) else None
        leader = LeaderWork(state, self.workload, self.bookkeeper, self.clients)
        self._failures = leader.run(broken_client, obsolete)
        self._unit_status = UnitWork(state, self.workload, self.renderer).run()
        # After this unit's own work: what it published this time counts.
        self._rotation = leader.rotation_waits_for()
        self._refresh = leader.guard_refresh()

    def _on_storage_detaching(self, _: ops.StorageDetachingEvent) -> None:
        """The unit is being removed: keep its ZooKeeper serving until the survivors no longer count it."""
        departure = EnsembleDeparture(
            self.workload, self.unit, self.model.name, cluster_domain(self.model.name), self.app.planned_units()
        )
        self._failures, self._unit_status = [], departure.run()

    # ------------------------------------------------------------------ statuses

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        if self._unit_status is not None:
            report_status(event, [*self._failures, self._unit_status], self.unit)

    def _on_collect_app_status(self, event: ops.CollectStatusEvent) -> None:
        if self._state is not None and self._state.leads:
            report_status(event, [*self._failures, *self._refresh_statuses(self._app_status(self._state))], self.app)

    def _refresh_statuses(self, cluster: ops.StatusBase) -> list[ops.StatusBase]:
        """The application's status with the refresh guard's: a roll under way, or why the guard is off."""
        return guard_statuses(
            self._refresh,
            cluster,
            self.app.name,
            Status.APP_REFRESHING,
            Status.APP_REFRESH_UNGUARDED,
            Status.APP_REFRESH_GUARD_DOWN,
        )

    def _app_status(self, state: ClusterState) -> ops.StatusBase:
        """The cluster in one line: "3 brokers, ZooKeeper 3/3, 3 bookies", or what is missing."""
        if state.config is None:
            return Status.INVALID_CONFIG(error=state.config_error)
        if not state.members:
            return Status.APP_WAITING_FOR_UNITS(joined=len(state.candidates), planned=state.planned_units)
        if not state.bookkeeper_related:
            return Status.NO_BOOKKEEPER_RELATION()
        members, serving = len(state.members), len(state.serving_members)
        brokers = len([m for m in state.ready_brokers if m in state.members])
        bookies = len(state.ready_bookies)
        fields = {
            "brokers": _count(brokers, members, "broker"),
            "serving": serving,
            "members": members,
            "bookies": _count(bookies, len(state.bookies), "bookie"),
        }
        healthy = serving == brokers == members and bookies == len(state.bookies) > 0
        if healthy and self._rotation:
            return Status.APP_ACTIVE_ROTATING(**fields, step=self._rotation)
        return Status.APP_ACTIVE(**fields) if healthy else Status.APP_DEGRADED(**fields)

    # ------------------------------------------------------------------ actions

    def _on_get_admin_credentials(self, event: ops.ActionEvent) -> None:
        state = self._snapshot()
        issuer = state.token_issuer
        if issuer is None:
            event.fail("the token signing key does not exist yet: wait for the leader")
            return
        tls = state.cluster_serves_tls
        lifetime = state.token_lifetime
        now = int(time.time())
        expires_at = now + lifetime
        results = {
            "role": SUPERUSER_ROLE,
            "token": issuer.token(SUPERUSER_ROLE, now, expires_at),
            "expires-at": datetime.fromtimestamp(expires_at, UTC).isoformat(),
            "service-url": broker_service_url(state.members, tls),
            "web-service-url": web_service_url(state.members, tls),
        }
        if tls and state.tls:
            results["tls-ca"] = state.tls.ca
        event.set_results(results)

    def _on_rotate_signing_key(self, event: ops.ActionEvent) -> None:
        """Start moving the cluster to a new token signing key; the reconcile takes it from there."""
        if not self.unit.is_leader():
            event.fail("run it on the leader unit (the one marked * in juju status)")
            return
        state = self._snapshot()
        keys = state.signing_keys
        if keys is None or not state.leads:
            event.fail("the token signing key does not exist yet: wait for the leader")
            return
        if keys.rotating:
            event.fail("a rotation is under way; run it again once the application status no longer mentions it")
            return
        rotated = keys.begin_rotation(auth.SigningKey.generate(int(time.time())))
        state.store_signing_keys(rotated)
        logger.info("token signing key rotation: %s -> %s", keys.active.kid, rotated.next and rotated.next.kid)
        event.set_results(
            {
                "new-key-id": rotated.next.kid if rotated.next else "",
                "retiring-key-id": keys.active.kid,
                "message": (
                    "the brokers publish the new key, then every token is issued again with it; the old"
                    " key's tokens are refused once every client has read its new token"
                ),
            }
        )
        self._reconcile(event)

    def _on_cluster_status(self, event: ops.ActionEvent) -> None:
        state = self._snapshot()
        if state.peers is None:
            event.fail("the cluster peer relation does not exist yet")
            return
        zookeeper, brokers = {}, {}
        for unit in [self.unit, *state.peer_units]:
            probe = state.probes[server_id(unit.name)]
            label = unit.name.replace("/", "-")
            mode = probe.zookeeper_mode
            zookeeper[label] = mode or ("not serving" if mode == "" else "down")
            brokers[label] = "ready" if probe.broker_ready else "not ready"
        bookies = {b.unit.replace("/", "-"): "ready" if b.ready else "not ready" for b in state.bookies}
        results: dict[str, object] = {
            "cluster-name": state.initialized or "not initialized",
            "zookeeper": zookeeper,
            "brokers": brokers,
            "bookies": bookies or "none",
        }
        quorum = state.ledger_quorum()
        results["ledger-quorum"] = (
            quorum
            if isinstance(quorum, str)
            else {
                "ensemble-size": str(quorum.ensemble_size),
                "write-quorum": str(quorum.write_quorum),
                "ack-quorum": str(quorum.ack_quorum),
            }
        )
        event.set_results(results)

    def _on_pre_upgrade_check(self, event: ops.ActionEvent) -> None:
        """Check that a refresh may start, and arm the guard: the highest unit refreshes first."""
        if not self.unit.is_leader():
            event.fail("run it on the leader unit: juju run pulsar-k8s/leader pre-upgrade-check")
            return
        state = self._snapshot()
        if not state.leads:
            event.fail("the cluster peer relation does not exist yet, or this unit is being removed")
            return
        members, serving = len(state.members), len(state.serving_members)
        if not members or serving * 2 <= members:
            event.fail(f"the ZooKeeper ensemble lacks a serving quorum ({serving}/{members} members serve)")
            return
        arm_for_refresh(event, state.refresh, self.app.name)


if __name__ == "__main__":  # pragma: nocover
    ops.main(PulsarCharm)
