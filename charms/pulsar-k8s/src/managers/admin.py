"""The broker's admin REST API, as the charm's superuser: tenants, namespaces, permissions, topics.

Hooks stay fast: one HTTP call per change, instead of a JVM `pulsar-admin` per call.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from literals import BROKER_WEB_PORT

TIMEOUT = 10.0


class AdminError(Exception):
    """An admin call failed; the message carries the HTTP status and the broker's reason."""


class PulsarAdmin:
    """Calls the local broker (the charm shares the pod's network) with a superuser token."""

    def __init__(self, token: str, base_url: str = f"http://localhost:{BROKER_WEB_PORT}") -> None:
        self.token = token
        self.base_url = base_url

    def _call(self, method: str, path: str, body: Any = None, ok_if_exists: bool = False) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - our broker's URL
                payload = response.read()
        except urllib.error.HTTPError as error:
            if ok_if_exists and error.code == 409:
                return None
            reason = error.read().decode(errors="replace").strip()
            try:
                reason = json.loads(reason).get("reason", reason)
            except (ValueError, AttributeError):
                pass
            raise AdminError(f"{method} {path}: HTTP {error.code}: {reason or error.reason}") from error
        except (urllib.error.URLError, OSError) as error:
            raise AdminError(f"{method} {path}: {error}") from error
        return json.loads(payload) if payload else None

    def ensure_tenant(self, tenant: str, cluster: str) -> None:
        self._call(
            "PUT", f"/admin/v2/tenants/{tenant}", {"adminRoles": [], "allowedClusters": [cluster]}, ok_if_exists=True
        )

    def ensure_namespace(self, namespace: str) -> None:
        self._call("PUT", f"/admin/v2/namespaces/{namespace}", ok_if_exists=True)

    def grant(self, namespace: str, role: str, actions: tuple[str, ...]) -> None:
        self._call("POST", f"/admin/v2/namespaces/{namespace}/permissions/{role}", list(actions))

    def permissions(self, namespace: str) -> dict[str, list[str]]:
        return self._call("GET", f"/admin/v2/namespaces/{namespace}/permissions") or {}

    def ensure_topic(self, namespace: str, topic: str) -> None:
        self._call("PUT", f"/admin/v2/persistent/{namespace}/{topic}", ok_if_exists=True)
