"""Framing between the model and its unit agents: length-prefixed pickles on a Unix socket.

Both ends are this project's own code in the same Python environment on one machine, so
pickle is fit: it carries ops.testing State objects whole.
"""

from __future__ import annotations

import pickle
import socket
import struct
from typing import Any

_HEADER = struct.Struct("!Q")


def send(sock: socket.socket, message: Any) -> None:
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


def receive(sock: socket.socket) -> Any:
    (size,) = _HEADER.unpack(_read_exact(sock, _HEADER.size))
    return pickle.loads(_read_exact(sock, size))  # noqa: S301 - our own agent, see module doc
