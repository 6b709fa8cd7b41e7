"""What the model and its unit agents say to each other, and how it travels.

Messages are the dataclasses below, framed as length-prefixed pickles on a Unix socket.
Both ends are this project's own code in the same Python environment on one machine, so
pickle is fit: it carries ops.testing State objects whole.
"""

from __future__ import annotations

import pickle
import socket
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ops import testing

_HEADER = struct.Struct("!Q")


@dataclass(frozen=True)
class EventSpec:
    """One Juju event for one unit: its kind (ops' event name, `config_changed`) and its subject.

    Only the fields of the event's own kind are set: a relation event names its relation and
    remote unit, a workload event its container, and so on.
    """

    kind: str
    relation_id: int | None = None
    remote_unit: int | None = None  # number of the remote unit (of the other application, or a peer)
    departing_unit: str | None = None  # relation-departed: the unit that leaves, by name
    storage: str | None = None
    storage_index: int = 0
    container: str | None = None
    check: str | None = None
    notice_id: str | None = None
    secret_id: str | None = None
    secret_revision: int | None = None
    action: str | None = None
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    action_id: int | None = None

    @property
    def hook_name(self) -> str:
        """How Juju names the hook in `juju status` messages."""
        return self.kind.replace("_", "-")


@dataclass(frozen=True)
class EventRequest:
    """Model -> agent: run this event against this State, with the unit's real Pebble sockets."""

    event: EventSpec
    state: testing.State
    pebble_sockets: dict[str, str]  # container name -> socket path
    app: str
    unit_id: int
    trusted: bool
    # Secrets of the model this unit may not read: reading one is "permission denied", as on
    # Juju, not "not found". (Plain defaults, so a request pickled without them still loads.)
    hidden_secrets: frozenset[str] = frozenset()
    resource_dir: str | None = None  # the unit's own copies of file resources (`resource-get`)


@dataclass
class EventReply:
    """Agent -> model: the State the charm left, or why the hook failed, and what it logged."""

    state: testing.State | None = None
    error: str | None = None  # the traceback, when the hook failed
    error_line: str = ""  # one line for `juju status`
    action_failure: str | None = None  # event.fail() message of an action
    action_results: dict[str, Any] = field(default_factory=dict)
    action_logs: list[str] = field(default_factory=list)
    juju_log: list[tuple[str, str]] = field(default_factory=list)  # (level, message)
    charm_seconds: float = 0.0
    secrets_read: tuple[str, ...] = ()  # ids of secrets the charm got content of (it now tracks them)

    @classmethod
    def failure(cls, error: str, line: str) -> EventReply:
        return cls(error=error, error_line=line)


@dataclass(frozen=True)
class Ping:
    """Model -> agent: are you there?"""


@dataclass(frozen=True)
class Pong:
    pid: int


@dataclass(frozen=True)
class Shutdown:
    """Model -> agent: exit."""


def send(sock: socket.socket, message: object) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def _read_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        chunks += chunk
    return bytes(chunks)


def receive(sock: socket.socket) -> object:
    (size,) = _HEADER.unpack(_read_exact(sock, _HEADER.size))
    return pickle.loads(_read_exact(sock, size))  # noqa: S301 - our own agent, see module doc
