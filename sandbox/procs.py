"""Processes the sandbox started, tracked by pid *and* start time so a reused pid is never hit."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import SandboxError


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: the process start time in clock ticks since boot."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie is as good as gone
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcessRef:
    """A process the sandbox started."""

    pid: int
    start_time: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        start = _start_time(pid)
        if start is None:
            raise SandboxError(f"process {pid} exited right after it was started")
        return cls(pid, start)

    def alive(self) -> bool:
        return _start_time(self.pid) == self.start_time

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                return False
            _reap()
            time.sleep(0.05)
        return True

    def terminate(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds, as Kubernetes stops a container."""
        self.signal(signal.SIGTERM)
        if not self.wait_gone(grace):
            self.signal(signal.SIGKILL)
            self.wait_gone(10)

    def children(self) -> list[int]:
        pids: list[int] = []
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
        return pids


@dataclass(frozen=True)
class ProcessInfo:
    """What `ps` would say about a process: its pid, real user and group, command line."""

    pid: int
    uid: int
    gid: int
    argv: list[str]


def process_info(pid: int) -> ProcessInfo | None:
    """The process's ids and command line, or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    ids = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith(("Uid:", "Gid:"))}
    argv = [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]
    return ProcessInfo(pid, int(ids["Uid"]), int(ids["Gid"]), argv)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` in the process tree, found through each one's parent."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return sorted(found)


def _reap() -> None:
    """Collect exited children of this process so they do not linger as zombies."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def spawn(argv: list[str], log: Path, env: dict[str, str], cwd: Path | None = None) -> ProcessRef:
    """Start a long-running process detached from this one, its output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    return ProcessRef.of(proc.pid)


def run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    """Run a short command; fail with its stderr when it fails."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise SandboxError(f"{what} failed ({' '.join(argv)}): {detail[-1] if detail else result.returncode}")
    return result.stdout
