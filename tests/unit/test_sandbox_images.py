"""What each image a charm names puts in its sandbox container, and manifests of older provisioning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.sandbox_models import provisioned_artifacts

from sandbox import SandboxError, lifecycle
from sandbox.paths import Artifacts


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PULSAR_CHARMS_CACHE", str(tmp_path))
    provisioned_artifacts(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("apachepulsar/pulsar-all:4.0.8", ("apachepulsar/pulsar-all", "4.0.8")),
        ("apachepulsar/pulsar", ("apachepulsar/pulsar", "latest")),
        ("docker.io/library/postgres:15-bookworm", ("postgres", "15-bookworm")),
        ("registry.local:5000/postgres@sha256:abc", ("registry.local:5000/postgres", "latest")),
    ],
)
def test_image_references_are_read_as_a_registry_reads_them(reference: str, expected: tuple[str, str]) -> None:
    assert lifecycle.image_reference(reference) == expected


def test_pulsar_all_gets_the_tree_with_connectors_and_pulsar_the_plain_one(cache: Path) -> None:
    # Given provisioned artifacts
    provisioned = provisioned_artifacts(cache)

    # When containers of the two Pulsar images are made
    pulsar_all = lifecycle.image_tree("apachepulsar/pulsar-all:4.0.8", provisioned)
    pulsar = lifecycle.image_tree("apachepulsar/pulsar:4.0.8", provisioned)

    # Then each gets its own tree at /pulsar, and the Java and Python the image carries: the
    # Python mounted where the image's non-root user can run it too
    python = {"/opt/workload-python": cache / "python"}
    assert pulsar_all.trees == {"/pulsar": cache / "pulsar-all", **python}
    assert pulsar.trees == {"/pulsar": cache / "pulsar", **python}
    assert pulsar_all.env["JAVA_HOME"] == str(cache / "java")
    assert pulsar_all.env["PATH"].startswith(f"/opt/workload-python/bin:{cache}/java/bin:")


def test_each_tag_of_the_pulsar_image_gets_its_own_distribution(cache: Path) -> None:
    # Given the current distribution and an earlier one provisioned
    provisioned = provisioned_artifacts(cache)

    # When containers of the two tags are made
    current = lifecycle.image_tree("apachepulsar/pulsar:4.0.8", provisioned)
    earlier = lifecycle.image_tree("apachepulsar/pulsar:4.0.6", provisioned)

    # Then each runs its own version's tree
    assert current.trees["/pulsar"] == cache / "pulsar"
    assert earlier.trees["/pulsar"] == cache / "pulsar-4.0.6"


@pytest.mark.parametrize(
    "reference", ["apachepulsar/pulsar:4.0.4", "apachepulsar/pulsar", "apachepulsar/pulsar-all:4.0.6"]
)
def test_a_tag_not_provisioned_is_refused_with_the_tags_there_are(cache: Path, reference: str) -> None:
    with pytest.raises(SandboxError, match=r"is not provisioned \(tags: 4\.0\.(6, 4\.0\.)?8\)"):
        lifecycle.image_tree(reference, provisioned_artifacts(cache))


def test_the_postgres_image_sets_its_path_and_pgdata(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given Debian's PostgreSQL 15 on the machine
    root = cache / "usr-lib-postgresql"
    (root / "15" / "bin").mkdir(parents=True)
    (root / "15" / "bin" / "postgres").write_text("")
    monkeypatch.setattr(lifecycle, "POSTGRES_ROOT", root)

    # When a container of postgres:15-bookworm is made
    image = lifecycle.image_tree("postgres:15-bookworm", provisioned_artifacts(cache))

    # Then it has the image's environment and no tree of ours
    assert image.trees == {}
    assert image.env["PATH"].endswith(f":{root}/15/bin")
    assert image.env["PGDATA"] == "/var/lib/postgresql/data"
    assert image.env["PG_MAJOR"] == "15"
    # And another major version, not installed, is refused with what is
    with pytest.raises(SandboxError, match=r"postgres:16 needs Debian's postgresql-16 \(installed: 15\)"):
        lifecycle.image_tree("postgres:16", provisioned_artifacts(cache))


def test_a_manifest_from_before_pulsar_all_still_loads_and_says_what_to_do(cache: Path) -> None:
    # Given a manifest written by an older provisioning, without the pulsar-all tree
    provisioned_artifacts(cache, with_pulsar_all=False).save()
    assert "pulsar_all_home" not in json.loads((cache / "artifacts.json").read_text())

    # When the sandbox loads it
    loaded = Artifacts.load()

    # Then Pulsar images work, and a pulsar-all container asks for provisioning
    assert lifecycle.image_tree("apachepulsar/pulsar:4.0.8", loaded).trees["/pulsar"] == cache / "pulsar"
    with pytest.raises(SandboxError, match=r"needs the pulsar-all tree: run `tox -e provision`"):
        lifecycle.image_tree("apachepulsar/pulsar-all:4.0.8", loaded)


def test_a_manifest_with_pulsar_all_round_trips(cache: Path) -> None:
    provisioned_artifacts(cache).save()
    assert Artifacts.load() == provisioned_artifacts(cache)
