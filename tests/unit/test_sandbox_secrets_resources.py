"""The sandbox's user secrets and file resources, without pods: the model's verbs, and the greeter
charm's view of them, each event run as the unit agent runs it (in a forked process).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.sandbox_models import GREETER, described_state, provisioned_artifacts
from ops import testing
from scenario import _consistency_checker

from sandbox import Model, SandboxError, cli, statefulset
from sandbox.agent import _run_forked
from sandbox.charmspec import CharmSpec
from sandbox.projection import absorb, hidden_secrets, unit_view
from sandbox.scenario_compat import accept_juju_secret_uris
from sandbox.state import AppState, SecretState
from sandbox.wire import EventReply, EventRequest, EventSpec

MODEL_UUID = "6f1c4a52-2d8e-4a3b-9a57-0a1b2c3d4e5f"


def _greeter_type() -> type:
    name = "sandbox_test_greeter_charm"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, GREETER / "src" / "charm.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name].GreeterCharm


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Model:
    """A model with two greeter applications, alpha (units 0 and 1) and beta (unit 0), and no pods.

    It lives where the command line finds models, under a home of its own.
    """
    monkeypatch.setenv("PULSAR_SANDBOX_HOME", str(tmp_path / "home"))
    created = Model(
        described_state(tmp_path / "home", "unit", MODEL_UUID, {"alpha": 2, "beta": 1})
    )  # no pods: nothing to destroy
    created.save()
    return created


def _run(model: Model, unit_name: str, event: EventSpec) -> EventReply:
    """One event on a unit, as its agent runs it; what the charm changed goes back to the model."""
    unit = model.units[unit_name]
    before = unit_view(model.state, unit, {})
    request = EventRequest(
        event=event,
        state=before,
        pebble_sockets={"web": str(unit.pod.root / "no-pebble.socket")},  # a pod whose Pebble is down
        app=unit.app,
        unit_id=unit.number,
        trusted=False,
        hidden_secrets=hidden_secrets(model.state, unit),
        resource_dir=str(unit.pod.ephemeral_dir / "charm" / "resources"),
    )
    reply = _run_forked(_greeter_type(), request)
    assert reply.error is None, reply.error
    assert reply.state is not None
    for target, follow_up in absorb(model.state, unit, before, reply.state, reply.secrets_read):
        model.units[target].queue.append(follow_up)
    return reply


def _action(model: Model, unit_name: str, action: str, **params: Any) -> EventReply:
    typed = model.units[unit_name].charm.validate_action(action, params)
    return _run(model, unit_name, EventSpec("action", action=action, params=typed, action_id=1))


def _queued(model: Model, unit_name: str) -> list[str]:
    return [item.kind for item in model.units[unit_name].queue if isinstance(item, EventSpec)]


# ---------------------------------------------------------------- config options of type secret


@pytest.mark.parametrize(
    "uri",
    ["secret:cj4v5vm78ohs79o84r4g", f"secret://{MODEL_UUID}/cj4v5vm78ohs79o84r4g", "cj4v5vm78ohs79o84r4g", ""],
)
def test_a_secret_option_takes_what_juju_parses_as_a_secret_uri(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the greeter, whose credentials option is of type secret
    charm = CharmSpec.load(GREETER)

    # When it is set to a secret URI, in any form Juju parses, or to "" (no secret)
    charm.validate_config({"credentials": uri})

    # Then ops.testing accepts it in the unit's config too, as Juju hands it to the charm
    monkeypatch.setattr(_consistency_checker, "_is_secret_identifier", _consistency_checker._is_secret_identifier)
    accept_juju_secret_uris()  # as the unit agent does; undone after the test
    ctx = testing.Context(_greeter_type(), app_name="alpha", juju_version="3.6.11")
    web = testing.Container("web", can_connect=False)
    ctx.run(ctx.on.update_status(), testing.State(config={"credentials": uri}, containers={web}))


def test_a_secret_option_refuses_what_is_not_a_secret_uri() -> None:
    charm = CharmSpec.load(GREETER)
    with pytest.raises(SandboxError, match='invalid secret URI for option "credentials": secret URI "bar" not valid'):
        charm.validate_config({"credentials": "bar"})
    with pytest.raises(SandboxError, match='option "credentials" expected secret, got 3'):
        charm.validate_config({"credentials": 3})


# ---------------------------------------------------------------- user secrets


def test_only_units_of_a_granted_application_read_a_user_secret(model: Model) -> None:
    # Given a user secret, granted to alpha only, and both applications configured with it
    uri = model.add_secret("creds", {"username": "admin", "password": "hunter2"}, info="db login")
    model.grant_secret("creds", "alpha")
    model.config("alpha", {"credentials": uri}, settle=False)
    model.config("beta", {"credentials": uri}, settle=False)

    # When a unit of each reads it
    granted = _action(model, "alpha/1", "read-credentials")
    refused = _action(model, "beta/0", "read-credentials")

    # Then alpha's unit gets the content; beta's is denied, as Juju denies it (not "not found")
    assert granted.action_failure is None
    assert granted.action_results == {"username": "admin", "password": "hunter2"}
    assert refused.action_failure == "cannot read secret: ERROR permission denied"
    assert uri.startswith("secret:")
    assert len(uri.removeprefix("secret:")) == 20


def test_a_revoked_application_can_no_longer_read_the_secret(model: Model) -> None:
    # Given a user secret alpha was granted and read
    uri = model.add_secret("creds", {"token": "t0"})
    model.grant_secret(uri, ["alpha", "beta"])
    model.config("alpha", {"credentials": uri}, settle=False)
    assert _action(model, "alpha/0", "read-credentials").action_results == {"token": "t0"}

    # When the user revokes alpha's access
    model.revoke_secret("creds", "alpha")

    # Then alpha's units are denied; beta, still granted, reads it
    assert _action(model, "alpha/0", "read-credentials").action_failure == "cannot read secret: ERROR permission denied"
    model.config("beta", {"credentials": uri}, settle=False)
    assert _action(model, "beta/0", "read-credentials").action_results == {"token": "t0"}


def test_an_update_reaches_only_the_units_that_track_the_secret(model: Model) -> None:
    # Given a user secret granted to alpha, read by alpha/0 and never by alpha/1
    uri = model.add_secret("creds", {"token": "t0"})
    model.grant_secret("creds", "alpha")
    model.config("alpha", {"credentials": uri}, settle=False)
    _action(model, "alpha/0", "read-credentials")
    model.units["alpha/0"].queue.clear()
    model.units["alpha/1"].queue.clear()

    # When the user updates its content
    revision = model.update_secret("creds", {"token": "t1"}, settle=False)

    # Then there is a new revision; only alpha/0 gets secret-changed, and until it refreshes
    # it still reads the revision it tracks
    assert revision == 2
    assert _queued(model, "alpha/0") == ["secret_changed"]
    assert _queued(model, "alpha/1") == []
    assert _action(model, "alpha/0", "read-credentials").action_results == {"token": "t0"}
    assert _action(model, "alpha/0", "read-credentials", refresh=True).action_results == {"token": "t1"}
    assert _action(model, "alpha/0", "read-credentials").action_results == {"token": "t1"}
    # And alpha/1's first read gets the latest revision
    assert _action(model, "alpha/1", "read-credentials").action_results == {"token": "t1"}


def test_secret_changed_moves_the_unit_to_the_latest_revision(model: Model) -> None:
    # Given alpha/0 tracking revision 1 of a user secret, then an update
    uri = model.add_secret("creds", {"token": "t0"})
    model.grant_secret("creds", "alpha")
    model.config("alpha", {"credentials": uri}, settle=False)
    _action(model, "alpha/0", "read-credentials")
    model.update_secret("creds", {"token": "t1"}, settle=False)

    # When alpha/0 handles its secret-changed (the greeter refreshes there)
    _run(model, "alpha/0", EventSpec("secret_changed", secret_id=uri))

    # Then it reads the new revision from then on
    assert _action(model, "alpha/0", "read-credentials").action_results == {"token": "t1"}


def test_the_same_content_again_makes_no_revision(model: Model) -> None:
    uri = model.add_secret("creds", {"token": "t0"})
    model.grant_secret("creds", "alpha")
    model.config("alpha", {"credentials": uri}, settle=False)
    _action(model, "alpha/0", "read-credentials")
    model.units["alpha/0"].queue.clear()

    assert model.update_secret("creds", {"token": "t0"}, info="same token", settle=False) == 1
    assert _queued(model, "alpha/0") == []


def test_a_removed_secret_is_not_found(model: Model) -> None:
    # Given a granted user secret
    uri = model.add_secret("creds", {"token": "t0"})
    model.grant_secret("creds", "alpha")
    model.config("alpha", {"credentials": uri}, settle=False)

    # When the user removes it
    model.remove_secret("creds")

    # Then reading it is "not found", and its name is free again
    assert _action(model, "alpha/0", "read-credentials").action_failure == f"secret not found: {uri}"
    assert model.add_secret("creds", {"token": "t1"}) != uri


def test_bad_user_secret_requests_are_refused_as_juju_refuses_them(model: Model) -> None:
    model.add_secret("creds", {"token": "t0"})
    with pytest.raises(SandboxError, match='secret with name "creds" already exists'):
        model.add_secret("creds", {"token": "t1"})
    with pytest.raises(SandboxError, match='secret name "Creds" not valid'):
        model.add_secret("Creds", {"token": "t1"})
    with pytest.raises(SandboxError, match='secret key "pw" not valid'):
        model.add_secret("other", {"pw": "x"})
    with pytest.raises(SandboxError, match='secret "nope" not found'):
        model.grant_secret("nope", "alpha")
    with pytest.raises(SandboxError, match='application "gamma" not found'):
        model.grant_secret("creds", "alpha,gamma")


# ---------------------------------------------------------------- file resources


def test_a_resource_never_attached_fails_resource_get_as_on_juju(model: Model) -> None:
    # When a unit reads a file resource no file was ever attached for
    reply = _action(model, "beta/0", "read-resource")

    # Then ops raises ModelError with what Juju's resource-get answers
    assert reply.action_failure is not None
    assert reply.action_failure.startswith("cannot fetch resource: ERROR could not download resource")
    assert reply.action_failure.endswith("resource#beta/greeting-file not found")


def test_an_attached_file_is_the_models_own_copy(model: Model, tmp_path: Path) -> None:
    # Given a file the user attaches to alpha
    upload = tmp_path / "hello.txt"
    upload.write_text("hello v1\n")
    revision = model.attach_resource("alpha", "greeting-file", upload, settle=False)

    # When the user edits the file afterwards, and a unit reads the resource
    upload.write_text("edited\n")
    reply = _action(model, "alpha/0", "read-resource")

    # Then the charm reads what was attached, from its own copy named as the charm declares it
    assert revision == 1
    assert reply.action_results["content"] == "hello v1\n"
    path = Path(reply.action_results["path"])
    assert path.name == "greeting.txt"
    assert path.is_relative_to(model.units["alpha/0"].pod.ephemeral_dir)


def test_each_attach_is_a_new_revision_and_new_bytes_roll_the_pods(model: Model, tmp_path: Path) -> None:
    # Given a resource attached once
    upload = tmp_path / "hello.txt"
    upload.write_text("hello v1\n")
    model.attach_resource("alpha", "greeting-file", upload, settle=False)
    for name in model.apps["alpha"].units:  # as if the pods were replaced already
        model.units[name].revision = model.apps["alpha"].update_revision
    first = model.statefulset("alpha").update_revision

    # When the same bytes are attached again, then new ones
    same = model.attach_resource("alpha", "greeting-file", upload, settle=False)
    rolled_for_same = model.statefulset("alpha").rolling
    upload.write_text("hello v2\n")
    new = model.attach_resource("alpha", "greeting-file", upload, settle=False)

    # Then each is a revision; only new bytes are a new pod template (a StatefulSet revision)
    # that replaces the pods (highest ordinal first), and units read the new revision
    assert (same, new) == (2, 3)
    assert not rolled_for_same
    view = model.statefulset("alpha")
    assert view.update_revision != first
    assert view.rolling
    with model._lock:
        model._scheduler._advance_rollouts()
    assert model.apps["alpha"].replacing == "alpha/1"
    assert _action(model, "alpha/1", "read-resource").action_results["content"] == "hello v2\n"


@pytest.fixture
def provisioned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pulsar images of tags 4.0.8 (the greeter's upstream-source) and 4.0.6 can run."""
    monkeypatch.setenv("PULSAR_CHARMS_CACHE", str(tmp_path / "cache"))
    provisioned_artifacts(tmp_path / "cache").save()


def _template_images(model: Model, app: str) -> list[str]:
    served = statefulset.statefulset_doc(model.state, model.apps[app], ready={})
    return [c["image"] for c in served["spec"]["template"]["spec"]["containers"]]


@pytest.mark.usefixtures("provisioned")
def test_an_attached_image_rolls_the_pods_onto_it_and_the_same_image_does_not(model: Model) -> None:
    # Given alpha running its charm's upstream-source image
    model.attach_resource("alpha", "greeting-file", GREETER / "charmcraft.yaml", settle=False)
    first = model.statefulset("alpha").update_revision
    for name in model.apps["alpha"].units:  # as if the pods were replaced already
        model.units[name].revision = first

    # When the image it already runs is attached, then an earlier tag
    same = model.attach_resource("alpha", "web-image", "apachepulsar/pulsar:4.0.8", settle=False)
    rolled_for_same = model.statefulset("alpha").rolling
    earlier = model.attach_resource("alpha", "web-image", "apachepulsar/pulsar:4.0.6", settle=False)

    # Then each is a revision; only a new image is a new pod template, which names the image
    # and replaces the pods, highest ordinal first
    assert (same, earlier) == (1, 2)
    assert not rolled_for_same
    view = model.statefulset("alpha")
    assert view.update_revision != first
    assert view.rolling
    assert "apachepulsar/pulsar:4.0.6" in _template_images(model, "alpha")
    with model._lock:
        model._scheduler._advance_rollouts()
    assert model.apps["alpha"].replacing == "alpha/1"
    attached = model.image_revision("alpha", "web-image")
    assert attached is not None
    assert (attached.revision, attached.reference) == (2, "apachepulsar/pulsar:4.0.6")


@pytest.mark.usefixtures("provisioned")
def test_a_refresh_with_a_new_image_is_one_template_change_and_the_image_stays_after(model: Model) -> None:
    # Given alpha on an earlier image
    model.attach_resource("alpha", "web-image", "apachepulsar/pulsar:4.0.6", settle=False)
    generation = model.apps["alpha"].template_generation

    # When it is refreshed with the newer image, then refreshed again without naming one
    model.refresh("alpha", settle=False, resources={"web-image": "apachepulsar/pulsar:4.0.8"})
    after_bump = model.apps["alpha"].template_generation
    images_after_bump = _template_images(model, "alpha")
    model.refresh("alpha", settle=False)

    # Then the charm and the image changed in one new template, and the image stays attached
    assert after_bump == generation + 1
    assert "apachepulsar/pulsar:4.0.8" in images_after_bump
    assert "apachepulsar/pulsar:4.0.8" in _template_images(model, "alpha")


@pytest.mark.usefixtures("provisioned")
def test_bad_resource_requests_are_refused(model: Model, tmp_path: Path) -> None:
    template = model.statefulset("alpha").update_revision
    with pytest.raises(SandboxError, match='unrecognized resource "nope"'):
        model.attach_resource("alpha", "nope", tmp_path / "x", settle=False)
    with pytest.raises(SandboxError, match=r"image apachepulsar/pulsar:4\.0\.4 is not provisioned"):
        model.attach_resource("alpha", "web-image", "apachepulsar/pulsar:4.0.4", settle=False)
    with pytest.raises(SandboxError, match='resource "web-image" needs an image reference'):
        model.attach_resource("alpha", "web-image", "apachepulsar/pulsar 4.0.6", settle=False)
    with pytest.raises(SandboxError, match="no such file"):
        model.attach_resource("alpha", "greeting-file", tmp_path / "missing.txt", settle=False)
    # And nothing of them was kept
    assert model.image_revision("alpha", "web-image") is None
    assert model.statefulset("alpha").update_revision == template


# ---------------------------------------------------------------- the command line


def test_cli_verbs_keep_secrets_and_resources_between_calls(
    model: Model, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a file to attach, and an application scaled to zero (no pod to replace here)
    upload = tmp_path / "hello.txt"
    upload.write_text("from the command line\n")
    charm = model.apps["alpha"].charm
    model.apps["idle"] = AppState(name="idle", charm=charm, config={}, trusted=False)
    model.save()

    # When the user adds, grants and configures a secret and attaches the file, one call per verb
    assert cli.main(["-m", "unit", "add-secret", "api-key", "token#base64=czNjcjN0", "--info", "an API key"]) == 0
    uri = capsys.readouterr().out.strip()
    assert cli.main(["-m", "unit", "grant-secret", "api-key", "alpha"]) == 0
    assert cli.main(["-m", "unit", "config", "alpha", f"credentials={uri}"]) == 0
    assert cli.main(["-m", "unit", "attach-resource", "idle", f"greeting-file={upload}"]) == 0
    assert cli.main(["-m", "unit", "update-secret", "api-key", "token=n3w"]) == 0

    # Then the model on disk holds them all: alpha's unit reads the secret's latest revision,
    # and the model keeps the attached file as idle's revision 1
    loaded = Model.load("unit")
    assert uri.startswith("secret:")
    assert _action(loaded, "alpha/0", "read-credentials").action_results == {"token": "n3w"}
    assert loaded.secret_content("api-key", revision=1) == {"token": "s3cr3t"}
    attached = loaded.resource_revision("idle", "greeting-file")
    assert attached is not None
    assert attached.revision == 1
    assert attached.path.read_text() == "from the command line\n"


def test_cli_refuses_a_bad_secret_value_in_one_line(model: Model, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["-m", "unit", "add-secret", "api-key", "token#base64=not base64!"]) == 1
    error = capsys.readouterr().err
    assert error.startswith('ERROR cannot read the value of "token"')
    assert len(error.strip().splitlines()) == 1


def test_a_unit_that_ran_alongside_the_writer_does_not_undo_its_revision(model: Model) -> None:
    # Given an application secret of alpha at revision 1, shown to alpha/1 as a hook of its starts
    secret = SecretState(
        id="secret:alphasecret000000000", owner="alpha", owner_is_unit=False, revisions={1: {"k": "a"}}
    )
    model.state.secrets[secret.id] = secret
    follower = model.units["alpha/1"]
    before = unit_view(model.state, follower, {})

    # When the leader writes revision 2 and grants the secret to a relation while that hook runs
    # (units run in parallel), and the hook ends having only read the secret
    secret.latest, secret.revisions[2] = 2, {"k": "b"}
    secret.grants = {7: frozenset({"beta"})}
    absorb(model.state, follower, before, before)

    # Then revision 2 stays the latest, and the grant stays: what the follower was shown is no write
    assert (secret.latest, secret.revisions[2]) == (2, {"k": "b"})
    assert set(secret.revisions) == {1, 2}
    assert secret.grants == {7: frozenset({"beta"})}
