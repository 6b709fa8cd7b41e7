"""The unit's own work: its config files, its Pebble layer, restarts under the lock, readiness.

Run after the leader's application-wide work, on every unit (the leader included). Each
gate returns the status that says what the unit waits for.
"""

from __future__ import annotations

import ops

from charms.pulsar_k8s.v0.pulsar_workload import ImageProblem, WorkloadCommandError
from charms.pulsar_k8s.v0.rolling_restart import DesiredWorkload, WorkloadFile
from literals import (
    BROKER_CONF,
    BROKER_SERVICE,
    BROKER_SERVICE_PORT,
    BROKER_SERVICE_PORT_TLS,
    BROKER_STATUS_FILE,
    BROKER_TOKEN_FILE,
    BROKER_WEB_PORT,
    BROKER_WEB_PORT_TLS,
    JAAS_CONF,
    KEY_SET,
    MYID_PATH,
    OPENID_CONFIGURATION,
    RESTART_WAIT,
    SERVING_MODES,
    SUPERUSER_ROLE,
    TLS_CA,
    TLS_CHAIN,
    TLS_KEY,
    ZOOKEEPER_CONF,
    ZOOKEEPER_DATA_DIR,
    ZOOKEEPER_LOG_DIR,
    ZOOKEEPER_SERVICE,
    Status,
)
from managers import auth
from managers.config import CharmConfig, ConfigRenderer
from state import ClusterState
from workload import LAYER, PulsarWorkload


class UnitWork:
    """Bring this unit's ZooKeeper and broker to what the cluster state says they should run."""

    def __init__(self, state: ClusterState, workload: PulsarWorkload, renderer: ConfigRenderer) -> None:
        self.state = state
        self.workload = workload
        self.renderer = renderer

    def run(self) -> ops.StatusBase:
        """Do this unit's work; return its status."""
        status = self._bring_up()
        self._report_serving(isinstance(status, ops.ActiveStatus))
        return status

    def _report_serving(self, serving: bool) -> None:
        """Publish whether this unit serves, and the revision its pod runs, in one write.

        Written together by the pod itself: the leader's refresh guard counts a refreshed unit
        only once its new pod says it serves (the old pod's `serving` never carries over).
        """
        state = self.state
        if state.dying or state.peers is None or state.peer_data_error:
            return
        revision = state.own_pod_revision()
        if state.unit_data.serving != serving or state.unit_data.pod_revision != revision:
            state.unit_data.serving = serving
            state.unit_data.pod_revision = revision
            state.save()

    def _bring_up(self) -> ops.StatusBase:
        state, workload = self.state, self.workload
        if state.dying:
            return Status.DYING()
        if problem := workload.check_image(state.unit):
            return Status.NO_PEBBLE() if problem is ImageProblem.NO_PEBBLE else Status.NO_PULSAR_IMAGE()
        if state.config is None:
            return Status.INVALID_CONFIG(error=state.config_error)
        if state.initialized and state.initialized != state.config.cluster_name:
            return Status.CLUSTER_NAME_FIXED(name=state.initialized)
        if state.peers is None:
            return Status.NO_PEERS()
        if state.peer_data_error:
            return Status.INVALID_PEER_DATA(error=state.peer_data_error)
        state.unit_data.host = state.fqdn
        state.save()
        if not state.members:
            return Status.WAITING_FOR_UNITS(joined=len(state.candidates), planned=state.planned_units)
        if not state.is_member:
            return Status.NOT_A_MEMBER()
        if state.credentials is None:
            return Status.NO_CREDENTIALS()
        try:
            workload.own_directories(ZOOKEEPER_DATA_DIR, ZOOKEEPER_LOG_DIR)
        except WorkloadCommandError as error:
            return Status.STORAGE_NOT_OWNED(error=str(error))

        broker_conf = self._broker_conf(state.config)
        desired = self._desired(state.config, broker_conf if isinstance(broker_conf, str) else None)
        waiting = state.restarts().roll(workload, desired, self._serving, settle=self._settle)
        if waiting is not None:
            services = ", ".join(waiting.services)
            if waiting.holder:
                return Status.RESTART_HELD(services=services, holder=waiting.holder)
            return Status.WAITING_TO_RESTART(services=services)
        self._report_token_keys()

        mode = workload.zookeeper_mode()
        if mode not in SERVING_MODES:
            return Status.ZK_QUORUM(ready=len(state.serving_members), total=len(state.members))
        if not state.initialized:
            return Status.WAITING_FOR_INIT()
        if not isinstance(broker_conf, str):
            return broker_conf
        tls = state.tls is not None
        ports = [] if state.tls_only else [BROKER_SERVICE_PORT, BROKER_WEB_PORT]
        state.unit.set_ports(*ports, *([BROKER_SERVICE_PORT_TLS, BROKER_WEB_PORT_TLS] if tls else []))
        ready = workload.broker_ready(state.fqdn)
        if state.unit_data.tls != (tls and ready):
            state.unit_data.tls = tls and ready
            state.save()
        if not ready:
            return Status.BROKER_STARTING()
        return Status.ACTIVE(role=mode)

    def _broker_conf(self, config: CharmConfig) -> str | ops.StatusBase:
        """broker.conf, or the status saying why the broker is left as it is.

        Ready bookies and initialized metadata gate the broker's first start only: a running
        broker keeps its config (and is not restarted) while the ready bookies dip.
        """
        state = self.state
        if not state.bookkeeper_related:
            return Status.NO_BOOKKEEPER_RELATION()
        if config.tls_required and state.tls is None:
            return Status.WAITING_FOR_CERTIFICATE() if state.tls_related else Status.TLS_NOT_RELATED()
        if state.signing_keys is None:
            return Status.NO_SIGNING_KEY()
        quorum = state.ledger_quorum()
        if isinstance(quorum, str):
            return Status.INVALID_CONFIG(error=quorum)
        ready = len(state.ready_bookies)
        may_start = ready >= quorum.ensemble_size and bool(state.initialized)
        if not may_start and not self.workload.is_running(BROKER_SERVICE):
            return Status.WAITING_FOR_BOOKIES(ready=ready, needed=max(quorum.ensemble_size, 1))
        return self.renderer.broker(
            config,
            state.zookeeper_hosts,
            state.fqdn,
            quorum,
            audience=state.app.name,
            tls=state.tls is not None,
        )

    def _desired(self, config: CharmConfig, broker_conf: str | None) -> DesiredWorkload:
        assert self.state.credentials is not None  # gated in `run`
        files = [
            WorkloadFile(ZOOKEEPER_CONF, self.renderer.zookeeper(self.state.members)),
            WorkloadFile(MYID_PATH, f"{self.state.server_id}\n"),
            WorkloadFile(JAAS_CONF, self.renderer.jaas(self.state.credentials), 0o600),
        ]
        broker_reads = [BROKER_CONF, JAAS_CONF]
        # Read by the broker as it goes (no restart): the key set it verifies tokens with, and
        # its own token, read from the file for each connection it makes.
        if (keys := self.state.signing_keys) and (issuer := self.state.token_issuer):
            files += [
                WorkloadFile(OPENID_CONFIGURATION, auth.openid_configuration()),
                WorkloadFile(KEY_SET, keys.key_set()),
                WorkloadFile(BROKER_TOKEN_FILE, issuer.broker_token(SUPERUSER_ROLE), 0o600),
            ]
        if broker_conf is not None:
            files += [WorkloadFile(BROKER_CONF, broker_conf, 0o600), WorkloadFile(BROKER_STATUS_FILE, "ok\n")]
            if tls := self.state.tls:
                # A renewed certificate restarts the broker under the lock, like any change.
                files += [
                    WorkloadFile(TLS_CHAIN, tls.chain),
                    WorkloadFile(TLS_KEY, tls.private_key, 0o600),
                    WorkloadFile(TLS_CA, tls.ca),
                ]
                broker_reads += [TLS_CHAIN, TLS_KEY, TLS_CA]
        broker_heap = config.broker_heap if broker_conf else None
        layer = self.workload.layer(config.zookeeper_heap, broker_heap, self.state.tls_only)
        reads = {ZOOKEEPER_SERVICE: (ZOOKEEPER_CONF, MYID_PATH, JAAS_CONF), BROKER_SERVICE: tuple(broker_reads)}
        return DesiredWorkload(LAYER, layer, tuple(files), reads)

    def _report_token_keys(self) -> None:
        """Say in peer data which keys this unit's broker verifies, and which signed its own token.

        The files are written (the roll did not wait), and the broker reads them as it goes:
        the leader moves a rotation on from these.
        """
        state, keys = self.state, self.state.signing_keys
        if keys is None:
            return
        if state.unit_data.token_keys != keys.kids or state.unit_data.token_key != keys.active.kid:
            state.unit_data.token_keys = keys.kids
            state.unit_data.token_key = keys.active.kid
            state.save()

    def _serving(self, services: list[str]) -> bool:
        """Whether each of the named services of this unit serves again."""
        checks = {
            ZOOKEEPER_SERVICE: lambda: self.workload.zookeeper_mode() in SERVING_MODES,
            BROKER_SERVICE: lambda: self.workload.broker_ready(self.state.fqdn),
        }
        return all(checks[name]() for name in services if name in checks)

    def _settle(self, services: list[str]) -> None:
        if ZOOKEEPER_SERVICE in services:
            # ZooKeeper serves again within seconds: wait here, not for the next event.
            self.workload.wait_for_zookeeper(RESTART_WAIT)
