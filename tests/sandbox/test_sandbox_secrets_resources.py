"""User secrets and file resources in the sandbox, with the greeter test charm on real Pebble.

The tests of this module build on each other in order: alpha (two units) is deployed with a
file resource and granted a user secret; beta (one unit) gets neither and tries to read both.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import Model, SandboxError
from sandbox.persistence import cleanup_model

GREETER = Path(__file__).resolve().parent / "charms" / "greeter-k8s"


@pytest.fixture(scope="module")
def upload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's file, uploaded as the greeter's greeting-file resource."""
    path = tmp_path_factory.mktemp("resources") / "hello.txt"
    path.write_text("hello v1\n")
    return path


def _hooks_since(model: Model, start: int) -> list[tuple[str, str]]:
    return [(record.unit, record.kind) for record in model.event_records[start:]]


# ---------------------------------------------------------------- file resources


def test_deploy_uploads_a_copy_of_the_file_resource(model: Model, upload: Path) -> None:
    # Given alpha deployed with a file resource, and beta without one
    model.deploy(GREETER, "alpha", num_units=2, resources={"greeting-file": upload})
    model.deploy(GREETER, "beta")
    model.wait_for_idle(["alpha", "beta"], timeout=90)

    # When the user edits the file afterwards, and alpha's units read the resource
    upload.write_text("edited after deploy\n")
    results = [model.run(unit, "read-resource") for unit in ("alpha/0", "alpha/1")]

    # Then each reads what was uploaded, from a file of its own named as the charm declares it
    assert [r.results["content"] for r in results] == ["hello v1\n", "hello v1\n"]
    assert all(r.results["path"].endswith("/greeting-file/greeting.txt") for r in results)
    assert results[0].results["path"] != results[1].results["path"]


def test_a_resource_never_attached_fails_as_on_juju(model: Model) -> None:
    # When beta, deployed without the resource, reads it
    result = model.run("beta/0", "read-resource")

    # Then resource-get fails (ops raises ModelError) with Juju's answer
    assert result.status == "failed"
    assert result.message.startswith("cannot fetch resource: ERROR could not download resource")
    assert result.message.endswith("resource#beta/greeting-file not found")


def test_attaching_new_bytes_replaces_the_pods_and_runs_upgrade_charm(model: Model, upload: Path) -> None:
    # Given the file with new content
    upload.write_text("hello v2\n")
    start = len(model.event_records)

    # When the user attaches it to alpha
    revision = model.attach_resource("alpha", "greeting-file", upload)
    model.wait_for_idle(["alpha", "beta"], timeout=120)

    # Then it is revision 2; each of alpha's pods was replaced, highest ordinal first (stop in
    # the old pod, upgrade-charm in the new one); beta heard nothing
    hooks = _hooks_since(model, start)
    assert revision == 2
    for unit in ("alpha/1", "alpha/0"):
        assert hooks.index((unit, "stop")) < hooks.index((unit, "upgrade_charm"))
    assert hooks.index(("alpha/1", "stop")) < hooks.index(("alpha/0", "stop"))
    assert not [hook for hook in hooks if hook[0] == "beta/0"]
    # And the units read the new revision
    assert model.run("alpha/0", "read-resource").results["content"] == "hello v2\n"


def test_attaching_the_same_bytes_again_runs_nothing(model: Model, upload: Path) -> None:
    start = len(model.event_records)

    # When the same content is attached again
    revision = model.attach_resource("alpha", "greeting-file", upload)
    model.wait_for_idle(["alpha"], timeout=60)

    # Then it is a new revision, and no unit runs a hook for it
    assert revision == 3
    assert _hooks_since(model, start) == []


# ---------------------------------------------------------------- user secrets


def test_a_user_secret_is_read_by_granted_applications_only(model: Model) -> None:
    # Given a user secret granted to alpha, and both applications configured with its URI
    uri = model.add_secret("db-creds", {"username": "admin", "password": "hunter2"}, info="database login")
    model.grant_secret("db-creds", "alpha")
    model.config("alpha", {"credentials": uri})
    model.config("beta", {"credentials": uri})

    # When a unit of each reads it
    granted = model.run("alpha/0", "read-credentials")
    refused = model.run("beta/0", "read-credentials")

    # Then alpha's unit gets the content; beta's gets Juju's "permission denied"
    assert granted.status == "completed"
    assert granted.results == {"username": "admin", "password": "hunter2"}
    assert refused.status == "failed"
    assert refused.message == "cannot read secret: ERROR permission denied"


def test_an_update_sends_secret_changed_to_the_units_that_read_it(model: Model) -> None:
    # Given alpha/0 read the secret and alpha/1 never did
    logs = {unit: len(model.debug_log(unit)) for unit in ("alpha/0", "alpha/1", "beta/0")}

    # When the user updates it
    model.update_secret("db-creds", {"username": "admin", "password": "correct-horse"})
    model.wait_for_idle(["alpha", "beta"], timeout=60)

    # Then only alpha/0 gets secret-changed (it refreshes there, to the new revision)
    new = {unit: model.debug_log(unit)[start:] for unit, start in logs.items()}
    assert "alpha/0 secret_changed" in new["alpha/0"]
    assert "credentials moved to their latest revision" in new["alpha/0"]
    assert "secret_changed" not in new["alpha/1"]
    assert "secret_changed" not in new["beta/0"]
    assert model.run("alpha/0", "read-credentials").results["password"] == "correct-horse"
    # And alpha/1's first read gets the latest revision
    assert model.run("alpha/1", "read-credentials").results["password"] == "correct-horse"


def test_a_revoked_application_can_no_longer_read_it(model: Model) -> None:
    # When the user revokes alpha's access
    model.revoke_secret("db-creds", "alpha")

    # Then none of alpha's units can read it any more
    for unit in ("alpha/0", "alpha/1"):
        result = model.run(unit, "read-credentials")
        assert result.status == "failed"
        assert result.message == "cannot read secret: ERROR permission denied"


def test_a_removed_secret_is_not_found(model: Model) -> None:
    # Given beta granted the secret
    model.grant_secret("db-creds", "beta")
    assert model.run("beta/0", "read-credentials").results["username"] == "admin"
    uri = model.config("beta")["credentials"]

    # When the user removes it
    model.remove_secret("db-creds")

    # Then reading it is "not found"
    result = model.run("beta/0", "read-credentials")
    assert result.status == "failed"
    assert result.message == f"secret not found: {uri}"


def test_a_secret_option_takes_only_a_secret_uri(model: Model) -> None:
    refusal = 'invalid secret URI for option "credentials": secret URI "hunter2" not valid'
    with pytest.raises(SandboxError, match=refusal):
        model.config("alpha", {"credentials": "hunter2"})
    # "" means no secret
    model.config("alpha", {"credentials": ""})
    assert model.run("alpha/0", "read-credentials").message == "credentials is not set"


# ---------------------------------------------------------------- the command line, verb by verb


def _cli(*argv: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "-m", "t-secrets-cli", *argv], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_cli_secrets_and_resources_persist_between_verbs(tmp_path: Path) -> None:
    upload = tmp_path / "hello.txt"
    upload.write_text("from the command line\n")
    cleanup_model("t-secrets-cli")  # a leftover of a crashed run
    try:
        # Given a greeter deployed with a resource, and a user secret granted to it, verb by verb
        _cli("deploy", str(GREETER), "solo", "--resource", f"greeting-file={upload}")
        uri = _cli("add-secret", "api-key", "token#base64=czNjcjN0", "--info", "an API key").strip()
        _cli("grant-secret", "api-key", "solo")
        _cli("config", "solo", f"credentials={uri}")

        # When the unit reads both, then a new file is attached and the secret updated
        before = (_cli("run", "solo/0", "read-credentials"), _cli("run", "solo/0", "read-resource"))
        upload.write_text("attached later\n")
        _cli("attach-resource", "solo", f"greeting-file={upload}")
        _cli("update-secret", "api-key", "token=n3w")

        # Then each verb saw what the ones before it did
        assert uri.startswith("secret:")
        assert "token: s3cr3t" in before[0]
        assert "from the command line" in before[1]
        assert "attached later" in _cli("run", "solo/0", "read-resource")
        assert "token: n3w" in _cli("run", "solo/0", "read-credentials", "refresh=true")
    finally:
        cleanup_model("t-secrets-cli")
