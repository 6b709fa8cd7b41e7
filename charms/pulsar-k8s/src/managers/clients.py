"""Client access (leader only): grants and revocations for the applications related over `pulsar`.

Each relation gets its own role, `pulsar-k8s-client-<relation id>`: two client applications
never share a role whatever they are called, no client role is the superuser's, and since Juju
never reuses a relation id in a model, a role is never granted to a second relation.

Pulsar's token provider keeps no revocation list and our tokens do not expire, so revoking
means the role keeps no permission anywhere: its namespace and topic permissions and tenant
admin entries go, and the role is never granted again. Every `serve` also sweeps: any client
role whose relation is gone loses what it still holds, so a revocation that failed (broker down,
leadership moved) completes on a later reconcile. The clients' data stays (see the library).

Partitioned topics are created for the client (its role may only produce and consume): the
leader reads what the namespace holds, decides in `partitioned_topic_changes` what to create or
grow (never shrink), and calls the broker only for those. The grant says which topics exist with
which counts, and why any is not as asked; a refusal of one topic leaves the rest of the grant.

Every grant also says what the client talks to (the library's `cluster` object): the Pulsar
version, the brokers and bookies serving and the ledger quorum, as the leader's snapshot knows
them. `publish_cluster` keeps it current on every grant without any broker call, so it follows a
bookie or a broker that went away even while no admin call can be made.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ops

from charms.pulsar_k8s.v0.pulsar import ClientRequest, Grant, InvalidRequestError, PulsarProvider
from managers import auth
from managers.admin import AdminError, PulsarAdmin

logger = logging.getLogger(__name__)

CLIENT_ROLE_PREFIX = "pulsar-k8s-client-"
_CLIENT_ROLE = re.compile(rf"^{CLIENT_ROLE_PREFIX}(0|[1-9][0-9]*)$")
# Pulsar's system tenant: heartbeat and system namespaces, never granted to clients.
SYSTEM_TENANT = "pulsar"


def client_role(relation_id: int) -> str:
    """The role of the client on relation `relation_id`."""
    return f"{CLIENT_ROLE_PREFIX}{relation_id}"


def relation_id_of(role: str) -> int | None:
    """The relation id a client role was made for; None for any other role."""
    match = _CLIENT_ROLE.match(role)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class NamespaceAuth:
    """Who may do what in one namespace: namespace-level and topic-level permissions."""

    namespace: str
    roles: dict[str, frozenset[str]] = field(default_factory=dict)
    topic_roles: dict[str, frozenset[str]] = field(default_factory=dict)  # topic -> roles

    @classmethod
    def from_policies(cls, namespace: str, policies: dict[str, Any]) -> NamespaceAuth:
        auth_policies = policies.get("auth_policies") or {}
        namespace_auth = auth_policies.get("namespace_auth") or {}
        destination_auth = auth_policies.get("destination_auth") or {}
        return cls(
            namespace,
            {role: frozenset(actions or ()) for role, actions in namespace_auth.items()},
            {topic: frozenset(roles or {}) for topic, roles in destination_auth.items()},
        )


@dataclass(frozen=True)
class TenantAuth:
    """A tenant as the admin API describes it."""

    name: str
    admin_roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccessView:
    """What the broker says about every tenant and namespace but the system tenant's."""

    tenants: dict[str, TenantAuth]
    namespaces: dict[str, NamespaceAuth]


@dataclass(frozen=True)
class Revocation:
    """One permission of a client role to remove: on a namespace, a topic, or as tenant admin."""

    role: str
    namespace: str | None = None
    topic: str | None = None
    tenant: str | None = None


@dataclass(frozen=True)
class TopicChanges:
    """What to do about a client's partitioned topics: create, grow, or tell why not."""

    create: dict[str, int] = field(default_factory=dict)  # name -> partitions
    grow: dict[str, int] = field(default_factory=dict)  # name -> the larger count asked
    errors: dict[str, str] = field(default_factory=dict)  # name -> why it stays as it is


def partitioned_topic_changes(
    asked: Mapping[str, int], partitioned: Mapping[str, int], non_partitioned: Collection[str]
) -> TopicChanges:
    """The changes that make the asked partitioned topics exist; none for topics already as asked.

    `partitioned` holds the namespace's partitioned topics with their counts, `non_partitioned`
    the names of its other topics (only needed for names not in `partitioned`).
    """
    changes = TopicChanges()
    for name, count in sorted(asked.items()):
        have = partitioned.get(name)
        if have is None and name in non_partitioned:
            changes.errors[name] = "a non-partitioned topic of that name exists; it is left as it is"
        elif have is None:
            changes.create[name] = count
        elif count > have:
            changes.grow[name] = count
        elif count < have:
            changes.errors[name] = (
                f"{count} partitions asked but it has {have}: Pulsar cannot reduce partitions; it keeps {have}"
            )
    return changes


def cluster_object(published: Mapping[str, int | str] | None, facts: Mapping[str, int | str]) -> dict[str, int | str]:
    """The `cluster` object to publish: the facts known now over the ones published before.

    A fact the leader cannot read now (its image, the quorum under an invalid config) keeps its
    last published value rather than vanish from the client's view.
    """
    return {**(published or {}), **facts}


def short_names(namespace: str, topics: Iterable[str]) -> set[str]:
    """The names in `namespace` of persistent topics listed by their full names."""
    prefix = f"persistent://{namespace}/"
    return {topic.removeprefix(prefix) for topic in topics if topic.startswith(prefix)}


def stale_access(view: AccessView, live_relation_ids: Iterable[int]) -> list[Revocation]:
    """What client roles of relations that are gone still hold."""
    live = set(live_relation_ids)

    def stale(role: str) -> bool:
        relation_id = relation_id_of(role)
        return relation_id is not None and relation_id not in live

    found: list[Revocation] = []
    for tenant in sorted(view.tenants.values(), key=lambda t: t.name):
        found += [Revocation(role, tenant=tenant.name) for role in tenant.admin_roles if stale(role)]
    for namespace in sorted(view.namespaces.values(), key=lambda n: n.namespace):
        found += [Revocation(role, namespace=namespace.namespace) for role in sorted(namespace.roles) if stale(role)]
        for topic, roles in sorted(namespace.topic_roles.items()):
            found += [Revocation(role, topic=topic) for role in sorted(roles) if stale(role)]
    return found


class ClientAccess:
    """Leader only: grants and revocations for the applications related over `pulsar`."""

    def __init__(
        self,
        provider: PulsarProvider,
        admin: PulsarAdmin,
        issuer: auth.TokenIssuer,
        token_lifetime: int = 28 * 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.admin = admin
        self.issuer = issuer
        self.token_lifetime = token_lifetime  # seconds a client's token is valid
        self.clock = clock

    def serve(
        self,
        cluster_name: str,
        service_url: str,
        web_service_url: str,
        cluster: Mapping[str, int | str] | None = None,
        tls_ca: str | None = None,
    ) -> str | None:
        """Grant every valid request, refuse invalid ones, sweep permissions of departed clients.

        `cluster` holds the facts about the cluster known now (the library's `cluster` keys);
        each grant carries them, and `tls_ca` when the URLs are TLS ones. Returns an error
        message if the broker could not be reached or refused a call (the charm shows it in a
        status and retries), else None.
        """
        try:
            view = self._read_access()
        except AdminError as error:
            logger.error("reading client permissions failed: %s", error)
            return f"reading client permissions failed: {error}"
        errors: list[str] = []
        relations = self.provider.relations
        for relation in relations:
            try:
                self._serve(relation, view, cluster_name, (service_url, web_service_url, tls_ca), cluster or {})
            except AdminError as error:
                app = relation.app.name if relation.app else f"relation {relation.id}"
                logger.error("serving client %s failed: %s", app, error)
                errors.append(f"serving client {app} failed: {error}")
        try:
            self._remove(stale_access(view, (relation.id for relation in relations)))
        except AdminError as error:
            logger.error("sweeping departed clients' permissions failed: %s", error)
            errors.append(f"sweeping departed clients' permissions failed: {error}")
        return "; ".join(errors) or None

    def publish_cluster(self, facts: Mapping[str, int | str]) -> None:
        """Bring the `cluster` object of every published grant up to `facts`; no broker call.

        Grants whose object is already current are not written; relations without a grant are
        left to `serve`.
        """
        for relation in self.provider.relations:
            cluster = cluster_object(self.provider.granted(relation).cluster, facts)
            if self.provider.update_cluster(relation, cluster):
                logger.info("the cluster facts granted on relation %s are now %s", relation.id, cluster)

    def revoke(self, relation: ops.Relation) -> str | None:
        """The relation is broken (and this unit is not dying): remove its permissions and secret.

        Returns an error message when the broker could not be reached (the sweep in `serve`
        completes it later).
        """
        self.provider.revoke(relation)
        live = {r.id for r in self.provider.relations} - {relation.id}
        try:
            revocations = stale_access(self._read_access(), live)
            self._remove(revocations)
        except AdminError as error:
            logger.error("revoking %s failed, the next reconcile retries: %s", client_role(relation.id), error)
            return f"revoking {client_role(relation.id)} failed: {error}"
        logger.info("revoked %s: %s", client_role(relation.id), revocations)
        return None

    def _serve(
        self,
        relation: ops.Relation,
        view: AccessView,
        cluster_name: str,
        endpoints: tuple[str, str, str | None],
        facts: Mapping[str, int | str],
    ) -> None:
        """`endpoints`: the service URL, the web service URL, and the CA when they are TLS ones."""
        role = client_role(relation.id)
        published = self.provider.granted(relation)
        previous = published.namespace
        try:
            request = self.provider.request(relation)
        except InvalidRequestError as error:
            if previous:
                self._revoke_namespace(view, previous, role)
            self.provider.refuse(relation, str(error))
            return
        if request is None:
            return
        self._grant(view, request, role, cluster_name)
        ready, topic_errors = self._partitioned_topics(request, request.namespace in view.namespaces)
        if previous and previous != request.namespace:
            self._revoke_namespace(view, previous, role)
        # The token handed out before, until it is due for renewal; then a new one.
        now, issued = int(self.clock()), self.provider.issued_token(relation)
        if issued and self.issuer.reusable(issued, role, now, self.token_lifetime):
            token = issued
        else:
            token = self.issuer.token(role, now, now + self.token_lifetime)
        cluster = cluster_object(published.cluster, facts)
        service_url, web_service_url, tls_ca = endpoints
        grant = Grant(
            service_url, web_service_url, request.namespace, role, token, ready, topic_errors, cluster, tls_ca
        )
        self.provider.grant(relation, grant)

    def _grant(self, view: AccessView, request: ClientRequest, role: str, cluster_name: str) -> None:
        """Create what is missing and grant what differs; unchanged grants make no call."""
        if request.tenant not in view.tenants:
            self.admin.ensure_tenant(request.tenant, cluster_name)
        existing = view.namespaces.get(request.namespace)
        if existing is None:
            self.admin.ensure_namespace(request.namespace)
        if existing is None or existing.roles.get(role) != frozenset(request.permissions):
            self.admin.grant(request.namespace, role, request.permissions)
        for topic in request.topics:
            self.admin.ensure_topic(request.namespace, topic)

    def _partitioned_topics(
        self, request: ClientRequest, namespace_existed: bool
    ) -> tuple[dict[str, int], dict[str, str]]:
        """Create or grow the asked partitioned topics; return those that exist, with counts, and errors.

        A refusal by the broker is that topic's error; an unreachable broker raises AdminError.
        """
        asked = dict(request.partitioned_topics)
        if not asked:
            return {}, {}
        namespace = request.namespace
        partitioned: dict[str, int] = {}
        non_partitioned: set[str] = set()
        if namespace_existed:  # a namespace created just now holds nothing to read
            listed = short_names(namespace, self.admin.partitioned_topics(namespace))
            for name in sorted(listed & set(asked)):
                if count := self.admin.partitions(namespace, name):
                    partitioned[name] = count
            if set(asked) - set(partitioned):  # a topic to create: is the name taken by a plain topic?
                non_partitioned = short_names(namespace, self.admin.topics(namespace)) - listed
        changes = partitioned_topic_changes(asked, partitioned, non_partitioned)
        ready, errors = dict(partitioned), dict(changes.errors)
        for name, count in changes.create.items():
            if error := self._refused(self.admin.create_partitioned_topic, namespace, name, count):
                errors[name] = f"creating it with {count} partitions failed: {error}"
            else:
                logger.info("created the partitioned topic %s/%s with %d partitions", namespace, name, count)
                ready[name] = count
        for name, count in changes.grow.items():
            if error := self._refused(self.admin.add_partitions, namespace, name, count):
                errors[name] = f"growing it to {count} partitions failed: {error}"
            else:
                logger.info("grew the partitioned topic %s/%s to %d partitions", namespace, name, count)
                ready[name] = count
        return dict(sorted(ready.items())), dict(sorted(errors.items()))

    @staticmethod
    def _refused(call: Callable[[str, str, int], None], namespace: str, topic: str, partitions: int) -> str | None:
        """Make the call; the broker's refusal, if it refused (other failures raise)."""
        try:
            call(namespace, topic, partitions)
        except AdminError as error:
            if not error.refused:
                raise
            logger.warning("the broker refused a change to %s/%s: %s", namespace, topic, error)
            return str(error)
        return None

    def _revoke_namespace(self, view: AccessView, namespace: str, role: str) -> None:
        existing = view.namespaces.get(namespace)
        if existing is not None and role in existing.roles:
            self.admin.revoke(namespace, role)

    def _read_access(self) -> AccessView:
        tenants: dict[str, TenantAuth] = {}
        namespaces: dict[str, NamespaceAuth] = {}
        for tenant in self.admin.tenants():
            if tenant == SYSTEM_TENANT:
                continue
            info = self.admin.tenant_info(tenant)
            if info is None:  # deleted meanwhile
                continue
            tenants[tenant] = TenantAuth(tenant, tuple(info.get("adminRoles") or ()))
            for namespace in self.admin.namespaces(tenant):
                policies = self.admin.policies(namespace)
                if policies is not None:
                    namespaces[namespace] = NamespaceAuth.from_policies(namespace, policies)
        return AccessView(tenants, namespaces)

    def _remove(self, revocations: list[Revocation]) -> None:
        admins: dict[str, set[str]] = {}
        for revocation in revocations:
            logger.info("removing the permissions of %s, whose relation is gone: %s", revocation.role, revocation)
            if revocation.namespace is not None:
                self.admin.revoke(revocation.namespace, revocation.role)
            elif revocation.topic is not None:
                self.admin.revoke_on_topic(revocation.topic, revocation.role)
            elif revocation.tenant is not None:
                admins.setdefault(revocation.tenant, set()).add(revocation.role)
        for tenant, roles in admins.items():
            info = self.admin.tenant_info(tenant)
            if info is not None:
                kept = [role for role in info.get("adminRoles") or () if role not in roles]
                self.admin.update_tenant(tenant, {**info, "adminRoles": kept})
