"""Fill or free a mounted volume: `python -m sandbox.volume_filler fill|free MOUNTPOINT ...`.

`sandbox.volumes` runs it inside a private mount namespace where the volume is mounted; it
prints the bytes left free (fill) or whether it freed anything (free).
"""

from __future__ import annotations

import errno
import math
import os
import sys
from pathlib import Path

from sandbox.errors import SandboxError

FILLER = ".sandbox-filler"  # the one file fill_storage writes, at the volume's root
MAX_FILL_ROUNDS = 64


def _free_bytes(root: Path) -> int:
    stat = os.statvfs(root)
    return stat.f_bavail * stat.f_frsize


def fill_mounted(root: Path, leave_bytes: int) -> int:
    """Grow (or shrink) the filler file at `root` until the file system has `leave_bytes` free.

    fallocate reserves the blocks without writing them, so a full volume costs the image
    no disk; the extent tree's own blocks make the last requests fail, and plain writes
    take what they leave.
    """
    filler = root / FILLER
    if not filler.exists() and _free_bytes(root) < leave_bytes:
        raise SandboxError(f"only {_free_bytes(root)} bytes are free, fewer than {leave_bytes} to leave")
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = os.statvfs(root).f_frsize
        request = 0
        for _ in range(MAX_FILL_ROUNDS):
            excess = _free_bytes(root) - leave_bytes
            size = os.fstat(descriptor).st_size
            if excess < 0:
                if size == 0:
                    raise SandboxError(f"only {excess + leave_bytes} bytes are free, fewer than {leave_bytes} to leave")
                os.ftruncate(descriptor, max(size - math.ceil(-excess / block) * block, 0))
                continue
            request = min(request, excess) if request else excess
            request -= request % block
            if request < block:
                break
            try:
                os.posix_fallocate(descriptor, size, request)
                request = 0  # next round asks for all that is left
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                request //= 2
        else:
            raise SandboxError(f"the volume still has {_free_bytes(root)} bytes free after {MAX_FILL_ROUNDS} rounds")
        zeros = bytes(block)
        os.lseek(descriptor, 0, os.SEEK_END)
        while _free_bytes(root) - leave_bytes >= block:
            try:
                os.write(descriptor, zeros)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return _free_bytes(root)


def free_mounted(root: Path) -> bool:
    """Delete the filler file, if any; commit the journal so that its blocks can be written at once."""
    filler = root / FILLER
    if not filler.exists():
        return False
    filler.unlink()
    directory = os.open(root, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if len(args) == 3 and args[0] == "fill":
            print(fill_mounted(Path(args[1]), int(args[2])))
        elif len(args) == 2 and args[0] == "free":
            print("freed" if free_mounted(Path(args[1])) else "not filled")
        else:
            usage = "usage: python -m sandbox.volume_filler fill MOUNTPOINT LEAVE_BYTES | free MOUNTPOINT"
            print(usage, file=sys.stderr)
            return 2
    except (SandboxError, OSError) as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
