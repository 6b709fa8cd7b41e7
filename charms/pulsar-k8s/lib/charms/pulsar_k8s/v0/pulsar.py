"""The `pulsar` interface: a client application asks for a namespace and gets a token for it.

Both application databags are typed (`ClientRequestData`, `ClientGrantData`), saved and loaded
with ops' `Relation.save` / `Relation.load`: every value is JSON (a string is `"quoted"`), and a
key that is absent means "not set".

Requirer application data (`ClientRequestData`), written by the requirer's leader:
- `namespace`: `"tenant/namespace"` it wants. The tenant must be the requirer's application
  name (`PulsarRequirer` asks for `"<app>/default"` unless told otherwise): an application can
  never ask for another's namespace. No request is served until this key is set.
- `permissions`: list, a non-empty subset of `["consume", "produce"]` (default both)
- `topics`: list of topic names to create in that namespace (default none), non-partitioned
- `partitioned-topics`: object mapping a topic name to its partition count, 1..1024 (absent:
  none), e.g. `{"sensor-readings": 16}`. The provider creates each missing one in the namespace
  and adds partitions when a larger count is asked (a client role may produce and consume, not
  create partitioned topics). A topic is never shrunk (Pulsar cannot reduce partitions) nor
  deleted, even when its name leaves the request. Names follow the rule of `topics` and may not
  contain `-partition-` (Pulsar's suffix for a partition); a name may not be in both keys.
  `PulsarRequirer.request_partitioned_topics` writes this key, `publish_request` keeps it.

Reserved tenants are refused, whatever the application is called: `public` and `pulsar`
(Pulsar's shared and system tenants) and anything starting with `pulsar-k8s` (the provider's
own names, its superuser role `pulsar-k8s-admin` among them). Deploy such a client under
another application name.

Provider (pulsar-k8s) application data (`ClientGrantData`), written by the provider's leader:
- `service-url`: `"pulsar://host1:6650,host2:6650"`, every broker; `"pulsar+ssl://host1:6651,..."`
  once every broker serves TLS (pulsar-k8s integrated with a certificates provider)
- `web-service-url`: `"http://host1:8080,host2:8080"`, every broker; `"https://host1:8443,..."`
  with TLS
- `tls-ca`: with TLS, the PEM of the CA that signed the brokers' certificates: the client
  verifies the brokers with it (each broker's certificate names its FQDN)
- `namespace`: the namespace granted
- `role`: the role the token carries, `"pulsar-k8s-client-<relation id>"`: one per relation,
  never the same for two relations (Juju never reuses a relation id in a model), never a
  superuser. It has the requested permissions on the granted namespace and nothing else.
- `secret-credentials`: id of a Juju secret holding `token` (a JWT for `role`), granted to
  the relation
- `partitioned-topics`: object, each requested partitioned topic that exists in the granted
  namespace, with the partition count it has now (absent: none exists). A topic is ready once
  it is here with the count asked; a count above the one asked means a shrink was refused.
- `topic-errors`: object, a requested partitioned topic's name -> why it is not as asked
  (a non-partitioned topic of that name exists; a smaller count than it has was asked, so it
  keeps its count; the broker refused the change). Absent when there is none. The rest of the
  grant stands: one topic's problem does not withhold the namespace.
- `cluster`: object, what the client is talking to, e.g. `{"pulsar-version": "4.0.8",
  "brokers": 3, "bookies": 3, "ensemble-size": 3, "write-quorum": 2, "ack-quorum": 2}`:
  `pulsar-version` (string) is the version of the provider leader's Pulsar image; `brokers` and
  `bookies` count those that serve now; `ensemble-size`, `write-quorum` and `ack-quorum` are the
  ledger quorum the brokers are configured with (every count an integer >= 0). Written with
  every grant and rewritten when one of these facts changes, so a load test can record the
  cluster it ran against. A fact the provider cannot read at the moment (its image, an invalid
  config) keeps its last published value, or is absent if it never had one; a reader ignores
  keys it does not know. `PulsarRequirer.cluster_info` reads it.
- `error`: set instead of the keys above when the request cannot be granted, and says why
  (the request is invalid, reserved, or does not decode)

Tokens expire (pulsar-k8s's `token-lifetime`, 28 days by default): the provider puts a new one
in the same secret when a third of the lifetime is left, and the requirer sees secret-changed.
A client reads the token from the secret (or a file the charm rewrites) whenever it connects.
A token file holds the token alone, with no trailing newline: the C++ and Python clients send a
file's bytes as they are, and the brokers refuse a token with whitespace around it.
When the cluster's signing key is rotated, every token is issued again the same way; the old
key's tokens are refused once each client's units have read the new revision (reading it with
`refresh=True`, as `PulsarRequirer` does, is what tells the provider).

Revocation: when the relation is removed, the provider removes the role's permissions
everywhere (namespaces, topics, tenant admins) and the token's secret; the role is never
granted again, so the token authorizes nothing, even before it expires. The client's data
(tenant, namespace, topics, messages) is kept: relating the application again gives a new role
access to the same namespace. Delete the data with the admin credentials if it must go.

Owned by pulsar-k8s; every client charm carries an identical copy.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

import ops

LIBID = "24e9bbc0699e4782a67a2453be440f52"
LIBAPI = 0
LIBPATCH = 7

DEFAULT_RELATION = "pulsar"
ALL_PERMISSIONS = ("consume", "produce")
RESERVED_TENANTS = ("public", "pulsar")
RESERVED_TENANT_PREFIX = "pulsar-k8s"
MAX_PARTITIONS = 1024
# Pulsar names a partition `<topic>-partition-<n>`: a partitioned topic's name may not contain it.
PARTITION_INFIX = "-partition-"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
# The `cluster` object of a grant: its string key and its counts (see the module docstring).
CLUSTER_VERSION = "pulsar-version"
CLUSTER_COUNTS = ("brokers", "bookies", "ensemble-size", "write-quorum", "ack-quorum")


class InvalidRequestError(ValueError):
    """A client's request that cannot be granted; the message says why."""


class InvalidGrantError(ValueError):
    """The provider's data does not decode; the message says why."""


class RequestNotWritableError(RuntimeError):
    """The request cannot be written from here: not the leader, or no relation."""


def _check_str(name: str, value: object, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {json.dumps(value)}")


def _check_str_list(name: str, value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name}: expected a list of strings, got {json.dumps(value)}")


def _check_map(name: str, value: object, kind: type, optional: bool = True) -> None:
    """`value` is an object of string keys and `kind` values (an int is never a bool here)."""
    if value is None and optional:
        return
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, kind) and not isinstance(v, bool) for k, v in value.items()
    ):
        raise ValueError(f"{name}: expected an object of {kind.__name__} values, got {json.dumps(value)}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_cluster(value: object) -> None:
    """`value` is absent or a grant's `cluster`: the known keys of their types, others a string or int."""
    if value is None:
        return
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ValueError(f"cluster: expected an object, got {json.dumps(value)}")
    for key, item in value.items():
        if key == CLUSTER_VERSION:
            valid, expected = isinstance(item, str), "a string"
        elif key in CLUSTER_COUNTS:
            valid, expected = isinstance(item, int) and not isinstance(item, bool) and item >= 0, "an integer >= 0"
        else:  # a key of a later LIBPATCH: read on, whatever it means
            valid, expected = isinstance(item, str) or _is_int(item), "a string or an integer"
        if not valid:
            raise ValueError(f"cluster: {key}: expected {expected}, got {json.dumps(item)}")


@dataclass
class ClientRequestData:
    """The requirer's application databag (see the module docstring)."""

    namespace: str | None = None
    permissions: list[str] = field(default_factory=lambda: list(ALL_PERMISSIONS))
    topics: list[str] = field(default_factory=list)
    partitioned_topics: dict[str, int] | None = field(default=None, metadata={"alias": "partitioned-topics"})

    def __post_init__(self) -> None:
        _check_str("namespace", self.namespace, optional=True)
        _check_str_list("permissions", self.permissions)
        _check_str_list("topics", self.topics)
        _check_map("partitioned-topics", self.partitioned_topics, int)


@dataclass
class ClientGrantData:
    """The provider's application databag (see the module docstring)."""

    service_url: str | None = field(default=None, metadata={"alias": "service-url"})
    web_service_url: str | None = field(default=None, metadata={"alias": "web-service-url"})
    namespace: str | None = None
    role: str | None = None
    secret_credentials: str | None = field(default=None, metadata={"alias": "secret-credentials"})
    error: str | None = None
    partitioned_topics: dict[str, int] | None = field(default=None, metadata={"alias": "partitioned-topics"})
    topic_errors: dict[str, str] | None = field(default=None, metadata={"alias": "topic-errors"})
    cluster: dict[str, int | str] | None = None
    tls_ca: str | None = field(default=None, metadata={"alias": "tls-ca"})

    def __post_init__(self) -> None:
        for key in ("service_url", "web_service_url", "namespace", "role", "secret_credentials", "error", "tls_ca"):
            _check_str(key.replace("_", "-"), getattr(self, key), optional=True)
        _check_map("partitioned-topics", self.partitioned_topics, int)
        _check_map("topic-errors", self.topic_errors, str)
        _check_cluster(self.cluster)


@dataclass(frozen=True)
class ClientRequest:
    """A valid request, as the provider serves it."""

    relation_id: int
    app: str
    namespace: str
    permissions: tuple[str, ...]
    topics: tuple[str, ...]
    partitioned_topics: tuple[tuple[str, int], ...] = ()  # (name, partitions), sorted by name

    @property
    def tenant(self) -> str:
        return self.namespace.split("/")[0]


@dataclass(frozen=True)
class Grant:
    """What the provider hands back on one relation."""

    service_url: str
    web_service_url: str
    namespace: str
    role: str
    token: str
    partitioned_topics: dict[str, int] = field(default_factory=dict)  # as they exist now
    topic_errors: dict[str, str] = field(default_factory=dict)
    cluster: dict[str, int | str] = field(default_factory=dict)  # the `cluster` object; {}: absent
    tls_ca: str | None = None  # the CA's PEM when the URLs are TLS ones


@dataclass(frozen=True)
class Connection:
    """What a client needs to connect: URLs, its namespace, its role and its token.

    `tls_ca` is set when the URLs are TLS ones (`pulsar+ssl://`, `https://`): the PEM of the
    CA to verify the brokers with (e.g. the Python client's `tls_trust_certs_file_path`).
    """

    service_url: str
    web_service_url: str
    namespace: str
    role: str
    token: str
    tls_ca: str | None = None


def is_reserved_tenant(tenant: str) -> bool:
    return tenant in RESERVED_TENANTS or tenant.startswith(RESERVED_TENANT_PREFIX)


def check_partitioned_topics(partitioned_topics: dict[str, int], topics: list[str]) -> None:
    """Raise InvalidRequestError unless every name and partition count may be asked."""
    bad = [t for t in partitioned_topics if not _NAME.match(t)]
    if bad:
        raise InvalidRequestError(f"partitioned topic names {bad} are not valid")
    bad = [t for t in partitioned_topics if PARTITION_INFIX in t]
    if bad:
        raise InvalidRequestError(
            f"partitioned topic names {bad} contain {PARTITION_INFIX!r}, which Pulsar keeps for partitions"
        )
    counts = {t: n for t, n in partitioned_topics.items() if not 1 <= n <= MAX_PARTITIONS}
    if counts:
        raise InvalidRequestError(f"partition counts {counts} are not in 1..{MAX_PARTITIONS}")
    both = sorted(set(partitioned_topics) & set(topics))
    if both:
        raise InvalidRequestError(f"topics {both} are asked both partitioned and non-partitioned")


def validate_request(relation_id: int, app: str, data: ClientRequestData) -> ClientRequest | None:
    """The request in `data`, None while the requirer has not asked; raise InvalidRequestError."""
    if data.namespace is None:
        return None
    namespace = data.namespace
    tenant, _, name = namespace.partition("/")
    if not (_NAME.match(tenant) and _NAME.match(name)):
        raise InvalidRequestError(f"namespace {namespace!r} is not tenant/namespace")
    if tenant != app:
        raise InvalidRequestError(f"namespace {namespace!r}: the tenant must be the application name {app!r}")
    if is_reserved_tenant(tenant):
        raise InvalidRequestError(
            f"namespace {namespace!r}: tenant {tenant!r} is reserved (public, pulsar, pulsar-k8s*); "
            "deploy the client under another application name"
        )
    unknown = [p for p in data.permissions if p not in ALL_PERMISSIONS]
    if unknown or not data.permissions:
        raise InvalidRequestError(f"permissions {unknown or data.permissions} not in {list(ALL_PERMISSIONS)}")
    bad = [t for t in data.topics if not _NAME.match(t)]
    if bad:
        raise InvalidRequestError(f"topic names {bad} are not valid")
    partitioned = data.partitioned_topics or {}
    check_partitioned_topics(partitioned, data.topics)
    return ClientRequest(
        relation_id,
        app,
        namespace,
        tuple(sorted(set(data.permissions))),
        tuple(data.topics),
        tuple(sorted(partitioned.items())),
    )


def _erase_unset(relation: ops.Relation, app: ops.Application, data: ClientGrantData | ClientRequestData) -> None:
    """Save `data`, leaving the keys of unset fields out of the databag (absent = not set)."""
    relation.save(data, app)
    bag = relation.data[app]
    for key in [k for k, v in bag.items() if v == "null"]:
        del bag[key]


class PulsarProvider(ops.Object):
    """pulsar-k8s's side: read requests, hand back URLs, namespace, role and a token secret."""

    def __init__(self, charm: ops.CharmBase, relation_name: str = DEFAULT_RELATION) -> None:
        super().__init__(charm, relation_name)
        self.charm = charm
        self.relation_name = relation_name

    @property
    def relations(self) -> list[ops.Relation]:
        """The live relations (a broken one is left out during its relation-broken)."""
        return list(self.charm.model.relations[self.relation_name])

    def request(self, relation: ops.Relation) -> ClientRequest | None:
        """The relation's request; None until the requirer asked. Raises InvalidRequestError."""
        if relation.app is None:
            return None
        try:
            data = relation.load(ClientRequestData, relation.app)
        except (ValueError, TypeError) as error:  # JSONDecodeError is a ValueError
            raise InvalidRequestError(
                f"the request does not decode (each value is JSON since LIBPATCH 2 of the pulsar library): {error}"
            ) from error
        return validate_request(relation.id, relation.app.name, data)

    def granted(self, relation: ops.Relation) -> ClientGrantData:
        """What this side published on the relation (leader only); empty if it does not decode."""
        try:
            return relation.load(ClientGrantData, self.charm.app)
        except (ValueError, TypeError):
            return ClientGrantData()

    def issued_token(self, relation: ops.Relation) -> str | None:
        """The token last handed out on the relation (leader only), None if none was."""
        try:
            secret = self.charm.model.get_secret(label=self._secret_label(relation))
            return secret.get_content(refresh=True).get("token")
        except (ops.SecretNotFoundError, ops.ModelError):
            return None

    def token_revision(self, relation: ops.Relation) -> tuple[str, int] | None:
        """The id and latest revision of the relation's token secret (leader only), None if there is none.

        Once no unit of the client tracks that revision any more (each read the next one),
        Juju tells the leader with secret-remove for it.
        """
        try:
            info = self.charm.model.get_secret(label=self._secret_label(relation)).get_info()
        except (ops.SecretNotFoundError, ops.ModelError):
            return None
        return info.id, info.revision

    def grant(self, relation: ops.Relation, grant: Grant) -> None:
        """Publish a grant (leader only): the token goes in a Juju secret granted to the relation."""
        content = {"token": grant.token}
        try:
            secret = self.charm.model.get_secret(label=self._secret_label(relation))
            if secret.get_content(refresh=True) != content:
                secret.set_content(content)
        except ops.SecretNotFoundError:
            secret = self.charm.app.add_secret(content, label=self._secret_label(relation))
        secret.grant(relation)
        secret_id = secret.id or secret.get_info().id  # a secret looked up by label has no id yet
        data = ClientGrantData(
            grant.service_url,
            grant.web_service_url,
            grant.namespace,
            grant.role,
            secret_id,
            partitioned_topics=dict(grant.partitioned_topics) or None,
            topic_errors=dict(grant.topic_errors) or None,
            cluster=dict(grant.cluster) or None,
            tls_ca=grant.tls_ca,
        )
        if self.granted(relation) != data:
            _erase_unset(relation, self.charm.app, data)

    def update_cluster(self, relation: ops.Relation, cluster: dict[str, int | str]) -> bool:
        """Rewrite the `cluster` object of a published grant (leader only) if it changed.

        A relation without a grant (not served yet, refused, or not decoding) is left alone.
        Returns whether it wrote.
        """
        current = self.granted(relation)
        if current.error or not current.secret_credentials:
            return False
        data = replace(current, cluster=dict(cluster) or None)
        if data == current:
            return False
        _erase_unset(relation, self.charm.app, data)
        return True

    def refuse(self, relation: ops.Relation, reason: str) -> None:
        """Publish why the request is refused (leader only), withdrawing any earlier grant."""
        self.revoke(relation)
        if self.granted(relation) != ClientGrantData(error=reason):
            _erase_unset(relation, self.charm.app, ClientGrantData(error=reason))

    def revoke(self, relation: ops.Relation) -> None:
        """Remove the relation's token secret (leader only), e.g. when the relation is broken."""
        try:
            self.charm.model.get_secret(label=self._secret_label(relation)).remove_all_revisions()
        except ops.SecretNotFoundError:
            pass

    def _secret_label(self, relation: ops.Relation) -> str:
        return f"{self.relation_name}-client-{relation.id}"


class PulsarRequirer(ops.Object):
    """A client's side: ask for a namespace (and partitioned topics), read the connection once granted.

    The namespace, permissions and topics come from the constructor and are written again on
    every `publish_request`. The partitioned topics are asked at run time
    (`request_partitioned_topics`) and live in the relation's data, which `publish_request` keeps.
    """

    def __init__(
        self,
        charm: ops.CharmBase,
        relation_name: str = DEFAULT_RELATION,
        namespace: str | None = None,
        permissions: tuple[str, ...] = ALL_PERMISSIONS,
        topics: tuple[str, ...] = (),
    ) -> None:
        super().__init__(charm, relation_name)
        self.charm = charm
        self.relation_name = relation_name
        self.request = ClientRequestData(namespace or f"{charm.app.name}/default", list(permissions), list(topics))
        self.framework.observe(charm.on[relation_name].relation_created, self._on_relation_created)
        self.framework.observe(charm.on.leader_elected, self._on_relation_created)

    @property
    def relation(self) -> ops.Relation | None:
        return self.charm.model.get_relation(self.relation_name)

    def _on_relation_created(self, _: ops.EventBase) -> None:
        self.publish_request()

    def _current_request(self, relation: ops.Relation) -> ClientRequestData | None:
        try:
            return relation.load(ClientRequestData, self.charm.app)
        except (ValueError, TypeError):
            return None

    def publish_request(self) -> None:
        """Write the request (leader only; other units have nothing to say).

        The partitioned topics already in the relation's data are kept.
        """
        relation = self.relation
        if relation is None or not self.charm.unit.is_leader():
            return
        current = self._current_request(relation)
        wanted = replace(self.request, partitioned_topics=current.partitioned_topics if current else None)
        if current != wanted:
            _erase_unset(relation, self.charm.app, wanted)

    def request_partitioned_topics(self, topics: dict[str, int]) -> None:
        """Ask for these partitioned topics (leader only), keeping the ones asked before.

        A name already asked takes the new count (a smaller one is refused by the provider, see
        `topic_errors`). Raises InvalidRequestError for an invalid name or count (nothing is
        written), RequestNotWritableError on a unit that is not the leader or without the relation.
        """
        self._write_partitioned_topics(topics, keep=True)

    def set_partitioned_topics(self, topics: dict[str, int]) -> None:
        """Ask for exactly these partitioned topics (leader only); as `request_partitioned_topics`.

        A name left out is no longer asked; its topic stays on the cluster.
        """
        self._write_partitioned_topics(topics, keep=False)

    def requested_partitioned_topics(self) -> dict[str, int]:
        """The partitioned topics the request asks for now (leader only: {} on other units)."""
        relation = self.relation
        if relation is None or not self.charm.unit.is_leader():
            return {}
        current = self._current_request(relation)
        return dict(current.partitioned_topics or {}) if current else {}

    def _write_partitioned_topics(self, topics: dict[str, int], keep: bool) -> None:
        relation = self.relation
        if relation is None:
            raise RequestNotWritableError(f"no {self.relation_name} relation")
        if not self.charm.unit.is_leader():
            raise RequestNotWritableError("only the leader writes the request")
        try:
            _check_map("partitioned topics", topics, int, optional=False)
        except ValueError as error:
            raise InvalidRequestError(str(error)) from error
        current = self._current_request(relation)
        asked = {**((current.partitioned_topics or {}) if current and keep else {}), **topics}
        check_partitioned_topics(asked, self.request.topics)
        wanted = replace(self.request, partitioned_topics=asked or None)
        if current != wanted:
            _erase_unset(relation, self.charm.app, wanted)

    def _grant_data(self) -> ClientGrantData | None:
        relation = self.relation
        if relation is None or relation.app is None:
            return None
        try:
            return relation.load(ClientGrantData, relation.app)
        except (ValueError, TypeError) as error:
            raise InvalidGrantError(f"pulsar-k8s's data does not decode: {error}") from error

    def error(self) -> str | None:
        """Why the provider refused the request, or why its answer cannot be read; None if neither."""
        try:
            data = self._grant_data()
        except InvalidGrantError as error:
            return str(error)
        return data.error if data else None

    def connection(self) -> Connection | None:
        """The granted connection, or None while the provider has not granted one."""
        try:
            data = self._grant_data()
        except InvalidGrantError:
            return None
        if data is None or data.error or not data.secret_credentials:
            return None
        if not (data.service_url and data.web_service_url and data.namespace and data.role):
            return None
        try:
            token = self.charm.model.get_secret(id=data.secret_credentials).get_content(refresh=True)["token"]
        except (ops.SecretNotFoundError, ops.ModelError, KeyError):
            return None
        return Connection(data.service_url, data.web_service_url, data.namespace, data.role, token, data.tls_ca)

    def partitioned_topics(self) -> dict[str, int]:
        """The requested partitioned topics that exist, with their partition counts now.

        {} until the provider granted the request (or if its answer does not decode). A topic
        asked with n partitions is ready when it is here with n; any unit may read this.
        """
        data = self._granted()
        return dict(data.partitioned_topics or {}) if data else {}

    def topic_errors(self) -> dict[str, str]:
        """Why requested partitioned topics are not as asked: {name: reason}; {} if none."""
        data = self._granted()
        return dict(data.topic_errors or {}) if data else {}

    def cluster_info(self) -> dict[str, int | str]:
        """What the client is talking to, from the grant's `cluster` object (see the module docstring).

        E.g. `{"pulsar-version": "4.0.8", "brokers": 3, "bookies": 3, "ensemble-size": 3,
        "write-quorum": 2, "ack-quorum": 2}`; a key the provider could never read is absent.
        {} until the provider granted the request, if its answer does not decode, or if the
        provider's library is older than LIBPATCH 4. Any unit may read this.
        """
        data = self._granted()
        return dict(data.cluster or {}) if data else {}

    def _granted(self) -> ClientGrantData | None:
        try:
            data = self._grant_data()
        except InvalidGrantError:
            return None
        return None if data is None or data.error else data
