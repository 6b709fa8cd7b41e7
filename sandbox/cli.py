"""`python -m sandbox VERB ...`: Juju-like verbs against a sandbox model."""

from __future__ import annotations

import argparse
import base64
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import yaml

from sandbox.errors import SandboxError
from sandbox.faults import signal_name
from sandbox.model import Model
from sandbox.paths import state_dir
from sandbox.persistence import cleanup_model, list_models

DEFAULT_MODEL = os.environ.get("PULSAR_SANDBOX_MODEL", "sandbox")


def _pairs(items: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SandboxError(f'{what} must be key=value, got "{item}"')
        pairs[key] = value
    return pairs


def _secret_values(items: list[str], yaml_file: Path | None) -> dict[str, str]:
    """`key=value`, `key#base64=VALUE` and `key#file=PATH`, and a YAML file of keys, as `juju add-secret` takes them."""
    content: dict[str, str] = {}
    if yaml_file is not None:
        loaded = yaml.safe_load(yaml_file.read_text()) or {}
        if not isinstance(loaded, dict):
            raise SandboxError(f"{yaml_file} must hold a mapping of keys to values")
        content.update({str(k): str(v) for k, v in loaded.items()})
    for key, value in _pairs(items, "secret value").items():
        name, _, encoding = key.partition("#")
        try:
            if encoding == "base64":
                value = base64.b64decode(value, validate=True).decode()
            elif encoding == "file":
                value = Path(value).read_text()
            elif encoding:
                raise SandboxError(f'unknown encoding "{encoding}" for key "{name}": use #base64 or #file')
        except (ValueError, OSError) as error:
            raise SandboxError(f'cannot read the value of "{name}": {error}') from None
        content[name] = value
    return content


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="A local stand-in for a Juju model.")
    parser.add_argument("-m", "--model", default=DEFAULT_MODEL, help="model name (default: %(default)s)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    deploy = verbs.add_parser("deploy", help="deploy a charm directory as an application")
    deploy.add_argument("charm", type=Path)
    deploy.add_argument("application", nargs="?")
    deploy.add_argument("-n", "--num-units", type=int, default=1)
    deploy.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    deploy.add_argument("--trust", action="store_true")
    deploy.add_argument(
        "--resource", action="append", default=[], metavar="NAME=VALUE", help="a file resource's PATH or an image"
    )

    attach = verbs.add_parser(
        "attach-resource", help="a new revision of an application's resource: a file's PATH or an image's reference"
    )
    attach.add_argument("application")
    attach.add_argument("resource", metavar="NAME=VALUE")

    add_secret = verbs.add_parser("add-secret", help="add a user secret; prints its URI")
    add_secret.add_argument("name")
    add_secret.add_argument("values", nargs="*", metavar="KEY=VALUE")
    add_secret.add_argument("--info", help="the secret's description")
    add_secret.add_argument("--file", type=Path, help="a YAML file of keys and values")

    update_secret = verbs.add_parser("update-secret", help="update a user secret (new content is a new revision)")
    update_secret.add_argument("secret", metavar="NAME|URI")
    update_secret.add_argument("values", nargs="*", metavar="KEY=VALUE")
    update_secret.add_argument("--info", help="the secret's description")
    update_secret.add_argument("--name", help="the secret's new name")
    update_secret.add_argument("--file", type=Path, help="a YAML file of keys and values")

    for verb, what in (("grant-secret", "let applications read"), ("revoke-secret", "stop applications reading")):
        sub = verbs.add_parser(verb, help=f"{what} a user secret")
        sub.add_argument("secret", metavar="NAME|URI")
        sub.add_argument("applications", metavar="APP[,APP...]")

    remove_secret = verbs.add_parser("remove-secret", help="remove a user secret")
    remove_secret.add_argument("secret", metavar="NAME|URI")

    add_unit = verbs.add_parser("add-unit", help="add units to an application")
    add_unit.add_argument("application")
    add_unit.add_argument("-n", "--num-units", type=int, default=1)

    remove_unit = verbs.add_parser("remove-unit", help="scale an application down (its highest units go)")
    remove_unit.add_argument("application")
    remove_unit.add_argument("--num-units", type=int, default=0, help="how many units to remove")

    for verb in ("integrate", "remove-relation"):
        sub = verbs.add_parser(verb, help=f"{verb} two applications (app or app:endpoint)")
        sub.add_argument("first")
        sub.add_argument("second")

    config = verbs.add_parser("config", help="show or set application config")
    config.add_argument("application")
    config.add_argument("values", nargs="*", metavar="KEY=VALUE")
    config.add_argument("--reset", action="append", default=[], metavar="KEY")

    run = verbs.add_parser("run", help="run an action on a unit")
    run.add_argument("unit")
    run.add_argument("action")
    run.add_argument("params", nargs="*", metavar="KEY=VALUE")
    run.add_argument("--wait", type=float, default=600.0, help="seconds to wait for the result")

    verbs.add_parser("status", help="show the model's applications, units and integrations (runs no hook)")

    restart = verbs.add_parser("restart-pod", help="delete a unit's pod and let it come back")
    restart.add_argument("unit")
    restart.add_argument("--move-leader", action="store_true", help="a leader's leadership moves meanwhile")

    signal = verbs.add_parser("signal", help="signal a workload service (SIGKILL, SIGTERM, SIGSTOP, SIGCONT)")
    signal.add_argument("unit")
    signal.add_argument("container")
    signal.add_argument("service")
    signal.add_argument("signal", help="SIGKILL, SIGTERM, SIGSTOP or SIGCONT (also KILL, kill, 9)")

    for verb, what in (("cut-network", "cut a unit's pod off from every other pod"), ("restore-network", "undo it")):
        sub = verbs.add_parser(verb, help=what)
        sub.add_argument("unit")

    fill = verbs.add_parser("fill-storage", help="fill a unit's storage volume until it has no room left")
    fill.add_argument("unit")
    fill.add_argument("storage")
    fill.add_argument("--leave", type=int, default=0, metavar="BYTES", help="bytes to leave free (default: 0)")

    free = verbs.add_parser("free-storage", help="delete what fill-storage wrote")
    free.add_argument("unit")
    free.add_argument("storage")

    elect = verbs.add_parser("elect-leader", help="hand the application's leadership to a unit")
    elect.add_argument("unit")

    trust = verbs.add_parser("trust", help="give an application's service account cluster-wide Kubernetes rights")
    trust.add_argument("application")
    trust.add_argument("--scope", choices=["cluster"], default="cluster", help="only cluster scope (as Juju)")
    trust.add_argument("--remove", action="store_true", help="take the rights away again")

    partition = verbs.add_parser(
        "set-partition", help="set the rolling-update partition of an application's StatefulSet (kubectl patch)"
    )
    partition.add_argument("application")
    partition.add_argument("partition", type=int)

    refresh = verbs.add_parser("refresh", help="upgrade an application's charm (a rolling update of its pods)")
    refresh.add_argument("application")
    refresh.add_argument("--path", type=Path, help="the new charm's directory (default: the same one)")
    refresh.add_argument(
        "--resource", action="append", default=[], metavar="NAME=VALUE", help="a file resource's PATH or an image"
    )

    wait = verbs.add_parser("wait-for-idle", help="drive the model until it is idle")
    wait.add_argument("applications", nargs="*")
    wait.add_argument("--status", default="active", help='workload status to wait for ("any" for none)')
    wait.add_argument("--timeout", type=float, default=600.0)

    destroy = verbs.add_parser("destroy", help="remove the model and everything it started")
    destroy.add_argument("--all", action="store_true", help="every sandbox model on this machine")

    verbs.add_parser("models", help="list the sandbox models on this machine")
    return parser


def _print_action(result: Any) -> int:
    if result.status == "failed":
        print(yaml.safe_dump(result.results, sort_keys=True).rstrip() if result.results else "", end="")
        print(
            f"ERROR the task failed: {result.message}" if result.message else "ERROR the task failed",
            file=sys.stderr,
        )
        return 1
    for line in result.logs:
        print(line)
    if result.results:
        print(yaml.safe_dump(result.results, sort_keys=True, default_flow_style=False).rstrip())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except SandboxError as error:
        print(f"ERROR {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ERROR interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - a sandbox bug: one line here, the trace in the log
        log = state_dir() / "sandbox-errors.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as out:
            out.write(traceback.format_exc() + "\n")
        print(f"ERROR internal error: {type(error).__name__}: {error} (trace in {log})", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.verb == "models":
        for name in list_models():
            print(name)
        return 0
    if args.verb == "destroy":
        for name in list_models() if args.all else [args.model]:
            cleanup_model(name)
            print(f"destroyed model {name}")
        return 0
    if args.verb == "deploy":
        try:
            model = Model.load(args.model)
        except SandboxError:
            model = Model.create(args.model)
            print(f"created model {args.model}")
    else:
        model = Model.load(args.model)
    with model.locked():
        return _verb(model, args)


def _verb(model: Model, args: argparse.Namespace) -> int:
    verb = args.verb
    if verb == "deploy":
        from sandbox.charmspec import CharmSpec

        charm = CharmSpec.load(args.charm.resolve())
        config = charm.parse_config(_pairs(args.config, "--config"))
        resources: dict[str, Path | str] = dict(_pairs(args.resource, "--resource"))
        app = model.deploy(args.charm, args.application, args.num_units, config, args.trust, resources=resources)
        print(f"deployed {app.name} ({len(app.units)} unit{'s' if len(app.units) != 1 else ''})")
    elif verb == "attach-resource":
        ((name, path),) = _pairs([args.resource], "resource").items()
        revision = model.attach_resource(args.application, name, path)
        print(f"attached {name} revision {revision} to {args.application}")
    elif verb == "add-secret":
        print(model.add_secret(args.name, _secret_values(args.values, args.file), info=args.info))
    elif verb == "update-secret":
        values = _secret_values(args.values, args.file) if args.values or args.file else None
        model.update_secret(args.secret, values, info=args.info, name=args.name)
    elif verb == "grant-secret":
        model.grant_secret(args.secret, args.applications)
    elif verb == "revoke-secret":
        model.revoke_secret(args.secret, args.applications)
    elif verb == "remove-secret":
        model.remove_secret(args.secret)
    elif verb == "add-unit":
        print("added " + ", ".join(model.add_unit(args.application, args.num_units)))
    elif verb == "remove-unit":
        removed = model.remove_unit(args.application, args.num_units)
        print("removed " + ", ".join(removed))
    elif verb == "integrate":
        relation = model.integrate(args.first, args.second)
        print(f"integrated {relation.label()}")
    elif verb == "remove-relation":
        model.remove_relation(args.first, args.second)
        print(f"removed relation {args.first} {args.second}")
    elif verb == "config":
        app = model.apps.get(args.application)
        if app is None:
            raise SandboxError(f'application "{args.application}" not found')
        values = app.charm.parse_config(_pairs(args.values, "config")) if args.values else None
        current = model.config(args.application, values, args.reset)
        if values is None and not args.reset:
            print(yaml.safe_dump(current, sort_keys=True).rstrip())
    elif verb == "run":
        result = model.run(args.unit, args.action, _pairs(args.params, "action parameter"), timeout=args.wait)
        return _print_action(result)
    elif verb == "status":
        # Only reads, as `juju status` does: running hooks here would take events from a
        # process that drives the model (a test); `wait-for-idle` runs them.
        print(model.status(), end="")
    elif verb == "restart-pod":
        model.restart_pod(args.unit, move_leader=args.move_leader)
        print(f"restarted the pod of {args.unit}")
    elif verb == "signal":
        model.signal_service(args.unit, args.container, args.service, args.signal)
        print(f"sent {signal_name(args.signal)} to service {args.service} of {args.unit} (container {args.container})")
    elif verb == "cut-network":
        model.cut_network(args.unit)
        print(f"cut the network of {args.unit}")
    elif verb == "restore-network":
        model.restore_network(args.unit)
        print(f"restored the network of {args.unit}")
    elif verb == "fill-storage":
        left = model.fill_storage(args.unit, args.storage, args.leave)
        print(f"filled {args.storage} of {args.unit}: {left} bytes free")
    elif verb == "free-storage":
        model.free_storage(args.unit, args.storage)
        print(f"freed {args.storage} of {args.unit}")
    elif verb == "elect-leader":
        model.elect_leader(args.unit)
        print(f"{args.unit} leads {model.units[args.unit].app}")
    elif verb == "trust":
        model.trust(args.application, remove=args.remove)
        print(f"{'removed trust from' if args.remove else 'trusted'} {args.application}")
    elif verb == "set-partition":
        model.set_partition(args.application, args.partition)
        print(f"partition of {args.application} is {args.partition}")
    elif verb == "refresh":
        model.refresh(args.application, args.path, resources=dict(_pairs(args.resource, "--resource")))
        print(f"refreshed {args.application}")
    elif verb == "wait-for-idle":
        status = None if args.status == "any" else args.status
        model.wait_for_idle(args.applications or None, status=status, timeout=args.timeout)
        print(model.status(), end="")
    model.save()
    return 0
