"""Juju storage as a pod gets it on Kubernetes: a volume of its own size that outlives the pod.

Each storage of a unit is an ext4 file system in a sparse image file under the pod's
directory, attached to a loop device while the unit exists and mounted only inside the
pod's containers. Mounted on this machine instead, it would be copied into the private
mount namespace of every later `ip netns exec` (other pods' agents and containers, of any
model), which would keep the file system in use after its unit is gone.

A volume's size is the charm's `minimum-size` for the storage, else Juju's default (1 GiB):
a workload that fills it gets "No space left on device" from its own volume, never from
this machine's disk. The image is sparse, so an empty volume costs the disk next to nothing.

`fill` and `free` run `sandbox.volume_filler` inside a private mount namespace where the
volume is mounted.
"""

from __future__ import annotations

import math
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sandbox.errors import SandboxError
from sandbox.paths import REPO_ROOT
from sandbox.procs import run

MIB = 1 << 20
DEFAULT_SIZE = 1024 * MIB  # what Juju gives a storage whose charm declares no minimum-size
DETACH_TIMEOUT = 10.0  # seconds for the last mount of a detached volume to go

# Juju's sizes (utils.ParseSize): a number of MiB, or with a suffix M, G, T, P, E, Z or Y
# (each also as MB or MiB, all powers of 1024).
_SIZE = re.compile(r"^(?P<number>\d+(?:\.\d*)?|\.\d+)(?P<suffix>[MGTPEZY](?:B|iB)?)?$")
_SUFFIXES = "MGTPEZY"


def parse_size(text: str) -> int:
    """A size as Juju reads `minimum-size` and `--storage`, in bytes: `1G`, `512M`, `100` (MiB)."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise SandboxError(f'invalid size "{text}": a number of MiB, or with a suffix M, G, T, P, E, Z or Y')
    suffix = match.group("suffix") or "M"
    mebibytes = math.ceil(float(match.group("number")) * 1024 ** _SUFFIXES.index(suffix[0]))
    return mebibytes * MIB


def declared_size(declaration: dict[str, Any] | None) -> int:
    """The size of a charm's storage: its `minimum-size`, else Juju's default."""
    minimum = (declaration or {}).get("minimum-size")
    return parse_size(str(minimum)) if minimum is not None else DEFAULT_SIZE


def loop_devices() -> dict[str, Path]:
    """Every attached loop device of this machine, and the file behind it."""
    found: dict[str, Path] = {}
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            text = backing.read_text().rstrip("\n")
        except OSError:  # detached meanwhile
            continue
        found[f"/dev/{backing.parent.parent.name}"] = Path(text.removesuffix(" (deleted)"))
    return found


def devices_of(image: Path) -> list[str]:
    """The loop devices attached to a volume's image (one, or none while its unit is gone)."""
    target = image.resolve()
    return sorted(device for device, backing in loop_devices().items() if backing == target)


def create(image: Path, size: int) -> None:
    """A new, empty volume: a sparse file of `size` bytes, formatted ext4.

    No blocks are reserved for root (`-m 0`): every user of the volume may fill it, as
    fill_storage's `leave_bytes` counts. Inode tables and journal are initialised lazily so
    that the image stays sparse. A half-made image never takes the image's name.
    """
    image.parent.mkdir(parents=True, exist_ok=True)
    draft = image.with_name(image.name + ".new")
    with open(draft, "wb") as sparse:
        sparse.truncate(size)
    run(
        ["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1", str(draft)],
        f"formatting the volume {image.name}",
    )
    draft.rename(image)


def attach(image: Path, size: int) -> str:
    """The loop device of a volume; the volume is made when it is first needed."""
    attached = devices_of(image)
    if attached:
        return attached[0]
    if not image.exists():
        create(image, size)
    return run(["losetup", "--find", "--show", str(image)], f"attaching the volume {image}").strip()


def detach(image: Path, timeout: float | None = None) -> None:
    """Detach a volume's loop device once every mount of it is gone (its pod's processes are).

    The kernel detaches a device still mounted somewhere only when that last mount goes;
    a device still attached after `timeout` (DETACH_TIMEOUT) is an error that names it.
    """
    timeout = DETACH_TIMEOUT if timeout is None else timeout
    for device in devices_of(image):
        run(["losetup", "--detach", device], f"detaching {device} from {image}")
    deadline = time.monotonic() + timeout
    while remaining := devices_of(image):
        if time.monotonic() > deadline:
            raise SandboxError(
                f"{', '.join(remaining)} still holds {image} after {timeout:.0f}s: "
                "a process still has the volume mounted"
            )
        time.sleep(0.05)


def host_mounts_under(root: Path) -> list[Path]:
    """Mount points of this mount namespace at or below `root`, deepest first."""
    prefix = root.resolve()
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        escaped = line.split()[4]  # spaces and the like are octal escapes, as \040
        mountpoint = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), escaped))
        if mountpoint.is_relative_to(prefix):
            found.append(mountpoint)
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def release_under(root: Path) -> list[str]:
    """Unmount and detach every volume of a model (or pod) directory before it is removed.

    Deleting the directory through a mounted volume would delete the volume's files and
    leave the mount. Returns what could not be released, one line each.
    """
    problems = []
    for mountpoint in host_mounts_under(root):
        try:
            run(["umount", str(mountpoint)], f"unmounting {mountpoint}")
        except SandboxError as error:
            problems.append(str(error))
    prefix = root.resolve()
    for image in sorted({backing for backing in loop_devices().values() if backing.is_relative_to(prefix)}):
        try:
            detach(image)
        except SandboxError as error:
            problems.append(str(error))
    return problems


def _in_volume(device: str, command: list[str], what: str) -> str:
    """Run `python -m sandbox.volume_filler COMMAND...` with the volume mounted at its first argument.

    The mount lives in a private mount namespace that ends with the command; mounting a
    device that the pod's containers have mounted shares their file system, not a copy.
    """
    with tempfile.TemporaryDirectory(prefix="sandbox-volume-") as mountpoint:
        helper = [sys.executable, "-m", "sandbox.volume_filler", command[0], mountpoint, *command[1:]]
        script = f"mount -t ext4 {shlex.quote(device)} {shlex.quote(mountpoint)} && exec {shlex.join(helper)}"
        argv = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script]
        return run(argv, what, cwd=REPO_ROOT)


def fill(device: str, leave_bytes: int) -> int:
    """Fill a volume until `leave_bytes` are free (to the block); return the bytes left free."""
    return int(_in_volume(device, ["fill", str(leave_bytes)], f"filling the volume on {device}"))


def free(device: str) -> bool:
    """Delete what `fill` wrote; return whether there was anything to delete."""
    return _in_volume(device, ["free"], f"freeing the volume on {device}").strip() == "freed"
