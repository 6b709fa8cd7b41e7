"""Pebble helpers shared by the Pulsar charms.

Every charm of this project runs a container built from the Apache Pulsar image. This
library gives them one way to run one-off commands (the exit code is always checked and
stderr always surfaced) and to read what the image carries.

Owned by pulsar-k8s; the other charms carry identical copies.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

import ops

LIBID = "7ef0956eb6164d3595ea14a6cdf1e1a8"
LIBAPI = 0
LIBPATCH = 5

PULSAR_HOME = "/pulsar"
_VERSION_JAR = re.compile(r"org\.apache\.pulsar-pulsar-broker-common-(?P<version>[0-9][^/]*)\.jar$")
_SIZE = re.compile(r"^[1-9][0-9]*[mg]$")


class StatusCatalog(Enum):
    """Base of a charm's `Status` enum: members are (status class, message template) pairs.

    Calling a member with the template's fields gives the ops status to set, so every
    message a charm can show is written once, in its literals.
    """

    def __call__(self, **fields: Any) -> ops.StatusBase:
        kind, template = self.value
        return kind(template.format(**fields))


class ImageProblem(Enum):
    """Why a container cannot run Pulsar yet."""

    NO_PEBBLE = "no-pebble"
    NO_PULSAR = "no-pulsar"


class InvalidConfigError(Exception):
    """A config option has a value the charm cannot use; the message names the option."""

    def __init__(self, option: str, reason: str) -> None:
        self.option = option
        super().__init__(f"invalid config {option}: {reason}")


def check_size(option: str, value: object) -> str:
    """A JVM memory size such as 512m or 2g; raise InvalidConfigError naming the option."""
    if not _SIZE.match(str(value)):
        raise InvalidConfigError(option, f"{value!r} (a size such as 512m or 2g)")
    return str(value)


def pod_fqdn(unit_name: str, model_name: str) -> str:
    """The unit's stable DNS name on Kubernetes: <app>-<n>.<app>-endpoints.<model>.svc.cluster.local."""
    app, number = unit_name.rsplit("/", 1)
    return f"{app}-{number}.{app}-endpoints.{model_name}.svc.cluster.local"


def jvm_environment(heap: str, direct_memory: str | None = None) -> dict[str, str]:
    """Environment for a Pulsar JVM service (bin/pulsar reads these through pulsar_env.sh).

    G1 instead of the image's default ZGC with pre-touched heaps: small heaps start faster
    and their memory use is what it looks like.
    """
    memory = f"-Xms{heap} -Xmx{heap}"
    if direct_memory:
        memory += f" -XX:MaxDirectMemorySize={direct_memory}"
    return {
        "PULSAR_MEM": memory,
        "PULSAR_GC": "-XX:+UseG1GC -XX:+PerfDisableSharedMem",
        "PULSAR_LOG_DIR": f"{PULSAR_HOME}/logs",
        # Log to stdout, so that Pebble keeps the logs and `pebble logs` shows them.
        "PULSAR_LOG_APPENDER": "Console",
    }


def readiness_check(probe: dict[str, object]) -> ops.pebble.CheckDict:
    """A `ready` Pebble check that fails on its first probe while a JVM starts.

    Pebble counts a new check as up until it fails, and Juju only tells the charm about
    changes (check-failed, then check-recovered). A one-second period makes the first probe
    land before any Pulsar JVM listens, so each start is seen as failed then recovered:
    the charm hears the moment the service serves instead of waiting for update-status.
    A probe is a TCP connect or a GET of a static page; once a second costs nothing.
    """
    check: dict[str, object] = {"override": "replace", "level": "ready", "period": "1s", "threshold": 1}
    check.update(probe)
    return check  # type: ignore[return-value]


class WorkloadCommandError(Exception):
    """A command run in the workload container failed; the message carries its stderr."""

    def __init__(self, argv: list[str], exit_code: int | None, output: str) -> None:
        self.argv = argv
        self.exit_code = exit_code
        self.output = output.strip()
        last = self.output.splitlines()[-1] if self.output else "no output"
        status = f"exited {exit_code}" if exit_code is not None else "did not finish"
        super().__init__(f"{' '.join(argv[:2])} {status}: {last}")


class PebbleWorkload:
    """A workload container of a Pulsar image, reached through Pebble."""

    def __init__(self, container: ops.Container) -> None:
        self.container = container

    def can_connect(self) -> bool:
        return self.container.can_connect()

    def check_image(self, unit: ops.Unit) -> ImageProblem | None:
        """None once the container is reachable and carries Pulsar (its version set on the unit)."""
        if not self.can_connect():
            return ImageProblem.NO_PEBBLE
        version = self.pulsar_version()
        if version is None:
            return ImageProblem.NO_PULSAR
        unit.set_workload_version(version)
        return None

    def run(
        self,
        argv: list[str],
        *,
        timeout: float = 60.0,
        environment: dict[str, str] | None = None,
        working_dir: str | None = None,
    ) -> str:
        """Run a one-off command to completion; return stdout or raise WorkloadCommandError."""
        try:
            process = self.container.exec(argv, timeout=timeout, environment=environment, working_dir=working_dir)
            stdout, _ = process.wait_output()
        except ops.pebble.ExecError as error:
            output = error.stderr or error.stdout or ""
            raise WorkloadCommandError(argv, error.exit_code, str(output)) from error
        except ops.pebble.ChangeError as error:  # timed out, or could not start
            raise WorkloadCommandError(argv, None, error.err) from error
        except ops.pebble.APIError as error:  # e.g. the executable does not exist
            raise WorkloadCommandError(argv, None, error.message) from error
        return stdout

    def apply_layer(self, name: str, layer: ops.pebble.LayerDict) -> bool:
        """Add the layer and replan, only if it changes the plan; return whether it did.

        Pebble restarts on replan exactly the services whose definition changed.
        """
        wanted = ops.pebble.Layer(layer).to_dict()
        plan = self.container.get_plan().to_dict()
        if all(
            plan.get(kind, {}).get(key) == value
            for kind in ("services", "checks")
            for key, value in wanted.get(kind, {}).items()
        ):
            return False
        self.container.add_layer(name, layer, combine=True)
        self.container.replan()
        return True

    def write(self, path: str, content: str, permissions: int = 0o644) -> bool:
        """Push `content` to `path` if it differs from what is there; return whether it changed."""
        try:
            if self.container.pull(path).read() == content:
                return False
        except ops.pebble.PathError:
            pass
        self.container.push(path, content, permissions=permissions, make_dirs=True)
        return True

    def pulsar_version(self) -> str | None:
        """The Pulsar version of the image, read from its library jars (no JVM started)."""
        try:
            files = self.container.list_files(
                f"{PULSAR_HOME}/lib", pattern="org.apache.pulsar-pulsar-broker-common-*.jar"
            )
        except ops.pebble.APIError:
            return None
        for info in files:
            match = _VERSION_JAR.search(info.path)
            if match:
                return match.group("version")
        return None
