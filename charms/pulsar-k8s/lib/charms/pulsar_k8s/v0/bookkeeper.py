"""The `bookkeeper` interface: pulsar-k8s hands bookies the metadata store; bookies report back.

Every value is JSON-encoded (ops' `Relation.save` / `Relation.load` codec); a key whose value
would be empty is left out.

Provider (pulsar-k8s) application databag, `MetadataStore`:
- `metadata-service-uri` (string): BookKeeper's metadata service URI,
  `zk+hierarchical://h1:2181;h2:2181/ledgers`
- `cluster-name` (string): the Pulsar cluster name
- `initialized` (boolean): true once the cluster metadata (and BookKeeper's /ledgers) exists
- `ensemble-size` (integer): how many bookies each new ledger is written to (0: not known yet).
  A bookie leaving takes its ledgers' copies with it, and BookKeeper re-replicates them only
  onto bookies outside each ledger's ensemble: fewer bookies than this cannot keep them whole.
- `credentials-secret` (string): id of a Juju secret granted to the relation, `BookieCredentials`:
  - `zookeeper-username`, `zookeeper-password`: the bookies' ZooKeeper user (SASL DIGEST-MD5;
    the metadata store refuses sessions without one)
  - `bookkeeper-username`, `bookkeeper-password`: the BookKeeper client user (SASL
    DIGEST-MD5) that bookies accept, and that their own autorecovery and the brokers use

Requirer (bookie-k8s) unit databag, `BookieData`:
- `bookie-id` (string): host:port the bookie registers as (the unit's stable FQDN)
- `ready` (boolean): true while the bookie's readiness endpoint says so

Data that does not decode or match these schemas is treated as absent, and the reason is
logged (provider side) or raised as InvalidDatabagError (requirer side, for its status).

Owned by pulsar-k8s; bookie-k8s carries an identical copy.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import ops

from charms.pulsar_k8s.v0.pulsar_workload import InvalidDatabagError, read_databag, write_databag

LIBID = "a08edc48e3f9462d9a1f01c43588fa93"
LIBAPI = 0
LIBPATCH = 4

logger = logging.getLogger(__name__)

DEFAULT_RELATION = "bookkeeper"


@dataclass(frozen=True)
class MetadataStore:
    """The provider's application databag: where the metadata lives, and whether it exists."""

    metadata_service_uri: str = field(metadata={"alias": "metadata-service-uri"})
    cluster_name: str = field(default="", metadata={"alias": "cluster-name"})
    initialized: bool = False
    ensemble_size: int = field(default=0, metadata={"alias": "ensemble-size"})
    credentials_secret: str = field(default="", metadata={"alias": "credentials-secret"})


@dataclass(frozen=True)
class BookieCredentials:
    """The content of the `credentials-secret`: what bookies authenticate with, and whom they accept."""

    zookeeper_username: str
    zookeeper_password: str
    bookkeeper_username: str
    bookkeeper_password: str

    def to_content(self) -> dict[str, str]:
        return {key.replace("_", "-"): value for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_content(cls, content: dict[str, str]) -> BookieCredentials:
        """Raise InvalidDatabagError when a key is missing or empty."""
        values = {f.name: content.get(f.name.replace("_", "-"), "") for f in dataclasses.fields(cls)}
        if missing := [name.replace("_", "-") for name, value in values.items() if not value]:
            raise InvalidDatabagError(f"credentials secret lacks {', '.join(missing)}")
        return cls(**values)


@dataclass(frozen=True)
class BookieData:
    """A requirer unit's databag: the bookie's id and its readiness."""

    bookie_id: str = field(metadata={"alias": "bookie-id"})
    ready: bool = False


@dataclass(frozen=True)
class Bookie:
    """One related bookie unit, as the provider sees it."""

    unit: str
    bookie_id: str
    ready: bool


class BookKeeperProvider(ops.Object):
    """pulsar-k8s's side: publish the metadata store, read the bookies."""

    def __init__(self, charm: ops.CharmBase, relation_name: str = DEFAULT_RELATION) -> None:
        super().__init__(charm, relation_name)
        self.charm = charm
        self.relation_name = relation_name

    @property
    def relations(self) -> list[ops.Relation]:
        return list(self.charm.model.relations[self.relation_name])

    def publish(self, store: MetadataStore, credentials: ops.Secret | None = None) -> None:
        """Write the metadata store to every bookkeeper relation (leader only).

        `credentials`, the secret `store.credentials_secret` names, is granted to each relation.
        """
        if not self.charm.unit.is_leader():
            return
        for relation in self.relations:
            if credentials is not None:
                credentials.grant(relation)
            write_databag(relation, store, self.charm.app)

    def bookies(self) -> list[Bookie]:
        """Every related bookie unit that has published a valid id."""
        found = []
        for relation in self.relations:
            for unit in sorted(relation.units, key=lambda u: u.name):
                try:
                    data = read_databag(relation, BookieData, unit)
                except InvalidDatabagError as error:
                    logger.warning("ignoring bookie %s: %s", unit.name, error)
                    continue
                if data is not None and data.bookie_id:
                    found.append(Bookie(unit.name, data.bookie_id, data.ready))
        return found

    def ready_bookies(self) -> list[Bookie]:
        return [bookie for bookie in self.bookies() if bookie.ready]


class BookKeeperRequirer(ops.Object):
    """bookie-k8s's side: read the metadata store, publish this bookie."""

    def __init__(self, charm: ops.CharmBase, relation_name: str = DEFAULT_RELATION) -> None:
        super().__init__(charm, relation_name)
        self.charm = charm
        self.relation_name = relation_name

    @property
    def relation(self) -> ops.Relation | None:
        return self.charm.model.get_relation(self.relation_name)

    def metadata_store(self) -> MetadataStore | None:
        """The provider's metadata store, once it has published one; raises InvalidDatabagError."""
        relation = self.relation
        if relation is None or relation.app is None:
            return None
        store = read_databag(relation, MetadataStore, relation.app)
        if store is None or not store.metadata_service_uri:
            return None
        return store

    def credentials(self, store: MetadataStore) -> BookieCredentials | None:
        """The credentials the provider granted, None until it has; raises InvalidDatabagError."""
        if not store.credentials_secret:
            return None
        try:
            secret = self.charm.model.get_secret(id=store.credentials_secret)
            content = secret.get_content(refresh=True)
        except (ops.SecretNotFoundError, ops.ModelError):  # not granted (yet)
            return None
        return BookieCredentials.from_content(content)

    def publish(self, bookie_id: str, ready: bool) -> None:
        relation = self.relation
        if relation is None:
            return
        write_databag(relation, BookieData(bookie_id, ready), self.charm.unit)
