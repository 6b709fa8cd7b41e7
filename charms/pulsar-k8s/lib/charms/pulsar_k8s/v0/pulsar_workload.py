"""The workload base shared by the Pulsar charms: what every one of them does the same way.

Every charm of this project runs a container built from the Apache Pulsar image. This
library gives them, written once:

- the lifecycle events each charm wires to its one reconcile (`observe_lifecycle`), and
  whether this unit is being removed (`RemovalWatch`);
- one status convention: a `StatusCatalog` of every status a charm can show, set through
  collect-status, each change logged once (`report_status`);
- the image's non-root user, which services run as and which owns the files and storage
  directories the charm hands them (`as_image_user`, `PebbleWorkload.own_directories`);
- Pebble access: one-off commands (the exit code always checked, stderr always surfaced),
  files written only when they change, layers applied only when they change the plan,
  restart and is-running, what the image carries;
- probes: HTTP readiness (`http_ready`);
- the unit's stable DNS name, with the cluster domain the pod really has (`pod_fqdn`);
- the Jinja environment config files are rendered with (`template_environment`);
- typed databags: `read_databag` / `write_databag`, ops' `Relation.load` / `Relation.save`
  with ops' default codec (each value JSON-encoded), plus validation of what is read against
  the dataclass's annotations, and erasure of empty values (Juju removes a key set to "");
- a peer relation's application and unit databags, typed, read once per event and written
  back only when they changed (`PeerData`).

Owned by pulsar-k8s; the other charms carry identical copies.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import re
import ssl
import types
import typing
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import jinja2
import ops

LIBID = "7ef0956eb6164d3595ea14a6cdf1e1a8"
LIBAPI = 0
LIBPATCH = 10

logger = logging.getLogger(__name__)

PULSAR_HOME = "/pulsar"
RESOLV_CONF = Path("/etc/resolv.conf")
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
PROBE_TIMEOUT = 2.0
# The apachepulsar images' user: uid 10000, in the root group, as their Dockerfile makes it.
# Services name the group rather than gid 0: ops leaves a zero `group-id` out of a layer.
IMAGE_UID = 10000
IMAGE_GID = 0
IMAGE_GROUP = "root"
# The image's default PULSAR_EXTRA_OPTS (conf/pulsar_env.sh), kept when the charm sets its own.
IMAGE_EXTRA_OPTS = "-Dpulsar.allocator.exit_on_oom=true -Dio.netty.recycler.maxCapacityPerThread=4096"
_VERSION_JAR = re.compile(r"org\.apache\.pulsar-pulsar-broker-common-(?P<version>[0-9][^/]*)\.jar$")
_SIZE = re.compile(r"^[1-9][0-9]*[mg]$")

T = TypeVar("T")
AppT = TypeVar("AppT")
UnitT = TypeVar("UnitT")


# ---------------------------------------------------------------- events and statuses


def observe_lifecycle(
    charm: ops.CharmBase,
    handler: Callable[[ops.EventBase], None],
    containers: Iterable[str] = (),
    relations: Iterable[str] = (),
) -> None:
    """Wire every event after which the charm's state may differ to `handler` (its reconcile).

    The charm's own lifecycle, each container's Pebble events (ready, check failed and
    recovered: how the charm hears a service start serving or stop), and for each named
    relation its changed, departed and broken events (changed always follows joined).
    """
    on = charm.on
    events: list[ops.BoundEvent] = [
        on.install,
        on.start,
        on.config_changed,
        on.upgrade_charm,
        on.update_status,
        on.leader_elected,
        on.secret_changed,
    ]
    for name in containers:
        events += [on[name].pebble_ready, on[name].pebble_check_failed, on[name].pebble_check_recovered]
    for name in relations:
        events += [on[name].relation_changed, on[name].relation_departed, on[name].relation_broken]
    for event in events:
        charm.framework.observe(event, handler)


class RemovalWatch(ops.Object):
    """Whether this unit is being removed ("dying"), remembered in its local stored state.

    Juju runs, for a unit being removed: relation-departed for each remote unit of each
    relation (with this unit as the departing one), relation-broken of each relation,
    storage-detaching, stop, remove. The first of these tells the unit; from then on it does
    no application-wide work (its view of the others shrinks as they depart from it).
    On Kubernetes a scale-down removes the highest ordinals and `planned_units()` leaves the
    dying units out at once, so a unit whose number is not below it is dying too, even in an
    event that comes before its first departure (update-status, a peer's relation-changed).
    Create it before wiring the reconcile, so that it hears each event first.
    """

    _stored = ops.StoredState()

    def __init__(self, charm: ops.CharmBase, relations: Iterable[str]) -> None:
        super().__init__(charm, "removal")
        self._unit = charm.unit
        self._app = charm.app
        self._stored.set_default(dying=False)
        for name in relations:
            charm.framework.observe(charm.on[name].relation_departed, self._on_departed)
        charm.framework.observe(charm.on.remove, self._on_remove)

    @property
    def dying(self) -> bool:
        if self._stored.dying:
            return True
        return int(self._unit.name.rsplit("/", 1)[1]) >= self._app.planned_units()

    def _on_departed(self, event: ops.RelationDepartedEvent) -> None:
        if event.departing_unit is not None and event.departing_unit.name == self._unit.name:
            self._mark()

    def _on_remove(self, _: ops.RemoveEvent) -> None:
        self._mark()

    def _mark(self) -> None:
        if not self._stored.dying:
            logger.info("%s is being removed: no application-wide work from now on", self._unit.name)
            self._stored.dying = True


class StatusCatalog(Enum):
    """Base of a charm's `Status` enum: members are (status class, message template) pairs.

    Calling a member with the template's fields gives the ops status to set, so every
    message a charm can show is written once, in its literals.
    """

    def __call__(self, **fields: Any) -> ops.StatusBase:
        kind, template = self.value
        return kind(template.format(**fields))


# Most urgent first: what the user must act on before what will pass by itself.
_PRIORITY = ("error", "blocked", "maintenance", "waiting", "active", "unknown")


def report_status(
    event: ops.CollectStatusEvent, statuses: Iterable[ops.StatusBase], entity: ops.Unit | ops.Application
) -> None:
    """Add the most urgent of `statuses` (the first of equals) to a collect-status event.

    The status is logged once, when it differs from what `entity` shows now.
    """
    candidates = list(statuses)
    if not candidates:
        return
    status = min(candidates, key=lambda s: _PRIORITY.index(s.name) if s.name in _PRIORITY else len(_PRIORITY))
    if status != entity.status:
        logger.info("%s status: %s: %s", entity.name, status.name, status.message)
    event.add_status(status)


# ---------------------------------------------------------------- config and names


class ImageProblem(Enum):
    """Why a container cannot run Pulsar yet."""

    NO_PEBBLE = "no-pebble"
    NO_PULSAR = "no-pulsar"


class InvalidConfigError(Exception):
    """A config option has a value the charm cannot use; the message names the option."""

    def __init__(self, option: str, reason: str) -> None:
        self.option = option
        super().__init__(f"invalid config {option}: {reason}")


def check_size(option: str, value: object) -> str:
    """A JVM memory size such as 512m or 2g; raise InvalidConfigError naming the option."""
    if not _SIZE.match(str(value)):
        raise InvalidConfigError(option, f"{value!r} (a size such as 512m or 2g)")
    return str(value)


def cluster_domain(model_name: str, resolv_conf: str | None = None) -> str:
    """The cluster's DNS domain, read from a pod's resolv.conf (this pod's when not given).

    Kubernetes writes every pod a search list that starts with `<namespace>.svc.<domain>`
    (a Juju model is a namespace); `cluster.local` when the file says nothing usable.
    """
    if resolv_conf is None:
        try:
            resolv_conf = RESOLV_CONF.read_text()
        except OSError:
            return DEFAULT_CLUSTER_DOMAIN
    for line in resolv_conf.splitlines():
        fields = line.split()
        if not fields or fields[0] != "search":
            continue
        for entry in fields[1:]:
            namespace, _, domain = entry.rstrip(".").partition(".svc.")
            if namespace == model_name and domain:
                return domain
    return DEFAULT_CLUSTER_DOMAIN


def pod_fqdn(unit_name: str, model_name: str, domain: str | None = None) -> str:
    """The unit's stable DNS name on Kubernetes: <app>-<n>.<app>-endpoints.<model>.svc.<domain>.

    Without `domain`, the cluster domain is read from this pod's /etc/resolv.conf (the charm
    container shares the pod's DNS configuration with the workload).
    """
    app, number = unit_name.rsplit("/", 1)
    return f"{app}-{number}.{app}-endpoints.{model_name}.svc.{domain or cluster_domain(model_name)}"


def template_environment(templates: Path) -> jinja2.Environment:
    """The Jinja environment every charm renders its config files with, whole, from templates."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        autoescape=False,  # noqa: S701 - Java properties files, not HTML
    )


def jvm_environment(heap: str, direct_memory: str | None = None, jaas_conf: str | None = None) -> dict[str, str]:
    """Environment for a Pulsar JVM (bin/pulsar reads these through pulsar_env.sh and bkenv.sh).

    G1 instead of the image's default ZGC with pre-touched heaps: small heaps start faster
    and their memory use is what it looks like. `jaas_conf` is the file the JVM logs in to
    ZooKeeper and BookKeeper from (its path only: the passwords stay in the file).
    """
    memory = f"-Xms{heap} -Xmx{heap}"
    if direct_memory:
        memory += f" -XX:MaxDirectMemorySize={direct_memory}"
    environment = {
        "PULSAR_MEM": memory,
        "PULSAR_GC": "-XX:+UseG1GC -XX:+PerfDisableSharedMem",
        "PULSAR_LOG_DIR": f"{PULSAR_HOME}/logs",
        # Log to stdout, so that Pebble keeps the logs and `pebble logs` shows them.
        "PULSAR_LOG_APPENDER": "Console",
    }
    if jaas_conf:
        # Replaces pulsar_env.sh's default, so that goes first. ZooKeeper 3.9's FIPS mode (on
        # by default) refuses DIGEST-MD5, the SASL mechanism of the JAAS file's passwords.
        # bkenv.sh hands PULSAR_EXTRA_OPTS to a bookie too.
        login = f"-Djava.security.auth.login.config={jaas_conf} -Dzookeeper.fips-mode=false"
        environment["PULSAR_EXTRA_OPTS"] = f"{IMAGE_EXTRA_OPTS} {login}"
    return environment


def as_image_user(service: ops.pebble.ServiceDict) -> ops.pebble.ServiceDict:
    """`service`, run as the image's non-root user instead of Pebble's root."""
    return {**service, "user-id": IMAGE_UID, "group": IMAGE_GROUP}


def readiness_check(probe: dict[str, object]) -> ops.pebble.CheckDict:
    """A `ready` Pebble check that fails on its first probe while a JVM starts.

    Pebble counts a new check as up until it fails, and Juju only tells the charm about
    changes (check-failed, then check-recovered). A one-second period makes the first probe
    land before any Pulsar JVM listens, so each start is seen as failed then recovered:
    the charm hears the moment the service serves instead of waiting for update-status.
    A probe is a TCP connect or a GET of a static page; once a second costs nothing.
    """
    check: dict[str, object] = {"override": "replace", "level": "ready", "period": "1s", "threshold": 1}
    check.update(probe)
    return check  # type: ignore[return-value]


def http_ready(url: str, timeout: float = PROBE_TIMEOUT, context: ssl.SSLContext | None = None) -> bool:
    """Whether a GET of `url` answers 200 within `timeout` (a readiness endpoint).

    `context` verifies an HTTPS server (e.g. with the CA that signed its certificate).
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310 - our workload's URL
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


# ---------------------------------------------------------------- Pebble


class WorkloadCommandError(Exception):
    """A command run in the workload container failed; the message carries its stderr."""

    def __init__(self, argv: list[str], exit_code: int | None, output: str) -> None:
        self.argv = argv
        self.exit_code = exit_code
        self.output = output.strip()
        last = self.output.splitlines()[-1] if self.output else "no output"
        status = f"exited {exit_code}" if exit_code is not None else "did not finish"
        super().__init__(f"{' '.join(argv[:2])} {status}: {last}")


class PebbleWorkload:
    """A workload container of a Pulsar image, reached through Pebble.

    `files_owner` owns what `write` pushes unless a call says otherwise: None leaves Pebble's
    default (root); a charm whose services run as the image's user passes (IMAGE_UID, IMAGE_GID).
    """

    def __init__(self, container: ops.Container, files_owner: tuple[int, int] | None = None) -> None:
        self.container = container
        self.files_owner = files_owner

    def can_connect(self) -> bool:
        return self.container.can_connect()

    def check_image(self, unit: ops.Unit) -> ImageProblem | None:
        """None once the container is reachable and carries Pulsar (its version set on the unit)."""
        if not self.can_connect():
            return ImageProblem.NO_PEBBLE
        version = self.pulsar_version()
        if version is None:
            return ImageProblem.NO_PULSAR
        unit.set_workload_version(version)
        return None

    def run(
        self,
        argv: list[str],
        *,
        timeout: float = 60.0,
        environment: dict[str, str] | None = None,
        working_dir: str | None = None,
        user_id: int | None = None,
        group_id: int | None = None,
    ) -> str:
        """Run a one-off command to completion; return stdout or raise WorkloadCommandError."""
        try:
            process = self.container.exec(
                argv,
                timeout=timeout,
                environment=environment,
                working_dir=working_dir,
                user_id=user_id,
                group_id=group_id,
            )
            stdout, _ = process.wait_output()
        except ops.pebble.ExecError as error:
            output = error.stderr or error.stdout or ""
            raise WorkloadCommandError(argv, error.exit_code, str(output)) from error
        except ops.pebble.ChangeError as error:  # timed out, or could not start
            raise WorkloadCommandError(argv, None, error.err) from error
        except ops.pebble.APIError as error:  # e.g. the executable does not exist
            raise WorkloadCommandError(argv, None, error.message) from error
        return stdout

    def planned_services(self) -> dict[str, ops.pebble.ServiceDict]:
        """Each service of the current plan, as its definition."""
        return self.container.get_plan().to_dict().get("services", {})

    def apply_layer(self, name: str, layer: ops.pebble.LayerDict) -> bool:
        """Add the layer and replan, only if it changes the plan; return whether it did.

        Pebble restarts on replan exactly the running services whose definition changed
        (and starts the enabled ones that are not running).
        """
        wanted = ops.pebble.Layer(layer).to_dict()
        plan = self.container.get_plan().to_dict()
        if all(
            plan.get(kind, {}).get(key) == value
            for kind in ("services", "checks")
            for key, value in wanted.get(kind, {}).items()
        ):
            return False
        self.container.add_layer(name, layer, combine=True)
        self.container.replan()
        return True

    def restart(self, *services: str) -> None:
        self.container.restart(*services)

    def is_running(self, service: str) -> bool:
        services = self.container.get_services(service)
        return service in services and services[service].is_running()

    def running(self, services: Iterable[str]) -> set[str]:
        """The named services that Pebble runs now."""
        names = list(services)
        if not names:
            return set()
        return {name for name, info in self.container.get_services(*names).items() if info.is_running()}

    def write(
        self,
        path: str,
        content: str,
        permissions: int = 0o644,
        user_id: int | None = None,
        group_id: int | None = None,
    ) -> bool:
        """Push `content` to `path` if it differs from what is there; return whether it changed.

        `user_id`/`group_id` (default: `files_owner`) own the file, and the directories the
        push makes for it.
        """
        if user_id is None and group_id is None and self.files_owner is not None:
            user_id, group_id = self.files_owner
        if self.read_text(path) == content and self._owned_as(path, permissions, user_id, group_id):
            return False
        self.container.push(path, content, permissions=permissions, make_dirs=True, user_id=user_id, group_id=group_id)
        return True

    def _owned_as(self, path: str, permissions: int, user_id: int | None, group_id: int | None) -> bool:
        """Whether the file has these permissions and (where given) owner, as a push would leave it."""
        try:
            info = self.container.list_files(path, itself=True)[0]
        except (ops.pebble.APIError, IndexError):
            return False
        return info.permissions == permissions and user_id in (None, info.user_id) and group_id in (None, info.group_id)

    def own_directories(self, *paths: str) -> None:
        """Make each directory exist, owned (with everything in it) by the image's user.

        Juju storage is mounted owned by root, and a unit that ran its services as root
        before leaves root-owned files: `chown -R` runs only where the top is not owned yet.
        """
        for path in paths:
            try:
                info = self.container.list_files(path, itself=True)[0]
            except ops.pebble.APIError as error:
                if error.code != 404:  # anything but "no such file"
                    raise
                self.container.make_dir(path, make_parents=True, user_id=IMAGE_UID, group_id=IMAGE_GID)
                continue
            if (info.user_id, info.group_id) != (IMAGE_UID, IMAGE_GID):
                self.run(["chown", "-R", f"{IMAGE_UID}:{IMAGE_GID}", path])

    def read_text(self, path: str) -> str | None:
        """A file of the container, or None when it is missing."""
        try:
            return self.container.pull(path).read()
        except ops.pebble.PathError:
            return None

    def remove(self, path: str) -> None:
        """Remove a file of the container if it is there."""
        if self.container.exists(path):
            self.container.remove_path(path)

    def pulsar_version(self) -> str | None:
        """The Pulsar version of the image, read from its library jars (no JVM started)."""
        try:
            files = self.container.list_files(
                f"{PULSAR_HOME}/lib", pattern="org.apache.pulsar-pulsar-broker-common-*.jar"
            )
        except ops.pebble.APIError:
            return None
        for info in files:
            match = _VERSION_JAR.search(info.path)
            if match:
                return match.group("version")
        return None


# ---------------------------------------------------------------- typed databags


class InvalidDatabagError(ValueError):
    """A databag that does not decode or does not match its schema; the message says where."""


def read_databag(relation: ops.Relation, cls: type[T], entity: ops.Unit | ops.Application) -> T | None:
    """One databag as an instance of the dataclass `cls`; None when it holds none of its keys.

    Loaded with `Relation.load` (each value JSON-decoded), then checked against the
    annotations of `cls` (str, int, bool, float, lists, string-keyed dicts, optional values,
    nested dataclasses). Raises InvalidDatabagError naming the key and what is wrong.
    """
    aliases = {f.metadata.get("alias", f.name): f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    raw = relation.data[entity]
    present = [key for key in raw if key in aliases]
    if not present:
        return None
    for key in present:
        try:
            json.loads(raw[key])
        except ValueError as error:
            raise InvalidDatabagError(f"{entity.name}: key {key!r} is not JSON: {raw[key][:60]!r}") from error
    try:
        loaded = relation.load(cls, entity)
    except TypeError as error:  # a required key is missing
        raise InvalidDatabagError(f"{entity.name}: {error}") from error
    hints = typing.get_type_hints(cls)
    checked: dict[str, Any] = {}
    for alias, spec in aliases.items():
        try:
            checked[spec.name] = _validated(getattr(loaded, spec.name), hints[spec.name])
        except (TypeError, ValueError) as error:
            raise InvalidDatabagError(f"{entity.name}: key {alias!r}: {error}") from error
    return dataclasses.replace(loaded, **checked)  # type: ignore[type-var]


def write_databag(
    relation: ops.Relation, obj: object, entity: ops.Unit | ops.Application, erase: Iterable[str] = ()
) -> None:
    """Save a dataclass with `Relation.save`; an empty value (None, "", [], {}) erases its key.

    `erase` names keys outside the schema to remove as well (e.g. what an earlier revision
    of the charm wrote into a databag that it alone owns; see `unknown_keys`).
    """
    relation.save(obj, entity, encoder=_encode)
    if stale := [key for key in erase if key in relation.data[entity]]:
        relation.data[entity].update(dict.fromkeys(stale, ""))


def unknown_keys(relation: ops.Relation, cls: type, entity: ops.Unit | ops.Application) -> list[str]:
    """Keys of the databag that the dataclass `cls` does not describe."""
    known = {f.metadata.get("alias", f.name) for f in dataclasses.fields(cls)}
    return sorted(key for key in relation.data[entity] if key not in known)


class PeerData(Generic[AppT, UnitT]):
    """A peer relation's application and unit databags, typed, for one event.

    What a charm's state object builds once per event: `app_data` (the application databag)
    and `unit_data` (this unit's), instances of the two dataclasses, which the reconcile
    reads and changes in place; `save` then writes back only the databags that changed.

    Values are encoded as `read_databag` / `write_databag` do: each field under its `alias`
    (or its name), JSON-encoded; an empty value (None, "", [], {}) erases its key, and a
    missing key reads back as the field's default. Both dataclasses need a default for
    every field: before the relation exists, or while a databag is empty, the data is the
    defaults.

    A databag that does not decode sets `error` (the first one, logged once); the data is
    then left at what decoded so far, and `save` writes nothing, so that a bad databag is
    never overwritten with defaults. Another unit's databag (`unit_data_of`) is only read:
    a bad one is logged and reads as the defaults, so one unit cannot stop the others.
    `leftover_app_keys` are keys of the application databag the dataclass does not
    describe (what an earlier revision wrote); the leader's `save` erases them.
    """

    def __init__(
        self,
        relation: ops.Relation | None,
        app_cls: type[AppT],
        unit_cls: type[UnitT],
        app: ops.Application,
        unit: ops.Unit,
    ) -> None:
        self.relation = relation
        self._app, self._unit = app, unit
        self._unit_cls = unit_cls
        self._others: dict[str, UnitT] = {}
        app_data, unit_data, error = app_cls(), unit_cls(), None
        self.leftover_app_keys: list[str] = []
        if relation is not None:
            try:
                app_data = read_databag(relation, app_cls, app) or app_data
                unit_data = read_databag(relation, unit_cls, unit) or unit_data
            except InvalidDatabagError as invalid:
                logger.error("peer data does not decode: %s", invalid)
                error = str(invalid)
            self.leftover_app_keys = unknown_keys(relation, app_cls, app)
        # Never replaced, only changed in place: callers may keep references to them.
        self.app_data: Final[AppT] = app_data
        self.unit_data: Final[UnitT] = unit_data
        self.error: Final[str | None] = error
        # What the databags hold now: `save` compares against these, not the live bags.
        self._saved_app, self._saved_unit = copy.deepcopy(self.app_data), copy.deepcopy(self.unit_data)

    def unit_data_of(self, unit: ops.Unit) -> UnitT:
        """Any unit's data: this unit's `unit_data`, or another's databag, read once and cached."""
        if unit.name == self._unit.name:
            return self.unit_data
        if unit.name not in self._others:
            data = self._unit_cls()
            if self.relation is not None:
                try:
                    data = read_databag(self.relation, self._unit_cls, unit) or data
                except InvalidDatabagError as error:  # one bad unit does not stop the others
                    logger.warning("ignoring %s's peer data: %s", unit.name, error)
            self._others[unit.name] = data
        return self._others[unit.name]

    def save(self, leads: bool) -> None:
        """Write back what changed: this unit's databag, and the application's when `leads`.

        Nothing is written without the relation or after a decoding error. The leader's
        write of the application databag also erases `leftover_app_keys`.
        """
        if self.relation is None or self.error is not None:
            return
        if self.unit_data != self._saved_unit:
            write_databag(self.relation, self.unit_data, self._unit)
            self._saved_unit = copy.deepcopy(self.unit_data)
        if leads and (self.app_data != self._saved_app or self.leftover_app_keys):
            write_databag(self.relation, self.app_data, self._app, erase=self.leftover_app_keys)
            self._saved_app, self.leftover_app_keys = copy.deepcopy(self.app_data), []


def _encode(value: Any) -> str:
    if value is None or (isinstance(value, (str, list, dict)) and not value):
        return ""  # Juju erases a key set to the empty string; the field's default reads back
    return json.dumps(value, sort_keys=True)


def _validated(value: Any, annotation: Any) -> Any:
    """`value` checked against `annotation`; dicts become the dataclasses they are typed as."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            try:
                return _validated(value, option)
            except (TypeError, ValueError) as error:
                errors.append(str(error))
        raise ValueError(" or ".join(errors))
    if annotation is type(None):
        if value is not None:
            raise ValueError(f"expected null, got {value!r}")
        return value
    if annotation is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {value!r}")
        return [_validated(item, args[0]) for item in value] if args else value
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            raise ValueError(f"expected an object, got {value!r}")
        return {key: _validated(item, args[1]) for key, item in value.items()} if args else value
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"expected an object, got {value!r}")
        hints = typing.get_type_hints(annotation)
        names = {f.name for f in dataclasses.fields(annotation)}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        return annotation(**{key: _validated(item, hints[key]) for key, item in value.items()})
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(annotation, type) and not (isinstance(value, annotation) and not _is_bool_for_int(value, annotation)):
        raise ValueError(f"expected {annotation.__name__}, got {value!r}")
    return value


def _is_bool_for_int(value: Any, annotation: type) -> bool:
    return annotation is int and isinstance(value, bool)
