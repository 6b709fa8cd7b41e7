"""The leader's application-wide work, run before the unit's own on every event.

It runs whatever this unit's own state is: it does not wait behind this unit's restart turn,
its ZooKeeper or its broker. Cluster facts come from asking each unit over the network (the
ZooKeeper ensemble's health from `srvr` on each member, brokers from their status page), and
admin calls go to any ready broker. A leader that is being removed does none of it: its view of
the peers shrinks as they depart from it, and the next leader takes over.
"""

from __future__ import annotations

import logging
import time

import ops

from charms.pulsar_k8s.v0.bookkeeper import BookKeeperProvider, MetadataStore
from charms.pulsar_k8s.v0.pulsar import PulsarProvider
from charms.pulsar_k8s.v0.pulsar_workload import WorkloadCommandError
from charms.pulsar_k8s.v0.refresh import KubernetesError, RefreshPlan
from literals import BROKER_WEB_PORT, BROKER_WEB_PORT_TLS, SUPERUSER_ROLE, Status
from managers import auth
from managers.admin import PulsarAdmin
from managers.clients import ClientAccess
from managers.config import (
    LedgerQuorum,
    bookkeeper_metadata_service_uri,
    broker_service_url,
    web_service_url,
    zookeeper_connect,
)
from managers.ensemble import next_ensemble
from state import ClusterState
from workload import PulsarWorkload

logger = logging.getLogger(__name__)

ADMIN_CALL_TOKEN_LIFETIME = 3600


def secret_key(secret_id: str) -> str:
    """A secret's unique part: ids come as `secret:<id>` or `secret://<model>/<id>`."""
    return secret_id.rsplit("/", 1)[-1].removeprefix("secret:")


class LeaderWork:
    """Signing key, ensemble, restart lock, cluster metadata, bookies and clients."""

    def __init__(
        self, state: ClusterState, workload: PulsarWorkload, bookkeeper: BookKeeperProvider, clients: PulsarProvider
    ) -> None:
        self.state = state
        self.workload = workload
        self.bookkeeper = bookkeeper
        self.clients = clients

    def run(
        self, broken_client: ops.Relation | None = None, obsolete_revision: tuple[str, int] | None = None
    ) -> list[ops.StatusBase]:
        """Do the application-wide work this event calls for; return the failures to show.

        `obsolete_revision`: a secret revision no consumer tracks any more (secret-remove).
        """
        if not self.state.leads:
            return []
        failures: list[ops.StatusBase] = []
        if self.state.signing_keys is None:
            self.state.store_signing_keys(auth.SigningKeys(auth.SigningKey.generate(int(time.time()))))
        if self.state.credentials is None:
            self.state.create_credentials()
        self._update_ensemble()
        self.state.restarts().lead()
        if failure := self._initialize():
            failures.append(failure)
        self._publish_metadata_store()
        if broken_client is not None:
            self._revoke(broken_client)
        self._track_client_tokens(obsolete_revision)
        self._advance_rotation()
        if failure := self._serve_clients():
            failures.append(failure)
        self.state.save()
        return failures

    def guard_refresh(self) -> RefreshPlan | KubernetesError | None:
        """Move the StatefulSet's partition as the refresh guard says (after this unit's own work).

        Run last, so that the leader's own `serving` and pod revision are this event's. None
        when not leading; the error when the API cannot be used (the guard is off).
        """
        if not self.state.leads:
            return None
        return self.state.refresh.apply()

    def _track_client_tokens(self, obsolete_revision: tuple[str, int] | None) -> None:
        """Forget the pending client tokens whose old revision no one reads, or whose relation is gone."""
        pending = self.state.app_data.tokens_pending
        if not pending:
            return
        live = self._client_token_revisions()
        kept = {secret: revision for secret, revision in pending.items() if secret in live}
        if obsolete_revision is not None:
            secret, revision = secret_key(obsolete_revision[0]), obsolete_revision[1]
            if kept.get(secret) == revision:
                del kept[secret]
        if kept != pending:
            logger.info("clients still holding a token of the retiring key: %d", len(kept))
            self.state.app_data.tokens_pending = kept

    def _client_token_revisions(self) -> dict[str, int]:
        """Each client's token secret (by key) and its current revision."""
        revisions = (self.clients.token_revision(relation) for relation in self.clients.relations)
        return {secret_key(secret): revision for secret, revision in filter(None, revisions)}

    def _rotation_step(self) -> tuple[auth.SigningKeys | None, str | None]:
        keys = self.state.signing_keys
        if keys is None or not keys.rotating:
            return None, None
        units = self.state.broker_units
        verifying = {unit: self.state.unit_data_by_name(unit).token_keys for unit in units}
        signing = {unit: self.state.unit_data_by_name(unit).token_key for unit in units}
        return auth.rotation_step(keys, verifying, signing, len(self.state.app_data.tokens_pending))

    def _advance_rotation(self) -> None:
        """Take the signing key rotation a step further, if one runs and may."""
        state, keys = self.state, self.state.signing_keys
        moved, _ = self._rotation_step()
        if moved is None or keys is None:
            return
        state.store_signing_keys(moved)
        if moved.retiring is None:
            logger.info("token signing key %s retired: its tokens are refused", keys.retiring and keys.retiring.kid)
            return
        # Promoted: `_serve_clients` issues every client's token again, as a new revision of
        # its secret; the one before is the last a client may still read.
        state.app_data.tokens_pending = self._client_token_revisions()
        logger.info("token signing key %s now signs; %s retires", moved.active.kid, moved.retiring.kid)

    def rotation_waits_for(self) -> str | None:
        """What a signing key rotation under way waits for; None when none runs (leader only)."""
        if not self.state.leads:
            return None
        _, waiting = self._rotation_step()
        return waiting

    def _update_ensemble(self) -> None:
        state = self.state
        current = state.members
        healthy = bool(current) and all(state.probes[m.id].zookeeper_serving for m in current)
        live = {m.id for m in current if state.probes[m.id].zookeeper_answers}
        chosen = next_ensemble(current, state.candidates, state.planned_units, healthy, live)
        if chosen != current:
            logger.info("zookeeper ensemble: %s -> %s", [m.id for m in current], [m.id for m in chosen])
            state.app_data.zk_members = chosen
            state.save()

    def _initialize(self) -> ops.StatusBase | None:
        """Create the cluster metadata once a quorum serves; record it in peer app data."""
        state = self.state
        if state.initialized or state.config is None or not state.members or not state.serving_members:
            return None
        if not self.workload.can_connect():  # the command runs in this unit's container
            return None
        members = state.members
        try:
            self.workload.initialize_cluster_metadata(
                state.config.cluster_name,
                f"zk:{zookeeper_connect(state.zookeeper_hosts)}",
                web_service_url(members),
                broker_service_url(members),
            )
        except WorkloadCommandError as error:
            logger.error("initialize-cluster-metadata failed: %s", error.output)
            return Status.INIT_FAILED(error=str(error))
        logger.info("cluster metadata initialized as %s", state.config.cluster_name)
        state.app_data.initialized = state.config.cluster_name
        state.save()
        return None

    def _publish_metadata_store(self) -> None:
        state = self.state
        cluster_name = state.initialized or (state.config.cluster_name if state.config else None)
        if not state.members or not cluster_name:
            return
        uri = bookkeeper_metadata_service_uri(state.zookeeper_hosts)
        secret = state.bookie_credentials_secret()
        secret_id = state.app_data.bookie_credentials_secret if secret else ""
        quorum = self._ledger_quorum()
        store = MetadataStore(
            uri,
            cluster_name,
            initialized=bool(state.initialized),
            ensemble_size=quorum.ensemble_size if quorum else 0,
            credentials_secret=secret_id,
        )
        self.bookkeeper.publish(store, secret)

    def _admin(self, issuer: auth.TokenIssuer) -> PulsarAdmin:
        """The admin API of a ready broker (this unit's first, if it is ready)."""
        brokers = self.state.ready_brokers
        host = brokers[0].host if brokers else self.state.fqdn
        # The charm's own calls carry a token that expires soon: it is never kept anywhere.
        now = int(time.time())
        token = issuer.token(SUPERUSER_ROLE, now, now + ADMIN_CALL_TOKEN_LIFETIME)
        if self.workload.web_tls is not None:  # the plaintext port is closed
            return PulsarAdmin(token, f"https://{host}:{BROKER_WEB_PORT_TLS}", context=self.workload.web_tls)
        return PulsarAdmin(token, base_url=f"http://{host}:{BROKER_WEB_PORT}")

    def _serve_clients(self) -> ops.StatusBase | None:
        state, issuer = self.state, self.state.token_issuer
        if issuer is None or state.initialized is None or not state.members:
            return None
        lifetime = state.token_lifetime
        access = ClientAccess(self.clients, self._admin(issuer), issuer, lifetime)
        facts = self._cluster_facts()
        # First, without the broker: the grants follow a broker or bookie that went away even
        # when no broker is left to take admin calls.
        access.publish_cluster(facts)
        if not state.ready_brokers:
            return None
        # TLS URLs once every broker serves them: a client verifies each with the CA.
        tls = state.tls.ca if state.tls and state.cluster_serves_tls else None
        service_url = broker_service_url(state.members, tls=tls is not None)
        web_url = web_service_url(state.members, tls=tls is not None)
        error = access.serve(state.initialized, service_url, web_url, facts, tls_ca=tls)
        return Status.CLIENT_FAILED(error=error) if error else None

    def _ledger_quorum(self) -> LedgerQuorum | None:
        """The quorum the brokers are configured with; None while the config is invalid (they keep theirs)."""
        quorum = self.state.ledger_quorum()
        return None if isinstance(quorum, str) else quorum

    def _cluster_facts(self) -> dict[str, int | str]:
        """The library's `cluster` keys, as this snapshot knows them; those it cannot read are left out.

        Brokers and bookies are those serving now (the same counts as the application status);
        the quorum is the one the brokers are configured with (see `UnitWork._broker_conf`).
        """
        state = self.state
        facts: dict[str, int | str] = {}
        version = self.workload.pulsar_version() if self.workload.can_connect() else None
        if version:
            facts["pulsar-version"] = version
        facts["brokers"] = len([m for m in state.ready_brokers if m in state.members])
        facts["bookies"] = len(state.ready_bookies)
        if quorum := self._ledger_quorum():
            facts["ensemble-size"] = quorum.ensemble_size
            facts["write-quorum"] = quorum.write_quorum
            facts["ack-quorum"] = quorum.ack_quorum
        return facts

    def _revoke(self, relation: ops.Relation) -> None:
        issuer = self.state.token_issuer
        if issuer is None:
            return
        if error := ClientAccess(self.clients, self._admin(issuer), issuer).revoke(relation):
            logger.warning(
                "revoking the access of relation %s: %s (the next reconcile completes it)", relation.id, error
            )
