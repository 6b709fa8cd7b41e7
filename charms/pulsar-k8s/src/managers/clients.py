"""Client access (leader only): grants and revocations for the applications related over `pulsar`."""

from __future__ import annotations

import logging

import ops

from charms.pulsar_k8s.v0.pulsar import Grant, InvalidRequestError, PulsarProvider
from managers import auth
from managers.admin import AdminError, PulsarAdmin

logger = logging.getLogger(__name__)


class ClientAccess:
    """Leader only: grants and revocations for the applications related over `pulsar`."""

    def __init__(self, provider: PulsarProvider, admin: PulsarAdmin, signing_key: str) -> None:
        self.provider = provider
        self.admin = admin
        self.signing_key = signing_key

    def serve(self, cluster_name: str, service_url: str, web_service_url: str) -> str | None:
        """Grant every valid request, refuse invalid ones, sweep permissions of departed clients.

        Returns an error message if the broker could not be reached or refused a call (the charm
        shows it in a status and retries), else None.
        """
        for relation in self.provider.relations:
            try:
                request = self.provider.request(relation)
            except InvalidRequestError as error:
                self.provider.refuse(relation, str(error))
                continue
            if request is None:
                continue
            try:
                tenant = request.namespace.split("/")[0]
                self.admin.ensure_tenant(tenant, cluster_name)
                self.admin.ensure_namespace(request.namespace)
                self.admin.grant(request.namespace, request.app, request.permissions)
                for topic in request.topics:
                    self.admin.ensure_topic(request.namespace, topic)
            except AdminError as error:
                logger.error("serving client %s failed: %s", request.app, error)
                return f"serving client {request.app} failed: {error}"
            token = auth.token_for(request.app, self.signing_key)
            grant = Grant(service_url, web_service_url, request.namespace, token)
            self.provider.grant(relation, grant)
        return None

    def revoke(self, relation: ops.Relation) -> str | None:
        """The relation is broken (and this unit is not dying): remove its permissions and secret.

        Returns an error message when the broker could not be reached (the sweep in `serve`
        completes it later).
        """
        self.provider.revoke(relation)
        return None
