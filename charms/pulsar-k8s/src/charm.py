#!/usr/bin/env python3
"""pulsar-k8s: a ZooKeeper ensemble and Pulsar brokers, one of each per unit."""

from __future__ import annotations

import logging

import ops

from charms.pulsar_k8s.v0.bookkeeper import BookKeeperProvider, MetadataStore
from charms.pulsar_k8s.v0.pulsar import Grant, InvalidRequestError, PulsarProvider
from charms.pulsar_k8s.v0.pulsar_workload import ImageProblem, InvalidConfigError, WorkloadCommandError, pod_fqdn
from charms.pulsar_k8s.v0.rolling_restart import RollingRestart, fingerprint
from literals import (
    BOOKKEEPER_RELATION,
    BROKER_CONF,
    BROKER_SERVICE,
    BROKER_SERVICE_PORT,
    BROKER_STATUS_FILE,
    BROKER_WEB_PORT,
    CLIENT_RELATION,
    CONTAINER,
    MYID_PATH,
    PEER,
    RESTART_WAIT,
    SECRET_KEY_LABEL,
    SUPERUSER_ROLE,
    ZOOKEEPER_CONF,
    ZOOKEEPER_SERVICE,
    Status,
)
from managers import auth, ensemble
from managers.admin import AdminError, PulsarAdmin
from managers.config import (
    CharmConfig,
    ConfigRenderer,
    LedgerQuorum,
    bookkeeper_metadata_service_uri,
    ledger_quorum,
    zookeeper_connect,
)
from managers.ensemble import Member
from workload import LAYER, PulsarWorkload

logger = logging.getLogger(__name__)

SERVING_MODES = ("leader", "follower", "standalone")


class PulsarCharm(ops.CharmBase):
    """Wires Juju events to the bring-up of ZooKeeper, cluster metadata and the broker."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.workload = PulsarWorkload(self.unit.get_container(CONTAINER))
        self.bookkeeper = BookKeeperProvider(self, BOOKKEEPER_RELATION)
        self.clients = PulsarProvider(self, CLIENT_RELATION)
        self.restarts = RollingRestart(self, PEER)
        self.renderer = ConfigRenderer()
        container = self.on[CONTAINER]
        for event in (
            self.on.install,
            self.on.start,
            self.on.config_changed,
            self.on.upgrade_charm,
            self.on.update_status,
            self.on.leader_elected,
            self.on.secret_changed,
            container.pebble_ready,
            container.pebble_check_failed,
            container.pebble_check_recovered,
            self.on[PEER].relation_changed,
            self.on[PEER].relation_departed,
            self.on[BOOKKEEPER_RELATION].relation_changed,
            self.on[BOOKKEEPER_RELATION].relation_departed,
            self.on[BOOKKEEPER_RELATION].relation_broken,
            self.on[CLIENT_RELATION].relation_changed,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(self.on[CLIENT_RELATION].relation_broken, self._on_client_broken)
        framework.observe(self.on.get_admin_credentials_action, self._on_get_admin_credentials)
        framework.observe(self.on.cluster_status_action, self._on_cluster_status)

    # ------------------------------------------------------------------ facts

    @property
    def fqdn(self) -> str:
        return pod_fqdn(self.unit.name, self.model.name)

    @property
    def peers(self) -> ops.Relation | None:
        return self.model.get_relation(PEER)

    def _app_data(self, key: str) -> str | None:
        return self.peers.data[self.app].get(key) if self.peers else None

    def _members(self) -> list[Member]:
        return ensemble.decode(self._app_data("zk-members"))

    def _signing_key(self) -> str | None:
        secret_id = self._app_data("signing-key-secret")
        if not secret_id:
            return None
        try:
            return self.model.get_secret(id=secret_id).get_content(refresh=True)["signing-key"]
        except (ops.SecretNotFoundError, ops.ModelError, KeyError):
            return None

    def _zookeeper_states(self, my_mode: str | None) -> dict[int, str]:
        """Server id -> ZooKeeper mode as each unit last reported it (this unit: live)."""
        states: dict[int, str] = {}
        if self.peers is not None:
            for unit in self.peers.units:
                states[ensemble.server_id(unit.name)] = self.peers.data[unit].get("zk-state", "")
        states[ensemble.server_id(self.unit.name)] = my_mode or ""
        return states

    # ------------------------------------------------------------------ bring-up

    def _reconcile(self, event: ops.EventBase) -> None:
        self.unit.status = self._bring_up(event)

    def _bring_up(self, event: ops.EventBase) -> ops.StatusBase:
        if problem := self.workload.check_image(self.unit):
            return Status.NO_PEBBLE() if problem is ImageProblem.NO_PEBBLE else Status.NO_PULSAR_IMAGE()
        try:
            config = CharmConfig.parse(self.config)
        except InvalidConfigError as error:
            return Status.INVALID_CONFIG(error=str(error))
        initialized_as = self._app_data("initialized")
        if initialized_as and initialized_as != config.cluster_name:
            return Status.CLUSTER_NAME_FIXED(name=initialized_as)
        peers = self.peers
        if peers is None:
            return Status.NO_PEERS()
        peers.data[self.unit]["host"] = self.fqdn

        mode = self._probe_zookeeper()
        states = self._zookeeper_states(mode)
        if self.unit.is_leader():
            self._lead_ensemble(peers, states)
        members = self._members()
        if not members:
            joined = len([u for u in peers.units if peers.data[u].get("host")]) + 1
            return Status.WAITING_FOR_UNITS(joined=joined, planned=self.app.planned_units())
        if ensemble.server_id(self.unit.name) not in {m.id for m in members}:
            return Status.NOT_A_MEMBER()

        broker_conf = self._broker_conf(config, members)
        waiting = self._apply(config, members, broker_conf if isinstance(broker_conf, str) else None)
        if waiting:
            return waiting
        mode = self._probe_zookeeper()
        states = self._zookeeper_states(mode)

        ready = sum(1 for m in members if states.get(m.id) in SERVING_MODES)
        if mode is None:
            return Status.ZK_QUORUM(ready=ready, total=len(members))
        if self.unit.is_leader() and not initialized_as:
            failure = self._initialize(config, members)
            if failure:
                return failure
            initialized_as = config.cluster_name
        if self.unit.is_leader():
            self.bookkeeper.publish(
                MetadataStore(bookkeeper_metadata_service_uri(members), config.cluster_name, bool(initialized_as))
            )
        if not initialized_as:
            return Status.WAITING_FOR_INIT()
        if not isinstance(broker_conf, str):
            return broker_conf
        self.unit.set_ports(BROKER_SERVICE_PORT, BROKER_WEB_PORT)
        if not self.workload.broker_ready():
            peers.data[self.unit]["broker-ready"] = "false"
            return Status.BROKER_STARTING()
        peers.data[self.unit]["broker-ready"] = "true"
        if self.unit.is_leader():
            failure = self._serve_clients(config, members)
            if failure:
                return failure
        return Status.ACTIVE(role=mode)

    def _serve_clients(self, config: CharmConfig, members: list[Member]) -> ops.StatusBase | None:
        """Leader: give each client its tenant, namespace, permissions, topics and token."""
        key = self._signing_key()
        if key is None or self.peers is None:
            return None
        admin = PulsarAdmin(auth.token_for(SUPERUSER_ROLE, key))
        service_url = "pulsar://" + ",".join(f"{m.host}:{BROKER_SERVICE_PORT}" for m in members)
        web_service_url = "http://" + ",".join(f"{m.host}:{BROKER_WEB_PORT}" for m in members)
        for relation in self.clients.relations:
            try:
                request = self.clients.request(relation)
            except InvalidRequestError as error:
                self.clients.refuse(relation, str(error))
                continue
            if request is None:
                continue
            done_key = f"client-{relation.id}"
            fingerprint = f"{request.namespace};{','.join(request.permissions)};{','.join(request.topics)}"
            if self.peers.data[self.app].get(done_key) != fingerprint:
                try:
                    tenant = request.namespace.split("/")[0]
                    admin.ensure_tenant(tenant, config.cluster_name)
                    admin.ensure_namespace(request.namespace)
                    admin.grant(request.namespace, request.app, request.permissions)
                    for topic in request.topics:
                        admin.ensure_topic(request.namespace, topic)
                except AdminError as error:
                    logger.error("serving client %s failed: %s", request.app, error)
                    return Status.CLIENT_FAILED(app=request.app, error=str(error))
                self.peers.data[self.app][done_key] = fingerprint
            grant = Grant(service_url, web_service_url, request.namespace, auth.token_for(request.app, key))
            self.clients.grant(relation, grant)
        return None

    def _on_client_broken(self, event: ops.RelationBrokenEvent) -> None:
        if self.unit.is_leader():
            self.clients.revoke(event.relation)
            if self.peers is not None:
                self.peers.data[self.app].pop(f"client-{event.relation.id}", None)
        self._reconcile(event)

    def _probe_zookeeper(self) -> str | None:
        """Probe the local ZooKeeper's mode and publish it to the peers."""
        mode = self.workload.zookeeper_mode()
        if self.peers is not None:
            self.peers.data[self.unit]["zk-state"] = mode or ""
        return mode

    def _apply(self, config: CharmConfig, members: list[Member], broker_conf: str | None) -> ops.StatusBase | None:
        """Write the config files and the layer; restart what changed, one unit at a time.

        Returns a status while this unit waits for its turn to restart.
        """
        assert self.peers is not None
        zookeeper_conf = self.renderer.zookeeper(members)
        myid = f"{ensemble.server_id(self.unit.name)}\n"
        layer = self.workload.layer(config.zookeeper_heap, config.broker_heap if broker_conf else None)
        services = layer.get("services", {})
        desired = {ZOOKEEPER_SERVICE: fingerprint(zookeeper_conf, myid, services[ZOOKEEPER_SERVICE])}
        if broker_conf:
            desired[BROKER_SERVICE] = fingerprint(broker_conf, services[BROKER_SERVICE])
        self.restarts.check_restarted(self._serving)
        stale = self.restarts.stale(desired, {name for name in desired if self.workload.is_running(name)})
        if stale and not self.restarts.may_restart():
            if holder := self.restarts.holder:
                return Status.RESTART_HELD(services=", ".join(stale), holder=holder)
            return Status.WAITING_TO_RESTART(services=", ".join(stale))

        self.workload.write(ZOOKEEPER_CONF, zookeeper_conf)
        self.workload.write(MYID_PATH, myid)
        if broker_conf:
            self.workload.write(BROKER_CONF, broker_conf, permissions=0o600)
            self.workload.write(BROKER_STATUS_FILE, "ok\n")
        before = self.workload.container.get_plan().to_dict().get("services", {})
        self.workload.apply_layer(LAYER, layer)
        after = self.workload.container.get_plan().to_dict().get("services", {})
        for service in stale:
            if before.get(service) == after.get(service):  # replan restarted the others
                self.workload.restart(service)
        if stale:
            self.peers.data[self.unit].update({"zk-state": "", "broker-ready": "false"})
            if ZOOKEEPER_SERVICE in stale:
                # ZooKeeper serves again within seconds: wait here, not for the next event.
                self.workload.wait_for_zookeeper(RESTART_WAIT)
        self.restarts.applied(desired, stale, self._serving)
        return None

    def _serving(self, services: list[str]) -> bool:
        """Whether each of the named services of this unit serves again."""
        checks = {
            ZOOKEEPER_SERVICE: lambda: self.workload.zookeeper_mode() is not None,
            BROKER_SERVICE: self.workload.broker_ready,
        }
        return all(checks[name]() for name in services if name in checks)

    def _lead_ensemble(self, peers: ops.Relation, states: dict[int, str]) -> None:
        """Leader: keep the signing key and the published ZooKeeper ensemble up to date."""
        if not peers.data[self.app].get("signing-key-secret"):
            secret = self.app.add_secret({"signing-key": auth.new_secret_key()}, label=SECRET_KEY_LABEL)
            peers.data[self.app]["signing-key-secret"] = secret.id or ""
        candidates = [Member(ensemble.server_id(self.unit.name), self.fqdn)]
        candidates += [
            Member(ensemble.server_id(unit.name), peers.data[unit]["host"])
            for unit in peers.units
            if peers.data[unit].get("host")
        ]
        current = ensemble.decode(peers.data[self.app].get("zk-members"))
        healthy = all(states.get(m.id) in SERVING_MODES for m in current)
        chosen = ensemble.next_ensemble(current, candidates, self.app.planned_units(), healthy)
        if chosen != current:
            logger.info("zookeeper ensemble: %s -> %s", current, chosen)
            peers.data[self.app]["zk-members"] = ensemble.encode(chosen)

    def _initialize(self, config: CharmConfig, members: list[Member]) -> ops.StatusBase | None:
        """Leader, with a quorum: create the cluster metadata once; record it in peer app data."""
        store = f"zk:{zookeeper_connect(members)}"
        web = ",".join(f"http://{m.host}:{BROKER_WEB_PORT}" for m in members)
        brokers = ",".join(f"pulsar://{m.host}:{BROKER_SERVICE_PORT}" for m in members)
        try:
            self.workload.initialize_cluster_metadata(config.cluster_name, store, web, brokers)
        except WorkloadCommandError as error:
            logger.error("initialize-cluster-metadata failed: %s", error.output)
            return Status.INIT_FAILED(error=str(error))
        assert self.peers is not None
        self.peers.data[self.app]["initialized"] = config.cluster_name
        return None

    def _broker_conf(self, config: CharmConfig, members: list[Member]) -> str | ops.StatusBase:
        """broker.conf once the broker may start, or the status saying what it waits for."""
        if not self.model.relations[BOOKKEEPER_RELATION]:
            return Status.NO_BOOKKEEPER_RELATION()
        key = self._signing_key()
        if key is None:
            return Status.NO_SIGNING_KEY()
        bookies = self.bookkeeper.bookies()
        ready = len([b for b in bookies if b.ready])
        try:
            quorum = self._ledger_quorum(config, len(bookies))
        except InvalidConfigError as error:
            return Status.INVALID_CONFIG(error=str(error))
        if ready < quorum.ensemble_size or not self._app_data("initialized"):
            return Status.WAITING_FOR_BOOKIES(ready=ready, needed=max(quorum.ensemble_size, 1))
        return self.renderer.broker(
            config, members, self.fqdn, quorum, secret_key_b64=key, superuser_token=auth.token_for(SUPERUSER_ROLE, key)
        )

    def _ledger_quorum(self, config: CharmConfig, related_bookies: int) -> LedgerQuorum:
        # Defaults follow the bookies that exist (published), not the ones ready right now,
        # so that the broker's settings do not change while bookies come up.
        return ledger_quorum(config, related_bookies)

    # ------------------------------------------------------------------ actions

    def _on_get_admin_credentials(self, event: ops.ActionEvent) -> None:
        key = self._signing_key()
        if key is None:
            event.fail("the token signing key does not exist yet: wait for the leader")
            return
        members = self._members()
        event.set_results(
            {
                "role": SUPERUSER_ROLE,
                "token": auth.token_for(SUPERUSER_ROLE, key),
                "service-url": ",".join(f"pulsar://{m.host}:{BROKER_SERVICE_PORT}" for m in members),
                "web-service-url": ",".join(f"http://{m.host}:{BROKER_WEB_PORT}" for m in members),
            }
        )

    def _on_cluster_status(self, event: ops.ActionEvent) -> None:
        if self.peers is None:
            event.fail("the cluster peer relation does not exist yet")
            return
        units = [self.unit, *sorted(self.peers.units, key=lambda u: u.name)]
        zookeeper, brokers = {}, {}
        for unit in units:
            data = self.peers.data[unit]
            name = unit.name.replace("/", "-")
            zookeeper[name] = (self.workload.zookeeper_mode() if unit == self.unit else data.get("zk-state")) or "down"
            brokers[name] = "ready" if data.get("broker-ready") == "true" else "not ready"
        bookies = {b.unit.replace("/", "-"): "ready" if b.ready else "not ready" for b in self.bookkeeper.bookies()}
        results: dict[str, object] = {
            "cluster-name": self._app_data("initialized") or "not initialized",
            "zookeeper": zookeeper,
            "brokers": brokers,
            "bookies": bookies or "none",
        }
        try:
            quorum = self._ledger_quorum(CharmConfig.parse(self.config), len(self.bookkeeper.bookies()))
            results["ledger-quorum"] = {
                "ensemble-size": str(quorum.ensemble_size),
                "write-quorum": str(quorum.write_quorum),
                "ack-quorum": str(quorum.ack_quorum),
            }
        except InvalidConfigError as error:
            results["ledger-quorum"] = str(error)
        event.set_results(results)


if __name__ == "__main__":  # pragma: nocover
    ops.main(PulsarCharm)
