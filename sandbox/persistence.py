"""A model on disk: its state between two verbs, the lock that serialises verbs, and cleanup.

Each CLI call loads the model, runs one verb and saves it; the Python API keeps one `Model`
in memory and saves after every verb, so the CLI can pick it up.
"""

from __future__ import annotations

import fcntl
import pickle
import shutil
import sys
from pathlib import Path
from typing import IO

from sandbox import pods, volumes
from sandbox.errors import SandboxError
from sandbox.paths import state_dir
from sandbox.state import ModelState

STATE_FILE = "model.pickle"


def state_path(name: str) -> Path:
    return state_dir() / name / STATE_FILE


def save(model: ModelState) -> None:
    tmp = model.root / f"{STATE_FILE}.tmp"
    with open(tmp, "wb") as f:
        pickle.dump(model, f)
    tmp.rename(model.root / STATE_FILE)


def load(name: str) -> ModelState:
    path = state_path(name)
    if not path.is_file():
        raise SandboxError(f'model "{name}" not found (deploy into it to create it)')
    with open(path, "rb") as f:
        model = pickle.load(f)  # noqa: S301 - written by this sandbox
    if not isinstance(model, ModelState):
        raise SandboxError(f"{path} is not a sandbox model")
    return model


def list_models() -> list[str]:
    return sorted(p.parent.name for p in state_dir().glob(f"*/{STATE_FILE}"))


class ModelLock:
    """Serialise verbs from several CLI processes on one model."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[str] | None = None

    def __enter__(self) -> None:
        self.file = open(self.path, "a")
        fcntl.flock(self.file, fcntl.LOCK_EX)

    def __exit__(self, *_: object) -> None:
        assert self.file is not None
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def destroy(model: ModelState) -> None:
    """Remove every pod, namespace, process and file of the model (`juju destroy-model --force`).

    Volumes are detached before any file goes. Every step runs even if one fails; what could
    not be released is then an error, and the model's directory stays for the next cleanup.
    """
    problems: list[str] = []
    mountpoints = list(model.created_mountpoints)
    for unit in list(model.units.values()):
        try:
            unit.pod.delete()
        except SandboxError as error:
            problems.append(str(error))
        mountpoints += unit.pod.created_mountpoints
    model.units.clear()
    pods.delete_netns(pods.cluster_ns(model.name))
    shutil.rmtree(pods.socket_dir(model.name), ignore_errors=True)
    problems += volumes.release_under(model.root)  # the volumes of removed units, kept for their ordinals
    if problems:
        raise SandboxError(f"model {model.name} not removed entirely: {'; '.join(dict.fromkeys(problems))}")
    shutil.rmtree(model.root, ignore_errors=True)
    if not list_models():
        pods.remove_mountpoints(mountpoints)


def cleanup_model(name: str) -> None:
    """Remove whatever an earlier run of model `name` left, even if it crashed mid-way."""
    root = state_dir() / name
    if state_path(name).is_file():
        try:
            model = load(name)
        except Exception as error:  # noqa: BLE001 - a broken leftover still has to go
            print(
                f"warning: leftover model {name} could not be loaded ({error}); removing its namespaces",
                file=sys.stderr,
            )
        else:
            try:
                destroy(model)
            except SandboxError as error:
                # Processes left in the model's namespaces may hold its volumes: the sweep below
                # kills them and tries again, and reports what is still left after that.
                print(f"warning: {error}; removing what is left", file=sys.stderr)
    prefix = pods.cluster_ns(name)
    for ns in Path("/run/netns").glob(f"{prefix}*") if Path("/run/netns").exists() else []:
        if ns.name == prefix or ns.name.startswith(prefix + "-"):
            pods.kill_netns_processes(ns.name)
            pods.delete_netns(ns.name)
    shutil.rmtree(pods.socket_dir(name), ignore_errors=True)
    problems = volumes.release_under(root)
    if problems:
        raise SandboxError(f"model {name} not removed entirely: {'; '.join(problems)}")
    shutil.rmtree(root, ignore_errors=True)
