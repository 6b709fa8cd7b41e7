"""The cdc container: its files, the Pebble layer of the source and the function, and health.

Both run as `bin/function-localrunner` (one JVM each: `pulsar-admin ... localrun` would fork a
second JVM that outlives a stop and keeps holding the replication slot), as the image's
non-root user, with `--exitOnError` so a failed instance exits and Pebble restarts it.

The source logs through its own log4j2 config (`PULSAR_LOG_CONF`: the Pulsar scripts put its
directory on the classpath and name the file in `-Dlog4j.configurationFile`): to the console,
and its ERROR lines to a small file, whose last line says why the connector fails.

The source's PostgreSQL password is `${PG_PASSWORD}` in its config, filled by Pulsar's
environment-based secrets provider. It is in neither the plan nor a command line: the charm
writes it to a 0600 file, and the service's shell reads it into `PG_PASSWORD`, exports it and
execs the runner (a shell that cannot read it exits rather than start the source without it).

When pulsar-k8s hands out TLS URLs, both runners trust its CA (a file, `--tlsTrustCertFilePath`)
and check each broker's name (`--tlsHostNameVerificationEnabled`). LocalRunner builds the
source's Java client from these flags (the Debezium source keeps its offsets through that same
client), and hands them to the Python function's instance as its own (`--use_tls`,
`--tls_trust_cert_path`, `--hostname_verification_enabled`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
from pathlib import Path

import ops

from charms.pulsar_k8s.v0.pulsar_workload import (
    IMAGE_GID,
    IMAGE_GROUP,
    IMAGE_UID,
    PULSAR_HOME,
    PebbleWorkload,
    WorkloadCommandError,
    readiness_check,
    template_environment,
)
from literals import (
    CA_FILE,
    CDC_DIR,
    CONNECTORS_DIR,
    FUNCTION_CONFIG,
    FUNCTION_METRICS_PORT,
    FUNCTION_MODULE,
    FUNCTION_SERVICE,
    PASSWORD_FILE,
    SOURCE_CONFIG,
    SOURCE_ERRORS,
    SOURCE_ERRORS_MAX,
    SOURCE_LOG_CONFIG,
    SOURCE_METRICS_PORT,
    SOURCE_SERVICE,
    TOKEN_FILE,
)
from managers.connector import last_error
from managers.postgres import PostgresConnection

logger = logging.getLogger(__name__)

CHARM_DIR = Path(__file__).parent.parent
TEMPLATES = CHARM_DIR / "templates"
BUILTIN_ENRICHMENT = CHARM_DIR / "src" / "enrichment" / "builtin.py"
CONNECTOR_PATTERN = "pulsar-io-debezium-postgres-*.nar"
TOKEN_AUTH = "org.apache.pulsar.client.impl.auth.AuthenticationToken"  # noqa: S105 - a class name
ENV_SECRETS = "org.apache.pulsar.functions.secretsprovider.EnvironmentBasedSecretsProvider"
PASSWORD_VARIABLE = "PG_PASSWORD"  # noqa: S105 - a name: `${PG_PASSWORD}` in the source config
SOURCE_CHECK = "source-ready"
FUNCTION_CHECK = "function-ready"
READY_CHECKS = {SOURCE_SERVICE: SOURCE_CHECK, FUNCTION_SERVICE: FUNCTION_CHECK}
JVM_MEMORY = "-Xms128m -Xmx256m -XX:MaxDirectMemorySize=128m"
CANDIDATE_MODULE = f"{CDC_DIR}/function/candidate.py"
# Loads a module file and checks it has `Enrichment.process`; its last stderr line says what is wrong.
CHECK_MODULE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("candidate", sys.argv[1])
module = importlib.util.module_from_spec(spec)
try:
    spec.loader.exec_module(module)
except BaseException as error:
    sys.exit(f"it does not import: {type(error).__name__}: {error}")
if not callable(getattr(getattr(module, "Enrichment", None), "process", None)):
    sys.exit("it defines no class Enrichment with a process(self, input, context) method")
"""


class CdcWorkload(PebbleWorkload):
    """The Debezium source and the enrichment function, each a function-localrunner service."""

    def __init__(self, container: ops.Container) -> None:
        super().__init__(container)
        self._templates = template_environment(TEMPLATES)

    def connector_archive(self) -> str | None:
        """The image's Debezium PostgreSQL connector (a NAR), or None if the image has none."""
        try:
            found = self.container.list_files(CONNECTORS_DIR, pattern=CONNECTOR_PATTERN)
        except ops.pebble.APIError:
            return None
        return sorted(info.path for info in found)[-1] if found else None

    def write_private(self, path: str, content: str) -> bool:
        """A file only the workload user reads (0600): the token, the CAs."""
        return self._push(path, content, 0o600)

    def write_private_or_remove(self, path: str, content: str | None) -> str | None:
        """Write `content` to a private file, or remove the file when there is none (or it is empty).

        Returns the path when the file is written, else None: a file left from an earlier
        config (a CA once TLS is off) must not linger, nor be named to a runner.
        """
        if not content:
            self.remove(path)
            return None
        self.write_private(path, content)
        return path

    def _push(self, path: str, content: str, permissions: int) -> bool:
        """A file the workload user owns, as do the directories made for it."""
        return self.write(path, content, permissions, user_id=IMAGE_UID, group_id=IMAGE_GID)

    def render_configs(self, source: dict[str, object], function: dict[str, object], module: str) -> None:
        self._push(SOURCE_CONFIG, self._templates.get_template("source.json.j2").render(**source), 0o644)
        log_config = self._templates.get_template("source-log4j2.yaml.j2")
        self._push(SOURCE_LOG_CONFIG, log_config.render(errors_file=SOURCE_ERRORS, max_size=SOURCE_ERRORS_MAX), 0o644)
        self._push(FUNCTION_CONFIG, self._templates.get_template("function.json.j2").render(**function), 0o644)
        self._push(FUNCTION_MODULE, module, 0o644)

    @staticmethod
    def builtin_enrichment() -> str:
        return BUILTIN_ENRICHMENT.read_text()

    def check_enrichment(self, module: str) -> str | None:
        """Import a candidate function module in the workload's Python, as the workload user.

        Returns why it cannot serve (it does not import, or has no `Enrichment.process`), or None.
        """
        self._push(CANDIDATE_MODULE, module, 0o644)
        try:
            self.run(
                ["python3", "-c", CHECK_MODULE, CANDIDATE_MODULE],
                timeout=60,
                user_id=IMAGE_UID,
                group_id=IMAGE_GID,
            )
        except WorkloadCommandError as error:
            return error.output.strip().splitlines()[-1] if error.output.strip() else str(error)
        finally:
            self.remove(CANDIDATE_MODULE)
        return None

    def layer(self, service_url: str, pulsar_ca: str | None) -> ops.pebble.LayerDict:
        """Both services. Each carries a digest of its config files, so a change restarts it on replan.

        The source's digest covers its password file: a rotated password restarts it.

        `pulsar_ca`: the file of the CA to verify the brokers with, when `service_url` is a
        `pulsar+ssl://` one; None for plaintext.
        """
        # LocalRunner's TLS flags take a value each (`--useTls true`); `--tlsAllowInsecureConnection`
        # stays at its default, false.
        tls = (
            ["--useTls", "true", "--tlsTrustCertFilePath", pulsar_ca, "--tlsHostNameVerificationEnabled", "true"]
            if pulsar_ca
            else []
        )
        common = [
            "--brokerServiceUrl",
            service_url,
            "--clientAuthPlugin",
            TOKEN_AUTH,
            "--clientAuthParams",
            f"file://{TOKEN_FILE}",
            *tls,
            "--exitOnError",
        ]
        # The Pulsar CA counts only with TLS, and last: a plaintext function keeps the digest it
        # had, so upgrading the charm does not restart it.
        pulsar_ca_files = (pulsar_ca,) if pulsar_ca else ()
        source = self._service(
            SOURCE_CONFIG,
            "--sourceConfig",
            [*common, "--secretsProviderClassName", ENV_SECRETS, "--metricsPortStart", str(SOURCE_METRICS_PORT)],
            {
                "PULSAR_LOG_CONF": SOURCE_LOG_CONFIG,
                "CDC_CONFIG_DIGEST": self._digest(
                    SOURCE_CONFIG, SOURCE_LOG_CONFIG, TOKEN_FILE, CA_FILE, PASSWORD_FILE, *pulsar_ca_files
                ),
            },
            "Debezium PostgreSQL source",
            # For the environment-based secrets provider; a plan value would show to any reader of the plan.
            exports={PASSWORD_VARIABLE: PASSWORD_FILE},
        )
        function = self._service(
            FUNCTION_CONFIG,
            "--functionConfig",
            [*common, "--metricsPortStart", str(FUNCTION_METRICS_PORT)],
            {"CDC_CONFIG_DIGEST": self._digest(FUNCTION_CONFIG, FUNCTION_MODULE, TOKEN_FILE, *pulsar_ca_files)},
            "enrichment function",
        )
        return {
            "summary": "change data capture: Debezium source and enrichment function",
            "services": {SOURCE_SERVICE: source, FUNCTION_SERVICE: function},
            # Each runner serves its metrics once its instance runs: the charm hears it start.
            "checks": {
                SOURCE_CHECK: readiness_check({"tcp": {"port": SOURCE_METRICS_PORT}}),
                FUNCTION_CHECK: readiness_check({"tcp": {"port": FUNCTION_METRICS_PORT}}),
            },
        }

    def serving(self) -> set[str]:
        """The services whose runner answers: their ready check is up (down once they stop or restart)."""
        checks = self.container.get_checks(SOURCE_CHECK, FUNCTION_CHECK)
        up = {name for name, check in checks.items() if check.status == ops.pebble.CheckStatus.UP}
        return {service for service, check in READY_CHECKS.items() if check in up}

    def source_error(self) -> str | None:
        """The source's last error line (time left out), or None if it logged none."""
        log = self.read_text(SOURCE_ERRORS)
        return last_error(log) if log is not None else None

    def forget_source_errors(self) -> None:
        """Remove the source's error log (and its rolled-over part)."""
        self.remove(SOURCE_ERRORS)
        self.remove(f"{SOURCE_ERRORS}.1")

    def changes(self, layer: ops.pebble.LayerDict, service: str) -> bool:
        """Whether applying `layer` changes the service's definition (Pebble then restarts it)."""
        wanted = ops.pebble.Layer(layer).to_dict().get("services", {}).get(service)
        return self.planned_services().get(service) != wanted

    def in_state(self, services: list[str], *states: ops.pebble.ServiceStatus) -> set[str]:
        """The named planned services Pebble has in one of `states`.

        `inactive`: stopped (or never started); `error`: Pebble gave up on it. A service Pebble
        is about to restart after a failure is in neither (`backoff`).
        """
        return {name for name, info in self.container.get_services(*services).items() if info.current in states}

    def start(self, services: set[str]) -> None:
        if services:
            self.container.start(*sorted(services))

    def _service(
        self,
        config_file: str,
        flag: str,
        args: list[str],
        environment: dict[str, str],
        summary: str,
        exports: dict[str, str] | None = None,
    ) -> ops.pebble.ServiceDict:
        """A runner's service; `exports` maps an environment variable to the private file it is read from.

        The shell reads each such file into its variable and exports it: the value reaches the
        runner's environment, and neither the plan nor a command line (the shell's holds the
        script, the runner's its options). The assignment is a command of its own, so a file it
        cannot read ends the shell (`|| exit 1`) instead of starting the runner with an empty value.
        """
        exported = "".join(
            f'{name}="$(cat {shlex.quote(path)})" || exit 1; export {name}; ' for name, path in (exports or {}).items()
        )
        # The config is JSON on the command line (LocalRunner takes no config file); the shell reads it
        # from the rendered file so the plan stays readable. It carries no secret.
        runner = shlex.join([f"{PULSAR_HOME}/bin/function-localrunner", flag])
        command = f'{exported}exec {runner} "$(cat {shlex.quote(config_file)})" {shlex.join(args)}'
        return {
            "override": "replace",
            "summary": summary,
            "command": shlex.join(["/bin/sh", "-c", command]),
            "startup": "enabled",
            "user-id": IMAGE_UID,
            "group": IMAGE_GROUP,
            "working-dir": CDC_DIR,
            "environment": {"PULSAR_MEM": JVM_MEMORY, **environment},
            "kill-delay": "20s",  # the source commits its offsets and releases the slot on SIGTERM
        }

    def _digest(self, *paths: str) -> str:
        digest = hashlib.sha256()
        for path in paths:
            content = self.read_text(path)
            digest.update(content.encode() if content is not None else b"-")
        return digest.hexdigest()[:16]

    def last_source(self) -> tuple[PostgresConnection, str, str] | None:
        """The database the pipeline last ran against, its slot and publication (None if it never ran).

        Read back from what the pipeline runs with: the rendered source config and the password
        file (or, for a source planned by an earlier revision of the charm, before any event
        rendered the file, the password in its service's environment).
        """
        try:
            config = json.loads(self.container.pull(SOURCE_CONFIG).read())["configs"]
            password = self.read_text(PASSWORD_FILE)
            if password is None:
                service = self.planned_services().get(SOURCE_SERVICE, {})
                password = service.get("environment", {})[PASSWORD_VARIABLE]
            database = PostgresConnection(
                host=config["database.hostname"],
                port=int(config["database.port"]),
                database=config["database.dbname"],
                user=config["database.user"],
                password=password,
                tls=config.get("database.sslmode", "disable") != "disable",
                tls_ca=self.read_text(CA_FILE),
            )
            return database, config["slot.name"], config["publication.name"]
        except (ops.pebble.PathError, KeyError, ValueError, TypeError):
            return None

    def forget_source(self) -> None:
        """After a teardown: no pipeline to restart, no source to tear down again, no password kept."""
        self.remove(SOURCE_CONFIG)
        self.remove(CA_FILE)
        self.remove(PASSWORD_FILE)

    def stop_pipeline(self) -> set[str]:
        """Stop both services (if running); return the ones it stopped."""
        return self.stop([SOURCE_SERVICE, FUNCTION_SERVICE])

    def stop(self, services: list[str]) -> set[str]:
        """Stop the named services that run; return the ones it stopped."""
        running = self.running(services)
        if running:
            self.container.stop(*sorted(running))
        return running
