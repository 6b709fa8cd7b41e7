"""Provision the real workloads the sandbox runs: `python -m sandbox.provision`.

Idempotent and cached: each step checks what is already in the cache and skips itself.
Every download is verified against a pinned checksum before it is used.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.paths import REPO_ROOT, Artifacts, cache_dir

# The newest 4.0.x for which Maven Central has both the server distribution and the
# Debezium PostgreSQL connector (published there as a .jar that is the NAR bundle).
PULSAR_VERSION = "4.0.8"
PULSAR_ARTIFACT = f"org.apache.pulsar:pulsar-server-distribution:{PULSAR_VERSION}:tar.gz:bin"
PULSAR_SHA512 = (
    "65b769b10696cdfebf7fc5bcdc95dd663702e27051e616c1a13cb100e91279525b"
    "e35352171befe7b0011176330aab29bd0a6c8a0f2f0646641af46d2e33cbd6"
)
PEBBLE_VERSION = "v1.26.0"  # must match sandbox/pebble/go.mod
# What the apachepulsar image's python carries (docker/pulsar/Dockerfile: pip installs these, and
# Alpine's py3-yaml), no more: a workload that needs anything else would fail on the real image.
WORKLOAD_PYTHON_PACKAGES = [
    "pulsar-client[all]==3.13.0",
    "grpcio==1.78.0",
    "protobuf==6.33.6",
    "kazoo==2.11.0",
    "PyYAML==6.0.4",
]
# Debian package -> a file (glob) that shows it is installed.
DEBIAN_PACKAGES = {
    "postgresql": "/usr/lib/postgresql/*/bin/postgres",
    "iproute2": "/usr/sbin/ip",
    "util-linux": "/usr/bin/unshare",
}


def step(message: str) -> None:
    print(f"[provision] {message}", flush=True)


def _run(argv: list[str], what: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    step(f"{what}: {' '.join(argv)}")
    result = subprocess.run(argv, env=env, cwd=cwd, stderr=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise SandboxError(f"{what} failed (exit {result.returncode}):\n{tail}")


def _sha512(path: Path) -> str:
    digest = hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def provision_debian_packages() -> None:
    missing = [pkg for pkg, probe in DEBIAN_PACKAGES.items() if not glob.glob(probe)]
    if not missing:
        step("Debian packages present: " + ", ".join(DEBIAN_PACKAGES))
        return
    if os.geteuid() != 0:
        raise SandboxError(f"missing Debian packages {missing}: install them as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-q"], "refreshing Debian package lists", env)
    _run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        "installing Debian packages",
        env,
    )


def java_home() -> Path:
    java = shutil.which("java")
    if java is None:
        raise SandboxError("Java 17 is required: apt-get install openjdk-17-jre-headless")
    home = Path(java).resolve().parent.parent
    version = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    if '"17.' not in version and '"21.' not in version:
        raise SandboxError(f"Java 17 (or 21) is required, found: {version.splitlines()[0] if version else '?'}")
    step(f"Java found at {home}")
    return home


def provision_pebble(cache: Path) -> Path:
    target = cache / f"pebble-{PEBBLE_VERSION}" / "pebble"
    if target.is_file():
        step(f"Pebble {PEBBLE_VERSION} cached")
        return target
    go = shutil.which("go")
    if go is None:
        raise SandboxError("Go is required to build Pebble")
    build = cache / "pebble-build"
    shutil.rmtree(build, ignore_errors=True)
    shutil.copytree(REPO_ROOT / "sandbox" / "pebble", build)
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    _run(
        [go, "build", "-o", str(build / "pebble"), "github.com/canonical/pebble/cmd/pebble"],
        f"building Pebble {PEBBLE_VERSION} (go.sum verifies the module checksums)",
        env,
        build,
    )
    out = subprocess.run([str(build / "pebble"), "version", "--client"], capture_output=True, text=True, check=False)
    if PEBBLE_VERSION not in out.stdout:
        raise SandboxError(f"built Pebble reports {out.stdout.strip()!r}, expected {PEBBLE_VERSION}")
    target.parent.mkdir(parents=True, exist_ok=True)
    (build / "pebble").rename(target)
    shutil.rmtree(build, ignore_errors=True)
    return target


def provision_pulsar(cache: Path) -> Path:
    home = cache / f"pulsar-{PULSAR_VERSION}" / f"apache-pulsar-{PULSAR_VERSION}"
    if (home / "bin" / "pulsar").is_file():
        step(f"Apache Pulsar {PULSAR_VERSION} cached")
        return home
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SandboxError("Maven is required to fetch the Pulsar distribution")
    downloads = cache / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    tarball = downloads / f"pulsar-server-distribution-{PULSAR_VERSION}-bin.tar.gz"
    if not tarball.is_file() or _sha512(tarball) != PULSAR_SHA512:
        tarball.unlink(missing_ok=True)
        _run(
            [
                mvn,
                "-B",
                "--strict-checksums",
                "dependency:copy",
                f"-Dartifact={PULSAR_ARTIFACT}",
                f"-DoutputDirectory={downloads}",
            ],
            f"downloading {PULSAR_ARTIFACT} (about 245 MB)",
        )
    actual = _sha512(tarball)
    if actual != PULSAR_SHA512:
        tarball.unlink()
        raise SandboxError(f"checksum mismatch for {tarball.name}: sha512 {actual}, pinned {PULSAR_SHA512}")
    step(f"sha512 verified for {tarball.name}")
    unpack = cache / f"pulsar-{PULSAR_VERSION}.partial"
    shutil.rmtree(unpack, ignore_errors=True)
    unpack.mkdir(parents=True)
    started = time.monotonic()
    with tarfile.open(tarball) as archive:
        archive.extractall(unpack, filter="tar")
    step(f"unpacked in {time.monotonic() - started:.1f}s")
    final = home.parent
    shutil.rmtree(final, ignore_errors=True)
    unpack.rename(final)
    return home


def provision_workload_python(cache: Path) -> Path:
    venv = cache / "workload-python"
    python = venv / "bin" / "python3"
    stamp = venv / "packages.txt"
    wanted = "\n".join(WORKLOAD_PYTHON_PACKAGES)
    if python.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        step("workload Python environment cached")
        return python
    shutil.rmtree(venv, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(venv)], "creating the workload Python environment")
    _run([str(python), "-m", "pip", "install", "-q", *WORKLOAD_PYTHON_PACKAGES], "installing workload packages")
    stamp.write_text(wanted)
    return python


def main() -> int:
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    step(f"cache: {cache}")
    try:
        provision_debian_packages()
        artifacts = Artifacts(
            pebble=provision_pebble(cache),
            pulsar_home=provision_pulsar(cache),
            pulsar_version=PULSAR_VERSION,
            workload_python=provision_workload_python(cache),
            java_home=java_home(),
        )
    except SandboxError as error:
        print(f"[provision] ERROR {error}", file=sys.stderr)
        return 1
    artifacts.save()
    step("ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
