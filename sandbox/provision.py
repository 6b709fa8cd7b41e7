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
# An earlier 4.0.x, the older tag of the plain image: bumping the image to PULSAR_VERSION is tested
# from it. Central publishes no sha512 of it; the sha1 it publishes is 508186de56493f4caae20b0e96cff2289c82f6ec.
EARLIER_PULSAR_VERSION = "4.0.6"
PULSAR_DISTRIBUTION_SHA512 = {
    PULSAR_VERSION: "65b769b10696cdfebf7fc5bcdc95dd663702e27051e616c1a13cb100e91279525b"
    "e35352171befe7b0011176330aab29bd0a6c8a0f2f0646641af46d2e33cbd6",
    EARLIER_PULSAR_VERSION: "ac174f604e94473215e07024d05853dbf24bf1520ec222c8bb0d87707a5f1267"
    "49df7d5733e06a2423456421489ed371e122f4f5a7793a5146a5a1b47f437e90",
}
# The pulsar-all image is the pulsar image plus connectors in /pulsar/connectors, under the names
# its Dockerfile gives them. Maven Central publishes this one only as a .jar, which is the NAR.
DEBEZIUM_POSTGRES_ARTIFACT = f"org.apache.pulsar:pulsar-io-debezium-postgres:{PULSAR_VERSION}:jar"
DEBEZIUM_POSTGRES_NAR = f"pulsar-io-debezium-postgres-{PULSAR_VERSION}.nar"
DEBEZIUM_POSTGRES_SHA512 = (  # its sha1 is the one Central publishes, 9deb3bb9ac78ab1e4e891393a2759e168cad6eac
    "c455a67b5c2fb2a11f38b8b8a3bcab7ce010728f5533e3da91954b348246f47de3"
    "18eff26fa9aa6646885b4ed119a0ec4d575599f9644952e48636224d326851"
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
# The apachepulsar images' user (uid 10000, group root) owns these directories of /pulsar.
IMAGE_UID, IMAGE_GID = 10000, 0
IMAGE_USER_DIRS = ("conf", "data", "download", "logs", "instances/deps", "packages-storage")
# Debian package -> a file (glob) that shows it is installed.
DEBIAN_PACKAGES = {
    "postgresql": "/usr/lib/postgresql/*/bin/postgres",
    "iproute2": "/usr/sbin/ip",
    "util-linux": "/usr/bin/unshare",
    "mount": "/usr/sbin/losetup",  # each unit's storage volume is a loop device
    "e2fsprogs": "/usr/sbin/mkfs.ext4",  # ... formatted ext4
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


def _fetch_from_maven(artifact: str, file_name: str, sha512: str, downloads: Path, what: str) -> Path:
    """One artifact from Maven Central into `downloads`, kept only if its sha512 is the pinned one.

    Maven checks the .sha1 that Central publishes (--strict-checksums); the sha512 pin is ours.
    """
    path = downloads / file_name
    if path.is_file() and _sha512(path) == sha512:
        return path
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SandboxError(f"Maven is required to fetch {artifact}")
    downloads.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    _run(
        [
            mvn,
            "-B",
            "--strict-checksums",
            "dependency:copy",
            f"-Dartifact={artifact}",
            f"-DoutputDirectory={downloads}",
        ],
        f"downloading {artifact} ({what})",
    )
    actual = _sha512(path)
    if actual != sha512:
        path.unlink()
        raise SandboxError(f"checksum mismatch for {file_name}: sha512 {actual}, pinned {sha512}")
    step(f"sha512 verified for {file_name}")
    return path


def provision_pulsar(cache: Path, version: str = PULSAR_VERSION) -> Path:
    home = cache / f"pulsar-{version}" / f"apache-pulsar-{version}"
    if (home / "bin" / "pulsar").is_file():
        step(f"Apache Pulsar {version} cached")
        return home
    tarball = _fetch_from_maven(
        f"org.apache.pulsar:pulsar-server-distribution:{version}:tar.gz:bin",
        f"pulsar-server-distribution-{version}-bin.tar.gz",
        PULSAR_DISTRIBUTION_SHA512[version],
        cache / "downloads",
        "about 245 MB",
    )
    unpack = cache / f"pulsar-{version}.partial"
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


def provision_pulsar_all(cache: Path, pulsar_home: Path) -> tuple[Path, Path]:
    """The pulsar-all image's /pulsar: the Pulsar tree plus connectors/<nar>. Returns (tree, nar).

    A tree of its own, hard links into the Pulsar tree (no copy), so that a container gets it
    as one read-only lower layer at /pulsar, as the image has it.
    """
    home = cache / f"pulsar-all-{PULSAR_VERSION}" / pulsar_home.name
    nar = home / "connectors" / DEBEZIUM_POSTGRES_NAR
    if nar.is_file() and (home / "bin" / "pulsar").is_file():
        step(f"pulsar-all tree {PULSAR_VERSION} cached")
        return home, nar
    jar = _fetch_from_maven(
        DEBEZIUM_POSTGRES_ARTIFACT,
        f"pulsar-io-debezium-postgres-{PULSAR_VERSION}.jar",
        DEBEZIUM_POSTGRES_SHA512,
        cache / "downloads",
        "the Debezium PostgreSQL source NAR",
    )
    build = cache / f"pulsar-all-{PULSAR_VERSION}.partial"
    shutil.rmtree(build, ignore_errors=True)
    shutil.copytree(pulsar_home, build / home.name, symlinks=True, copy_function=os.link)
    connectors = build / home.name / "connectors"
    connectors.mkdir(mode=0o755)
    shutil.copyfile(jar, connectors / DEBEZIUM_POSTGRES_NAR)
    (connectors / DEBEZIUM_POSTGRES_NAR).chmod(0o644)  # the image's files are world-readable
    shutil.rmtree(home.parent, ignore_errors=True)
    build.rename(home.parent)
    step(f"pulsar-all tree assembled with {DEBEZIUM_POSTGRES_NAR}")
    return home, nar


def as_in_the_image(home: Path) -> None:
    """Give the tree the image's ownership: these directories belong to its non-root user.

    docker/pulsar/Dockerfile makes conf, data, download, logs, instances/deps and
    packages-storage group-writable and owned by uid 10000 (group root), the user its
    containers run as; a workload running as that user writes there (its logs, for one).
    """
    for name in IMAGE_USER_DIRS:
        directory = home / name
        directory.mkdir(parents=True, exist_ok=True)
        for path in [directory, *directory.rglob("*")]:
            os.chown(path, IMAGE_UID, IMAGE_GID, follow_symlinks=False)
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o770)


def provision_workload_python(cache: Path) -> Path:
    """The image's python3 and its packages, as a venv every user may run.

    Built on the system's interpreter (world-readable), not on the one running this (it may
    live in a home no other user can enter); containers get the venv mounted at
    WORKLOAD_PYTHON_IN_IMAGE, so a workload running as the image's user runs it too.
    """
    venv = cache / "workload-python"
    python = venv / "bin" / "python3"
    stamp = venv / "packages.txt"
    base = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    wanted = "\n".join([f"# base: {base}", *WORKLOAD_PYTHON_PACKAGES])
    if python.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        step("workload Python environment cached")
        return python
    shutil.rmtree(venv, ignore_errors=True)
    _run([base, "-m", "venv", str(venv)], "creating the workload Python environment")
    _run([str(python), "-m", "pip", "install", "-q", *WORKLOAD_PYTHON_PACKAGES], "installing workload packages")
    stamp.write_text(wanted)
    return python


def main() -> int:
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    step(f"cache: {cache}")
    try:
        provision_debian_packages()
        pulsar_home = provision_pulsar(cache)
        pulsar_all_home, debezium_postgres_nar = provision_pulsar_all(cache, pulsar_home)
        earlier_home = provision_pulsar(cache, EARLIER_PULSAR_VERSION)
        for home in (pulsar_home, pulsar_all_home, earlier_home):
            as_in_the_image(home)
        artifacts = Artifacts(
            pebble=provision_pebble(cache),
            pulsar_home=pulsar_home,
            pulsar_version=PULSAR_VERSION,
            workload_python=provision_workload_python(cache),
            java_home=java_home(),
            pulsar_all_home=pulsar_all_home,
            debezium_postgres_nar=debezium_postgres_nar,
            earlier_pulsar_homes={EARLIER_PULSAR_VERSION: earlier_home},
        )
    except SandboxError as error:
        print(f"[provision] ERROR {error}", file=sys.stderr)
        return 1
    artifacts.save()
    step("ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
