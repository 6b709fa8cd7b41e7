"""Errors the sandbox reports to its user as one line, never as a traceback."""


class SandboxError(Exception):
    """A user-facing error: bad input or a state the sandbox cannot act on."""


class HookFailedError(SandboxError):
    """A charm's hook raised; the unit is in error, as on Juju."""


class WaitTimeoutError(SandboxError):
    """wait-for-idle gave up; the message names the stuck units and why."""
