"""A minimal Kubernetes API server for charm code: the application's StatefulSet and its pods.

Served in namespace = model name, as on Juju:

- `GET, PATCH /apis/apps/v1/namespaces/{ns}/statefulsets/{app}`: only the rolling-update
  partition may change (strategic merge, merge and JSON patches);
- `GET /api/v1/namespaces/{ns}/pods/{app}-{n}`;
- anything else is NotFound, as a Kubernetes `Status`.

Each application's pods authenticate as its service account with a bearer token of their
own (401 without a known token); an application deployed without trust has no rights on
these (403), a trusted one has cluster-wide rights (`juju trust --scope=cluster`).

The server is a thread of the process that drives the model, started with the first hook it
runs, listening on the cluster bridge's address, where every pod reaches it. Each pod gets a
kubeconfig file (mode 0600) with the server and its application's token; the unit agent's
KUBECONFIG names it, so lightkube's `Client()` finds it as it finds a real cluster.
"""

from __future__ import annotations

import ctypes
import hmac
import json
import os
import re
import secrets
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from sandbox import pods, statefulset
from sandbox.errors import SandboxError
from sandbox.state import ModelState, UnitState
from sandbox.statefulset import ApiStatusError

_STATEFULSET = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/statefulsets/([^/]+)$")
_POD = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)$")
_CLONE_NEWNET = 0x40000000
MAX_BODY = 1 << 20


def new_token() -> str:
    return secrets.token_urlsafe(32)


class KubeApi:
    """The API's requests against the model's state, apart from HTTP (the unit tests drive this)."""

    def __init__(self, model: ModelState, lock: threading.RLock, pod_ready: Callable[[UnitState], bool]) -> None:
        self.model = model
        self.lock = lock
        self.pod_ready = pod_ready

    def handle(
        self, method: str, target: str, authorization: str | None, content_type: str, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """One request: (HTTP status, JSON body)."""
        try:
            return 200, self._handle(method, target, authorization, content_type, body)
        except ApiStatusError as error:
            return error.code, error.body()

    def authenticate(self, authorization: str | None) -> str:
        """The application whose token the request carries."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            with self.lock:
                for app in self.model.apps.values():
                    if app.api_token and hmac.compare_digest(app.api_token.encode(), token.encode()):
                        return app.name
        raise ApiStatusError(401, "Unauthorized", "Unauthorized")

    def _handle(
        self, method: str, target: str, authorization: str | None, content_type: str, body: bytes
    ) -> dict[str, Any]:
        caller = self.authenticate(authorization)
        url = urlsplit(target)
        query = parse_qs(url.query)
        if found := _STATEFULSET.match(url.path):
            namespace, name = found.groups()
            verb = {"GET": "get", "PATCH": "patch"}.get(method)
            self._authorize(caller, verb or method.lower(), "statefulsets", "apps", name, namespace)
            if verb is None:
                raise _not_allowed(method)
            if verb == "get":
                return self._statefulset(namespace, name)
            dry_run = "All" in query.get("dryRun", [])
            return self._patch_statefulset(namespace, name, content_type, body, dry_run)
        if found := _POD.match(url.path):
            namespace, name = found.groups()
            self._authorize(caller, "get" if method == "GET" else method.lower(), "pods", "", name, namespace)
            if method != "GET":
                raise _not_allowed(method)
            return self._pod(namespace, name)
        raise ApiStatusError(404, "NotFound", "the server could not find the requested resource", {})

    def _authorize(self, caller: str, verb: str, resource: str, group: str, name: str, namespace: str) -> None:
        with self.lock:
            trusted = self.model.apps[caller].trusted if caller in self.model.apps else False
        statefulset.authorize(self.model.name, caller, trusted, verb, resource, group, name, namespace)

    def _ready(self, units: list[UnitState]) -> dict[str, bool]:
        # Pebble is asked without the model lock, as the scheduler's watcher asks it.
        return {u.name: self.pod_ready(u) for u in units}

    def _app_units(self, namespace: str, name: str) -> list[UnitState]:
        with self.lock:
            app = self.model.apps.get(name) if namespace == self.model.name else None
            if app is None:
                raise _not_found("statefulsets", "apps", name)
            return self.model.app_units(name)

    def _statefulset(self, namespace: str, name: str) -> dict[str, Any]:
        ready = self._ready(self._app_units(namespace, name))
        with self.lock:
            if name not in self.model.apps:
                raise _not_found("statefulsets", "apps", name)
            return statefulset.statefulset_doc(self.model, self.model.apps[name], ready)

    def _patch_statefulset(
        self, namespace: str, name: str, content_type: str, body: bytes, dry_run: bool
    ) -> dict[str, Any]:
        ready = self._ready(self._app_units(namespace, name))
        try:
            patch = json.loads(body or b"null")
        except ValueError:
            raise ApiStatusError(400, "BadRequest", "the request body is not JSON") from None
        with self.lock:
            app = self.model.apps.get(name)
            if app is None:
                raise _not_found("statefulsets", "apps", name)
            partition = statefulset.patched_partition(
                statefulset.statefulset_doc(self.model, app, ready), content_type, patch
            )
            if dry_run:
                doc = statefulset.statefulset_doc(self.model, app, ready)
                doc["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = partition
                return doc
            statefulset.set_partition(app, partition)
            return statefulset.statefulset_doc(self.model, app, ready)

    def _pod(self, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            unit = next(
                (u for app in self.model.apps for u in self.model.app_units(app) if u.pod.hostname == name), None
            )
        if unit is None or namespace != self.model.name:
            raise _not_found("pods", "", name)
        ready = self.pod_ready(unit)
        with self.lock:
            return statefulset.pod_doc(self.model, unit, ready)


def _not_found(resource: str, group: str, name: str) -> ApiStatusError:
    qualified = f"{resource}.{group}" if group else resource
    return ApiStatusError(
        404, "NotFound", f'{qualified} "{name}" not found', {"name": name, "group": group, "kind": resource}
    )


def _not_allowed(method: str) -> ApiStatusError:
    message = f"the server does not allow this method on the requested resource ({method})"
    return ApiStatusError(405, "MethodNotAllowed", message)


def _setns(fd: int) -> None:
    """Move the calling thread into a network namespace (Python 3.11 has no os.setns)."""
    setns = getattr(os, "setns", None)
    if setns is not None:
        setns(fd, _CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def listen_in_netns(netns: str, address: str) -> socket.socket:
    """A listening TCP socket on `address` inside network namespace `netns` (any free port).

    A socket belongs to the namespace it was made in; only a thread of its own enters the
    namespace (setns moves just the calling thread), so the rest of the process stays put.
    """
    made: dict[str, Any] = {}

    def make() -> None:
        try:
            with open(f"/run/netns/{netns}") as handle:
                _setns(handle.fileno())
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, 0))
            sock.listen(32)
            made["socket"] = sock
        except OSError as error:
            made["error"] = error

    thread = threading.Thread(target=make, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if "error" in made:
        raise SandboxError(f"cannot listen in network namespace {netns}: {made['error']}")
    return made["socket"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            code, body = 413, ApiStatusError(413, "RequestEntityTooLarge", "request body too large").body()
        else:
            data = self.rfile.read(length) if length else b""
            assert isinstance(self.server, _Server)
            code, body = self.server.api.handle(
                self.command,
                self.path,
                self.headers.get("Authorization"),
                self.headers.get("Content-Type") or "",
                data,
            )
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815 - http.server's naming

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing is logged: a request line is of no use here, and headers carry tokens."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket, api: KubeApi) -> None:
        super().__init__(sock.getsockname(), _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_name, self.server_port = sock.getsockname()[:2]
        self.api = api


class ApiServer:
    """The model's API server: started on first use, stopped with the model's scheduler."""

    def __init__(self, model: ModelState, lock: threading.RLock, pod_ready: Callable[[UnitState], bool]) -> None:
        self.model = model
        self.lock = lock
        self.api = KubeApi(model, lock, pod_ready)
        self._server: _Server | None = None
        self._start_lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._server is not None

    def url(self) -> str:
        with self._start_lock:
            if self._server is None:
                sock = listen_in_netns(pods.cluster_ns(self.model.name), pods.bridge_address())
                self._server = _Server(sock, self.api)
                thread = threading.Thread(
                    target=self._server.serve_forever, name=f"kubeapi-{self.model.name}", daemon=True
                )
                thread.start()
            host, port = self._server.server_name, self._server.server_port
        return f"http://{host}:{port}"

    def stop(self) -> None:
        with self._start_lock:
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()
                self._server = None

    def write_kubeconfig(self, unit: UnitState) -> None:
        """The pod's kubeconfig: this server and its application's token (written only if it changed)."""
        with self.lock:
            app = self.model.apps[unit.app]
            if not app.api_token:
                app.api_token = new_token()
            token = app.api_token
        content = kubeconfig(self.url(), self.model.name, unit.app, token)
        write_private(unit.pod.kubeconfig, content)


def kubeconfig(server: str, namespace: str, app: str, token: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {"server": server}}],
            "users": [{"name": app, "user": {"token": token}}],
            "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": app, "namespace": namespace}}],
            "current-context": "sandbox",
        },
        sort_keys=False,
    )


def write_private(path: Path, content: str) -> None:
    """Write a file only its owner reads (mode 0600), replacing it whole; unchanged content is left alone."""
    if path.is_file() and path.read_text() == content:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(content)
    tmp.replace(path)
