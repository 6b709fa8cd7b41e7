"""A local stand-in for a Juju model on Kubernetes.

Each unit is a pod (network namespace, hostname, FQDN, private image tree, storage that
survives a restart) with a real Pebble; the charm's code handles every event through
ops.testing with the unit's real Pebble client.
"""

from sandbox.errors import HookFailedError, SandboxError, WaitTimeoutError
from sandbox.model import ActionResult, Model

__all__ = ["ActionResult", "HookFailedError", "Model", "SandboxError", "WaitTimeoutError"]
