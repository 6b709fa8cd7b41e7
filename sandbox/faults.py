"""Faults a user causes in a running model, as with kubectl or on a node: what they accept.

The verbs are `Model.signal_service`, `cut_network` and `fill_storage` (with `restore_network`,
`free_storage`, and a context manager for each); pods.py and volumes.py do the work.
"""

from __future__ import annotations

from signal import Signals

from sandbox.errors import SandboxError

# What a user sends a workload with `kubectl exec ... kill`: end it, ask it to end, freeze it, thaw it.
FAULT_SIGNALS = (Signals.SIGKILL, Signals.SIGTERM, Signals.SIGSTOP, Signals.SIGCONT)


def signal_name(signal: str | int) -> str:
    """The name Pebble takes (`SIGKILL`) of a signal given as `kill` takes one: SIGKILL, KILL, kill, 9."""
    text = str(signal.name if isinstance(signal, Signals) else signal).strip().upper()
    name = text if text.startswith("SIG") else f"SIG{text}"
    if text.isdigit():
        name = next((s.name for s in FAULT_SIGNALS if s.value == int(text)), text)
    if name not in {s.name for s in FAULT_SIGNALS}:
        allowed = ", ".join(s.name for s in FAULT_SIGNALS)
        raise SandboxError(f'signal "{signal}" is not one the sandbox sends: use {allowed}')
    return name
