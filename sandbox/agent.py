"""The unit agent: runs inside a pod's network namespace and handles one event at a time.

The charm's own code handles each event through ops.testing, with its consistency checks,
but every Pebble call goes to the unit's real Pebble daemon. Like Juju, each event runs in a
fresh process: the agent imports ops and the charm once, then forks a child per event, so no
module state leaks from one hook into the next.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import pickle
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import ops
from ops import testing
from scenario import _runtime, mocking

from sandbox import scenario_compat, wire
from sandbox.wire import EventReply, EventRequest, EventSpec, Ping, Pong, Shutdown

JUJU_VERSION = "3.6.11"


def _load_charm_type(charm_dir: Path) -> type[ops.CharmBase]:
    # Juju's dispatch puts lib/ and src/ on the path and runs src/charm.py.
    sys.path[:0] = [str(charm_dir / "src"), str(charm_dir / "lib")]
    module = importlib.import_module("charm")
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, ops.CharmBase) and obj.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise RuntimeError(f"{charm_dir}/src/charm.py must define exactly one charm class, found {found}")
    return found[0]


def _use_real_pebble(sockets: dict[str, str]) -> None:
    """Hand the charm a real Pebble client for each container instead of ops.testing's fake."""

    def get_pebble(self: Any, socket_path: str) -> ops.pebble.Client:
        container = socket_path.split("/")[3]  # /charm/containers/<name>/pebble.socket
        return ops.pebble.Client(socket_path=sockets[container])

    # ops.testing has no public way to give a charm a real Pebble client.
    mocking._MockModelBackend.get_pebble = get_pebble  # type: ignore[method-assign]


def _name_the_departing_unit(departing_unit: str | None) -> None:
    """JUJU_DEPARTING_UNIT as Juju sets it: the departing unit's own name, whatever its app."""
    build_env = _runtime.Runtime._get_event_env

    def event_env(self: Any, state: Any, event: Any, charm_root: Path) -> dict[str, str]:
        env = build_env(self, state, event, charm_root)
        if departing_unit is not None and event.name.endswith("_relation_departed"):
            env["JUJU_DEPARTING_UNIT"] = departing_unit
        return env

    # ops.testing spells it `<remote app>/<id>`, wrong when the dying unit is this one (a unit
    # of the local app) on a regular relation, and takes id 0 for "unset": no public way around.
    _runtime.Runtime._get_event_env = event_env  # type: ignore[method-assign]


@dataclass
class SecretsEventReply(EventReply):
    """An EventReply that also names the secret revisions the charm removed.

    ops.testing keeps only their numbers (`Context.removed_secret_revisions`), not which
    secret they were of; the model needs both to drop them, with their expiry, as Juju does.
    """

    revisions_removed: tuple[tuple[str, int], ...] = ()


def _record_revision_removals() -> list[tuple[str, int]]:
    """From now on, each (secret id, revision) the charm removes is appended to the list returned."""
    removed: list[tuple[str, int]] = []
    secret_remove = mocking._MockModelBackend.secret_remove

    def recording_secret_remove(self: Any, id: str, *, revision: int | None = None) -> None:
        secret_remove(self, id, revision=revision)
        if revision is not None:
            removed.append((self._get_secret(id).id, revision))

    # ops.testing has no public hook on secret-remove; the agent wraps its backend's call.
    mocking._MockModelBackend.secret_remove = recording_secret_remove  # type: ignore[method-assign]
    return removed


def _build_event(ctx: testing.Context[Any], spec: EventSpec, state: testing.State) -> Any:
    kind = spec.kind
    on = ctx.on
    if kind in ("install", "start", "stop", "remove", "update_status", "config_changed",
                "upgrade_charm", "leader_elected"):  # fmt: skip
        return getattr(on, kind)()
    if kind == "action":
        return on.action(spec.action or "", params=spec.params)
    if kind.startswith("relation_"):
        assert spec.relation_id is not None
        relation = state.get_relation(spec.relation_id)
        if kind in ("relation_created", "relation_broken"):
            return getattr(on, kind)(relation)
        if kind == "relation_departed":
            departing = int(spec.departing_unit.split("/")[1]) if spec.departing_unit else None
            return on.relation_departed(relation, remote_unit=spec.remote_unit, departing_unit=departing)
        return getattr(on, kind)(relation, remote_unit=spec.remote_unit)
    if kind in ("storage_attached", "storage_detaching"):
        storage = next(s for s in state.storages if s.name == spec.storage and s.index == spec.storage_index)
        return getattr(on, kind)(storage)
    if kind.startswith("pebble_"):
        container = state.get_container(spec.container or "")
        if kind == "pebble_ready":
            return on.pebble_ready(container)
        if kind == "pebble_custom_notice":
            notice = next(n for n in container.notices if n.id == spec.notice_id)
            return on.pebble_custom_notice(container, notice)
        info = next(c for c in container.check_infos if c.name == spec.check)
        return getattr(on, kind)(container, info)
    if kind in ("secret_changed", "secret_remove", "secret_rotate", "secret_expired"):
        secret = state.get_secret(id=spec.secret_id)
        if kind in ("secret_remove", "secret_expired"):
            return getattr(on, kind)(secret, revision=spec.secret_revision)
        return getattr(on, kind)(secret)
    raise ValueError(f"unknown event kind {kind}")


def handle_event(charm_type: type[ops.CharmBase], request: EventRequest) -> EventReply:
    """Run one event in this (forked) process and describe what the charm did."""
    _use_real_pebble(request.pebble_sockets)
    _name_the_departing_unit(request.event.departing_unit)
    scenario_compat.deny_hidden_secrets(request.hidden_secrets)
    scenario_compat.serve_resources(request.resource_dir)
    secrets_read = scenario_compat.record_secret_reads()
    revisions_removed = _record_revision_removals()
    ctx = testing.Context(
        charm_type,
        app_name=request.app,
        unit_id=request.unit_id,
        app_trusted=request.trusted,
        juju_version=JUJU_VERSION,
    )
    reply = SecretsEventReply()
    started = time.perf_counter()
    try:
        reply.state = ctx.run(_build_event(ctx, request.event, request.state), request.state)
    except testing.ActionFailed as failed:
        reply.action_failure = failed.message
        reply.state = cast(testing.State, failed.state)  # ops.testing re-exports Scenario's State
    except Exception as error:  # noqa: BLE001 - whatever the charm raised fails the hook, as on Juju
        cause = error.__cause__ or error
        reply.error = "".join(traceback.format_exception(cause)).strip()
        reply.error_line = f"{type(cause).__name__}: {cause}"
    reply.charm_seconds = time.perf_counter() - started
    reply.secrets_read = tuple(dict.fromkeys(secrets_read))
    reply.revisions_removed = tuple(dict.fromkeys(revisions_removed))
    reply.action_results = dict(ctx.action_results or {})
    reply.action_logs = list(ctx.action_logs)
    reply.juju_log = [(line.level, line.message) for line in ctx.juju_log]
    return reply


def _run_forked(charm_type: type[ops.CharmBase], request: EventRequest) -> EventReply:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: run the event, write the reply, exit without cleanup handlers
        os.close(read_end)
        code = 0
        try:
            payload = pickle.dumps(handle_event(charm_type, request))
        except BaseException:  # noqa: BLE001 - the child must always answer before it exits
            payload = pickle.dumps(EventReply.failure(traceback.format_exc(), "agent failure"))
            code = 1
        with os.fdopen(write_end, "wb") as out:
            out.write(payload)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        return EventReply.failure(f"event process died (status {status})", "event process died")
    return pickle.loads(payload)  # noqa: S301 - written by our own child above


def serve(charm_dir: Path, socket_path: Path) -> None:
    charm_type = _load_charm_type(charm_dir)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = socket_path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    server.bind(str(tmp))
    server.listen(4)
    tmp.rename(socket_path)  # appears only once it accepts connections
    while True:
        conn, _ = server.accept()
        with conn:
            try:
                request = wire.receive(conn)
            except ConnectionError:
                continue
            if isinstance(request, Shutdown):
                wire.send(conn, Pong(os.getpid()))
                return
            if isinstance(request, Ping):
                wire.send(conn, Pong(os.getpid()))
                continue
            if isinstance(request, EventRequest):
                wire.send(conn, _run_forked(charm_type, request))


def main() -> None:
    parser = argparse.ArgumentParser(description="sandbox unit agent")
    parser.add_argument("--unit", required=True)
    parser.add_argument("--charm-dir", required=True, type=Path)
    parser.add_argument("--socket", required=True, type=Path)
    args = parser.parse_args()
    scenario_compat.check_union_param_types()
    scenario_compat.accept_juju_secret_uris()
    print(f"agent for {args.unit} serving {args.charm_dir}", flush=True)
    serve(args.charm_dir, args.socket)


if __name__ == "__main__":
    # `python -m sandbox.agent` runs this file as __main__: run it as sandbox.agent instead, so
    # that the replies it pickles name their class by a module the model can import.
    from sandbox import agent

    agent.main()
