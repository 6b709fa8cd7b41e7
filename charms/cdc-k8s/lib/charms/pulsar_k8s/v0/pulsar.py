"""The `pulsar` interface: a client application asks for a namespace and gets a token for it.

Requirer application data:
- `namespace`: `tenant/namespace` it wants. The tenant must be the requirer's application
  name (default `<app>/default`): an application can never ask for another's namespace.
- `permissions`: comma-separated subset of `produce,consume` (default both)
- `topics` (optional): comma-separated topic names to create in that namespace

Provider (pulsar-k8s) application data, once granted:
- `service-url`: `pulsar://` URL listing every broker
- `web-service-url`: `http://` URL listing every broker
- `namespace`: the namespace granted
- `secret-credentials`: id of a Juju secret holding `token` (a JWT whose role is the
  requirer's application name), granted to the relation
- `error`: set instead when the request cannot be granted, and says why

Owned by pulsar-k8s; every client charm carries an identical copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import ops

LIBID = "24e9bbc0699e4782a67a2453be440f52"
LIBAPI = 0
LIBPATCH = 1

DEFAULT_RELATION = "pulsar"
ALL_PERMISSIONS = ("produce", "consume")
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")


class InvalidRequestError(ValueError):
    """A client's request that cannot be granted; the message says why."""


@dataclass(frozen=True)
class ClientRequest:
    """What a client application asked for on one relation."""

    relation_id: int
    app: str
    namespace: str
    permissions: tuple[str, ...]
    topics: tuple[str, ...]


@dataclass(frozen=True)
class Grant:
    """What the provider hands back."""

    service_url: str
    web_service_url: str
    namespace: str
    token: str


@dataclass(frozen=True)
class Connection:
    """What a client needs to connect: URLs, its namespace and its token."""

    service_url: str
    web_service_url: str
    namespace: str
    token: str


def parse_request(relation_id: int, app: str, data: dict[str, str]) -> ClientRequest:
    """Validate a requirer's application data; raise InvalidRequestError."""
    namespace = data.get("namespace") or f"{app}/default"
    tenant, _, name = namespace.partition("/")
    if not (_NAME.match(tenant) and _NAME.match(name)):
        raise InvalidRequestError(f"namespace {namespace!r} is not tenant/namespace")
    if tenant != app:
        raise InvalidRequestError(f"namespace {namespace!r}: the tenant must be the application name {app!r}")
    permissions = tuple(
        p.strip() for p in (data.get("permissions") or ",".join(ALL_PERMISSIONS)).split(",") if p.strip()
    )
    unknown = [p for p in permissions if p not in ALL_PERMISSIONS]
    if unknown or not permissions:
        raise InvalidRequestError(f"permissions {unknown or permissions} not in {list(ALL_PERMISSIONS)}")
    topics = tuple(t.strip() for t in (data.get("topics") or "").split(",") if t.strip())
    bad = [t for t in topics if not _NAME.match(t)]
    if bad:
        raise InvalidRequestError(f"topic names {bad} are not valid")
    return ClientRequest(relation_id, app, namespace, tuple(sorted(set(permissions))), topics)


class PulsarProvider(ops.Object):
    """pulsar-k8s's side: read requests, hand back URLs, namespace and a token secret."""

    def __init__(self, charm: ops.CharmBase, relation_name: str = DEFAULT_RELATION) -> None:
        super().__init__(charm, relation_name)
        self.charm = charm
        self.relation_name = relation_name

    @property
    def relations(self) -> list[ops.Relation]:
        return list(self.charm.model.relations[self.relation_name])

    def request(self, relation: ops.Relation) -> ClientRequest | None:
        """The relation's request; None until the requirer wrote one. Raises InvalidRequestError."""
        if relation.app is None or not relation.data[relation.app].get("namespace"):
            return None
        return parse_request(relation.id, relation.app.name, dict(relation.data[relation.app]))

    def grant(self, relation: ops.Relation, grant: Grant) -> None:
        """Publish a grant (leader only): the token goes in a Juju secret granted to the relation."""
        label = f"{self.relation_name}-client-{relation.id}"
        content = {"token": grant.token}
        try:
            secret = self.charm.model.get_secret(label=label)
            if secret.get_content(refresh=True) != content:
                secret.set_content(content)
        except ops.SecretNotFoundError:
            secret = self.charm.app.add_secret(content, label=label)
        secret.grant(relation)
        data = relation.data[self.charm.app]
        data.pop("error", None)
        data.update(
            {
                "service-url": grant.service_url,
                "web-service-url": grant.web_service_url,
                "namespace": grant.namespace,
                "secret-credentials": secret.id or "",
            }
        )

    def refuse(self, relation: ops.Relation, reason: str) -> None:
        relation.data[self.charm.app]["error"] = reason

    def granted(self, relation: ops.Relation) -> str | None:
        """The namespace already granted on this relation, if any."""
        return relation.data[self.charm.app].get("namespace")

    def revoke(self, relation: ops.Relation) -> None:
        """Remove the relation's token secret (leader only), e.g. when the relation is broken."""
        try:
            self.charm.model.get_secret(label=f"{self.relation_name}-client-{relation.id}").remove_all_revisions()
        except ops.SecretNotFoundError:
            pass


class PulsarRequirer(ops.Object):
    """A client's side: ask for a namespace, read the connection once granted."""

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
        self.namespace = namespace or f"{charm.app.name}/default"
        self.permissions = permissions
        self.topics = topics
        self.framework.observe(charm.on[relation_name].relation_created, self._on_relation_created)
        self.framework.observe(charm.on.leader_elected, self._on_relation_created)

    @property
    def relation(self) -> ops.Relation | None:
        return self.charm.model.get_relation(self.relation_name)

    def _on_relation_created(self, _: ops.EventBase) -> None:
        self.publish_request()

    def publish_request(self) -> None:
        """Write the request (leader only; other units have nothing to say)."""
        relation = self.relation
        if relation is None or not self.charm.unit.is_leader():
            return
        relation.data[self.charm.app].update(
            {
                "namespace": self.namespace,
                "permissions": ",".join(self.permissions),
                "topics": ",".join(self.topics),
            }
        )

    def error(self) -> str | None:
        relation = self.relation
        if relation is None or relation.app is None:
            return None
        return relation.data[relation.app].get("error")

    def connection(self) -> Connection | None:
        """The granted connection, or None while the provider has not granted one."""
        relation = self.relation
        if relation is None or relation.app is None:
            return None
        data = relation.data[relation.app]
        if not data.get("secret-credentials") or data.get("error"):
            return None
        try:
            token = self.charm.model.get_secret(id=data["secret-credentials"]).get_content(refresh=True)["token"]
        except (ops.SecretNotFoundError, ops.ModelError, KeyError):
            return None
        return Connection(data["service-url"], data["web-service-url"], data["namespace"], token)
