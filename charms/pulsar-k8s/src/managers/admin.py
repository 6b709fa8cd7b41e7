"""The broker's admin REST API, as the charm's superuser: tenants, namespaces, permissions, topics.

Hooks stay fast: one HTTP call per change, instead of a JVM `pulsar-admin` per call.
Names from the broker are quoted into paths; namespaces of three parts (`tenant/cluster/ns`,
Pulsar's v1 names) go to the v1 paths.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from literals import BROKER_WEB_PORT

TIMEOUT = 10.0


class AdminError(Exception):
    """An admin call failed; the message carries the HTTP status and the broker's reason."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status of a refusal; None when the broker was not reached

    @property
    def refused(self) -> bool:
        """The broker answered and refused this request (4xx), other than for our credentials."""
        return self.status is not None and 400 <= self.status < 500 and self.status not in (401, 403)


class PulsarAdmin:
    """Calls the local broker (the charm shares the pod's network) with a superuser token."""

    def __init__(
        self, token: str, base_url: str = f"http://localhost:{BROKER_WEB_PORT}", context: ssl.SSLContext | None = None
    ) -> None:
        self.token = token
        self.base_url = base_url
        self.context = context  # verifies an HTTPS broker

    def _call(
        self, method: str, path: str, body: Any = None, ok_if_exists: bool = False, ok_if_missing: bool = False
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=self.context) as response:  # noqa: S310
                payload = response.read()
        except urllib.error.HTTPError as error:
            if (ok_if_exists and error.code == 409) or (ok_if_missing and error.code == 404):
                return None
            reason = error.read().decode(errors="replace").strip()
            try:
                reason = json.loads(reason).get("reason", reason)
            except (ValueError, AttributeError):
                pass
            raise AdminError(f"{method} {path}: HTTP {error.code}: {reason or error.reason}", error.code) from error
        except (urllib.error.URLError, OSError) as error:
            raise AdminError(f"{method} {path}: {error}") from error
        return json.loads(payload) if payload else None

    def ensure_tenant(self, tenant: str, cluster: str) -> None:
        self._call(
            "PUT",
            f"/admin/v2/tenants/{_quote(tenant)}",
            {"adminRoles": [], "allowedClusters": [cluster]},
            ok_if_exists=True,
        )

    def ensure_namespace(self, namespace: str) -> None:
        self._call("PUT", _namespace_path(namespace), ok_if_exists=True)

    def grant(self, namespace: str, role: str, actions: tuple[str, ...]) -> None:
        self._call("POST", f"{_namespace_path(namespace)}/permissions/{_quote(role)}", list(actions))

    def revoke(self, namespace: str, role: str) -> None:
        """Remove the role's permissions on the namespace (a namespace that is gone is fine)."""
        self._call("DELETE", f"{_namespace_path(namespace)}/permissions/{_quote(role)}", ok_if_missing=True)

    def revoke_on_topic(self, topic: str, role: str) -> None:
        """Remove the role's topic-level permissions; `topic` is `persistent://tenant/ns/name`."""
        domain, _, name = topic.partition("://")
        path = "/".join(_quote(part) for part in name.split("/"))
        self._call("DELETE", f"/admin/v2/{_quote(domain)}/{path}/permissions/{_quote(role)}", ok_if_missing=True)

    def tenants(self) -> list[str]:
        return self._call("GET", "/admin/v2/tenants") or []

    def tenant_info(self, tenant: str) -> dict[str, Any] | None:
        """`adminRoles` and `allowedClusters` of the tenant; None if it is gone."""
        return self._call("GET", f"/admin/v2/tenants/{_quote(tenant)}", ok_if_missing=True)

    def update_tenant(self, tenant: str, info: dict[str, Any]) -> None:
        self._call("POST", f"/admin/v2/tenants/{_quote(tenant)}", info)

    def namespaces(self, tenant: str) -> list[str]:
        """The tenant's namespaces, as `tenant/ns` (or `tenant/cluster/ns`); none if it is gone."""
        return self._call("GET", f"/admin/v2/namespaces/{_quote(tenant)}", ok_if_missing=True) or []

    def policies(self, namespace: str) -> dict[str, Any] | None:
        """The namespace's policies (`auth_policies` among them); None if it is gone."""
        return self._call("GET", _namespace_path(namespace), ok_if_missing=True)

    def ensure_topic(self, namespace: str, topic: str) -> None:
        self._call("PUT", _topic_path(namespace, topic), ok_if_exists=True)

    def topics(self, namespace: str) -> list[str]:
        """The namespace's persistent topics, partitions of partitioned ones included, as full names."""
        return self._call("GET", _topic_path(namespace), ok_if_missing=True) or []

    def partitioned_topics(self, namespace: str) -> list[str]:
        """The namespace's partitioned topics, as full names (`persistent://tenant/ns/name`)."""
        return self._call("GET", f"{_topic_path(namespace)}/partitioned", ok_if_missing=True) or []

    def partitions(self, namespace: str, topic: str) -> int:
        """The partition count of a partitioned topic; 0 for any other topic or none."""
        metadata = self._call("GET", f"{_topic_path(namespace, topic)}/partitions", ok_if_missing=True) or {}
        return int(metadata.get("partitions") or 0)

    def create_partitioned_topic(self, namespace: str, topic: str, partitions: int) -> None:
        """Create it (HTTP 409 when a topic of that name, partitioned or not, exists)."""
        self._call("PUT", f"{_topic_path(namespace, topic)}/partitions", partitions)

    def add_partitions(self, namespace: str, topic: str, partitions: int) -> None:
        """Raise a partitioned topic's count to `partitions` (the broker refuses a smaller one)."""
        self._call("POST", f"{_topic_path(namespace, topic)}/partitions", partitions)


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _topic_path(namespace: str, topic: str | None = None) -> str:
    """The v2 path of a persistent topic in `namespace`, or of the namespace's topics without one."""
    parts = [*namespace.split("/"), *([topic] if topic is not None else [])]
    return "/admin/v2/persistent/" + "/".join(_quote(part) for part in parts)


def _namespace_path(namespace: str) -> str:
    parts = "/".join(_quote(part) for part in namespace.split("/"))
    return f"/admin/namespaces/{parts}" if namespace.count("/") == 2 else f"/admin/v2/namespaces/{parts}"
