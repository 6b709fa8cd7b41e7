"""The charm's state: its peer databags, typed, and a snapshot of everything a reconcile reads.

Read this first. `ClusterState` is built once per event; the reconcile (`leader.py` for the
application-wide work, `unit.py` for this unit's own) reads it, and writes back through it.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Final

import ops
from charmlibs.interfaces.tls_certificates import PrivateKey, ProviderCertificate

from charms.pulsar_k8s.v0.bookkeeper import Bookie, BookieCredentials, BookKeeperProvider
from charms.pulsar_k8s.v0.pulsar_workload import (
    InvalidConfigError,
    InvalidDatabagError,
    PeerData,
    cluster_domain,
    pod_fqdn,
)
from charms.pulsar_k8s.v0.refresh import (
    Kubernetes,
    RefreshGuard,
    RefreshUnitData,
    UnitRefresh,
    unit_ordinal,
)
from charms.pulsar_k8s.v0.rolling_restart import LockAppData, LockUnitData, RestartRequest, RollingRestart
from literals import (
    BOOKIE_CREDENTIALS_LABEL,
    BOOKKEEPER_RELATION,
    CERTIFICATES_RELATION,
    PEER,
    SECRET_KEY_LABEL,
    SERVING_MODES,
    STANDALONE,
    ZOOKEEPER_CLIENT_ORDINALS,
    ZOOKEEPER_CREDENTIALS_LABEL,
    ZOOKEEPER_SERVICE,
)
from managers import auth, ensemble
from managers.auth import ClusterCredentials, SigningKeys, TokenIssuer, ZooKeeperCredentials
from managers.config import CharmConfig, LedgerQuorum, ledger_quorum
from managers.ensemble import Member
from managers.tls import BrokerTls
from workload import PulsarWorkload, UnitProbe

logger = logging.getLogger(__name__)


@dataclass
class PeerAppData(LockAppData):
    """The `cluster` peer application databag, written by the leader.

    - `zk-members`: the ZooKeeper ensemble, `[{"id": 1, "host": "<fqdn>"}, ...]`; every
      unit renders its zookeeper.conf from it
    - `signing-key-secret`: id of the Juju secret that holds the token signing keys
      (`auth.SigningKeys`); only this application reads it
    - `token-keys`: the ids of the keys brokers verify tokens with now (public: a change
      wakes every unit to publish the new key set)
    - `tokens-pending`: during a rotation, each client token secret (by id) -> the last
      revision signed with the retiring key; an entry goes once Juju says no unit of the
      client tracks that revision any more (secret-remove)
    - `zookeeper-credentials-secret`: id of the Juju secret with ZooKeeper's passwords
      (`ZooKeeperCredentials`); only this application reads it
    - `bookie-credentials-secret`: id of the Juju secret bookies authenticate with
      (`BookieCredentials`), granted to every bookkeeper relation
    - `initialized`: the cluster name the metadata was initialized with (absent before)
    - `restart-holder`: the unit holding the restart lock (`LockAppData`)
    """

    zk_members: list[Member] = field(default_factory=list, metadata={"alias": "zk-members"})
    signing_key_secret: str = field(default="", metadata={"alias": "signing-key-secret"})
    token_keys: list[str] = field(default_factory=list, metadata={"alias": "token-keys"})
    tokens_pending: dict[str, int] = field(default_factory=dict, metadata={"alias": "tokens-pending"})
    zookeeper_credentials_secret: str = field(default="", metadata={"alias": "zookeeper-credentials-secret"})
    bookie_credentials_secret: str = field(default="", metadata={"alias": "bookie-credentials-secret"})
    initialized: str = ""


@dataclass
class PeerUnitData(LockUnitData, RefreshUnitData):
    """A unit's `cluster` peer databag.

    - `host`: the unit's FQDN, as it computes it
    - `tls`: true while its broker serves the TLS ports (6651, 8443) with its certificate
    - `token-keys`: the ids of the keys its key set serves (its broker accepts their tokens)
    - `token-key`: the id of the key that signed its broker's own token
    - `serving`: true while its ZooKeeper and its broker both serve, as it last saw them. Its
      own Pebble checks tell it first; the change wakes the leader, whose application status
      would otherwise wait for its next event to see a unit fail or recover.
    - `pod-revision`: the StatefulSet revision its own pod runs, written with `serving` in
      the same hook (`RefreshUnitData`): the leader's refresh guard reads both
    - `restart-request`, `applied`: its use of the restart lock (`LockUnitData`)
    """

    host: str = ""
    tls: bool = False
    serving: bool = False
    token_keys: list[str] = field(default_factory=list, metadata={"alias": "token-keys"})
    token_key: str = field(default="", metadata={"alias": "token-key"})


class ClusterState:
    """What this event's reconcile knows: this unit, its peers, the ensemble, bookies, config."""

    def __init__(
        self,
        charm: ops.CharmBase,
        workload: PulsarWorkload,
        bookkeeper: BookKeeperProvider,
        dying: bool,
        certificate: tuple[ProviderCertificate | None, PrivateKey | None] = (None, None),
        kubernetes: Kubernetes | None = None,
    ) -> None:
        self._model = charm.model
        self._workload = workload
        self.kubernetes = kubernetes or Kubernetes(charm.app.name, charm.model.name)
        self.unit = charm.unit
        self.app = charm.app
        self.domain = cluster_domain(charm.model.name)
        self.fqdn = self.fqdn_of(charm.unit.name)
        self.server_id = ensemble.server_id(charm.unit.name)
        self.leader = charm.unit.is_leader()
        self.dying = dying
        self.planned_units = charm.app.planned_units()
        try:
            self.config: CharmConfig | None = CharmConfig.parse(charm.config)
            self.config_error: str | None = None
        except InvalidConfigError as error:
            self.config, self.config_error = None, str(error)

        self.peers = charm.model.get_relation(PEER)
        self.peer_units: list[ops.Unit] = sorted(self.peers.units, key=lambda u: u.name) if self.peers else []
        # Keys an earlier revision wrote in the app databag (e.g. client grant records): the
        # leader's save erases them.
        self.peer_data = PeerData(self.peers, PeerAppData, PeerUnitData, charm.app, charm.unit)
        # The objects `peer_data` writes back: changed in place, never replaced.
        self.app_data: Final = self.peer_data.app_data
        self.unit_data: Final = self.peer_data.unit_data
        self.peer_data_error: Final = self.peer_data.error

        self.bookkeeper_related = bool(charm.model.relations[BOOKKEEPER_RELATION])
        self.bookies: list[Bookie] = bookkeeper.bookies()

        self.tls_related = bool(charm.model.relations[CERTIFICATES_RELATION])
        provided, key = certificate
        # This unit's certificate, once the provider signed it (gone with the relation).
        self.tls: BrokerTls | None = BrokerTls.of(provided, key) if self.tls_related and provided and key else None

    # ------------------------------------------------------------ derived facts

    @property
    def leads(self) -> bool:
        """Whether this unit does the application-wide work: the leader, unless it is dying."""
        return self.leader and not self.dying and self.peers is not None and self.peer_data_error is None

    @property
    def tls_only(self) -> bool:
        """Whether the brokers' plaintext ports are closed: `tls-required`, and this unit has its certificate."""
        return self.tls is not None and bool(self.config and self.config.tls_required)

    @property
    def cluster_serves_tls(self) -> bool:
        """Whether every member's broker serves TLS (each unit says so in its peer data)."""
        if self.tls is None or not self.members:
            return False
        units = {
            self.server_id: self.unit_data,
            **{ensemble.server_id(u.name): self.peer_data.unit_data_of(u) for u in self.peer_units},
        }
        return all(m.id in units and units[m.id].tls for m in self.members)

    @property
    def members(self) -> list[Member]:
        return self.app_data.zk_members

    @property
    def is_member(self) -> bool:
        return self.server_id in {m.id for m in self.members}

    @property
    def initialized(self) -> str | None:
        """The cluster name the metadata was initialized with, once it was."""
        return self.app_data.initialized or None

    @property
    def candidates(self) -> list[Member]:
        """Every unit in the peer relation, this one included, as a would-be ZooKeeper server."""
        units = [self.unit.name, *(unit.name for unit in self.peer_units)]
        return sorted(Member(ensemble.server_id(name), self.fqdn_of(name)) for name in units)

    def fqdn_of(self, unit_name: str) -> str:
        return pod_fqdn(unit_name, self._model.name, self.domain)

    @property
    def zookeeper_hosts(self) -> list[str]:
        """The ZooKeeper servers brokers and bookies connect to: a fixed list, not the ensemble (literals.py)."""
        return [self.fqdn_of(f"{self.app.name}/{n}") for n in range(ZOOKEEPER_CLIENT_ORDINALS)]

    @functools.cached_property
    def probes(self) -> dict[int, UnitProbe]:
        """Server id -> what that unit's ZooKeeper and broker answer, for every member and peer."""
        hosts = {m.id: m.host for m in [*self.members, *self.candidates]}
        answers = self._workload.probe(sorted(set(hosts.values())))
        return {server_id: answers[host] for server_id, host in hosts.items()}

    @property
    def ready_bookies(self) -> list[Bookie]:
        return [bookie for bookie in self.bookies if bookie.ready]

    def ledger_quorum(self) -> LedgerQuorum | str:
        """The ledger quorum the brokers are configured with, or why the config gives none.

        Defaults follow the bookies that exist (published), not the ones ready right now, so
        that the brokers' settings do not change while bookies come up.
        """
        if self.config is None:
            return self.config_error or "no config"
        try:
            return ledger_quorum(self.config, len(self.bookies))
        except InvalidConfigError as error:
            return str(error)

    @property
    def serving_members(self) -> list[Member]:
        return [m for m in self.members if self.probes[m.id].zookeeper_serving]

    @property
    def ready_brokers(self) -> list[Member]:
        """Units whose broker serves, this unit's first (admin calls go to the first)."""
        ready = [m for m in self.candidates if self.probes[m.id].broker_ready]
        return sorted(ready, key=lambda m: m.id != self.server_id)

    def _secret(self, secret_id: str) -> ops.Secret | None:
        if not secret_id:
            return None
        try:
            return self._model.get_secret(id=secret_id)
        except (ops.SecretNotFoundError, ops.ModelError):
            return None

    def _content(self, secret_id: str) -> dict[str, str]:
        secret = self._secret(secret_id)
        try:
            return secret.get_content(refresh=True) if secret else {}
        except (ops.SecretNotFoundError, ops.ModelError):
            return {}

    @functools.cached_property
    def signing_keys(self) -> SigningKeys | None:
        return SigningKeys.from_content(self._content(self.app_data.signing_key_secret))

    @property
    def token_lifetime(self) -> int:
        """Seconds a client token is valid: the config's, or the default while the config is invalid."""
        return self.config.token_lifetime if self.config else CharmConfig.token_lifetime

    @property
    def token_issuer(self) -> TokenIssuer | None:
        """What signs tokens now (the active key), for this application's brokers."""
        keys = self.signing_keys
        return TokenIssuer(keys.active, audience=self.app.name) if keys else None

    @property
    def broker_units(self) -> list[str]:
        """The units whose broker runs or may run: the ensemble's members, by unit name."""
        names = {ensemble.server_id(name): name for name in [self.unit.name, *(u.name for u in self.peer_units)]}
        return [names[m.id] for m in self.members if m.id in names]

    def unit_data_by_name(self, name: str) -> PeerUnitData:
        """A unit's peer data (this unit's own, or a peer's); `name` is one of `broker_units`."""
        return self.peer_data.unit_data_of(next(u for u in [self.unit, *self.peer_units] if u.name == name))

    @functools.cached_property
    def credentials(self) -> ClusterCredentials | None:
        """The passwords of ZooKeeper and the bookies, once the leader made them."""
        zookeeper = ZooKeeperCredentials.from_content(self._content(self.app_data.zookeeper_credentials_secret))
        try:
            bookies = BookieCredentials.from_content(self._content(self.app_data.bookie_credentials_secret))
        except InvalidDatabagError:
            return None
        return ClusterCredentials(zookeeper, bookies) if zookeeper else None

    def bookie_credentials_secret(self) -> ops.Secret | None:
        """The secret the leader grants to bookkeeper relations."""
        return self._secret(self.app_data.bookie_credentials_secret)

    def create_credentials(self) -> None:
        """Leader: make whichever of the cluster's credential secrets is missing.

        Made once and kept: a new password would lock the running processes out of each other.
        """
        if not ZooKeeperCredentials.from_content(self._content(self.app_data.zookeeper_credentials_secret)):
            content = ZooKeeperCredentials.generate().to_content()
            secret = self.app.add_secret(content, label=ZOOKEEPER_CREDENTIALS_LABEL)
            self.app_data.zookeeper_credentials_secret = secret.id or ""
        if not self._content(self.app_data.bookie_credentials_secret):
            content = auth.new_bookie_credentials().to_content()
            secret = self.app.add_secret(content, label=BOOKIE_CREDENTIALS_LABEL)
            self.app_data.bookie_credentials_secret = secret.id or ""
        self.__dict__.pop("credentials", None)  # read again on next use
        self.save()

    def store_signing_keys(self, keys: SigningKeys) -> None:
        """Leader: keep the signing keys in their Juju secret (made on first use), and their ids in peer data.

        A secret that holds no keys of this kind (an older charm's HS256 key) gets them as its
        next revision.
        """
        secret = self._secret(self.app_data.signing_key_secret)
        if secret is None:
            secret = self.app.add_secret(keys.to_content(), label=SECRET_KEY_LABEL)
            self.app_data.signing_key_secret = secret.id or ""
        else:
            secret.set_content(keys.to_content())
        self.app_data.token_keys = keys.kids
        self.signing_keys = keys
        self.save()

    # ------------------------------------------------------------ refresh

    def own_pod_revision(self) -> str:
        """The StatefulSet revision this unit's pod runs; empty when the API cannot tell."""
        return self.kubernetes.own_revision(self.unit.name)

    def refresh_units(self) -> dict[str, UnitRefresh]:
        """Each unit's refresh facts from peer data (this unit's as the reconcile left them)."""
        facts = {}
        for unit in [self.unit, *self.peer_units]:
            data = self.peer_data.unit_data_of(unit)
            restarting = data.restart_request is not None
            facts[unit.name] = UnitRefresh(unit_ordinal(unit.name), data.pod_revision, data.serving, restarting)
        return facts

    @functools.cached_property
    def refresh(self) -> RefreshGuard:
        """Leader: the refresh guard (the StatefulSet is read on first use, once per event)."""
        return RefreshGuard(self.kubernetes, self.refresh_units, lambda: self.app_data.restart_holder)

    # ------------------------------------------------------------ writing back

    def restarts(self) -> RollingRestart:
        """The restart lock, on this snapshot's databags (the peer relation must exist)."""
        assert self.peers is not None
        return RollingRestart(
            self.peers,
            self.unit,
            self.app,
            self.unit_data,
            self.app_data,
            leads=self.leads,
            may_restart=self._may_restart,
        )

    def _may_restart(self, unit_name: str, request: RestartRequest) -> bool:
        """Leader: whether a unit may restart now (its ZooKeeper only while every other member serves).

        A server joining the ensemble (its own first start, no lock) must have joined the
        running quorum before any member restarts into the larger ensemble: growing 3 -> 4, a
        member restarted first and the new server are two votes of four that never reach a
        quorum against the two members still on the old ensemble, and the lock never moves on.
        Growing from one server is the exception: the standalone server must restart for the
        second to join it. No unit restarts while a refresh replaces a pod.
        """
        if self.refresh.in_flight():
            return False  # a pod being replaced by a refresh is the one unit down at a time
        if ZOOKEEPER_SERVICE not in request.services:
            return True
        modes = {m.id: self.probes[m.id].zookeeper_mode for m in self.members}
        if STANDALONE in modes.values():
            return True
        own_id = ensemble.server_id(unit_name)
        return all(mode in SERVING_MODES for server_id, mode in modes.items() if server_id != own_id)

    def save(self) -> None:
        """Write back what changed in the peer databags (the application's only when leading)."""
        self.peer_data.save(leads=self.leads)
