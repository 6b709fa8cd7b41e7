"""The bookie container: the Pebble layer, bookkeeper.conf, readiness."""

from __future__ import annotations

import ops

from charms.pulsar_k8s.v0.pulsar_workload import (
    IMAGE_GID,
    IMAGE_UID,
    PebbleWorkload,
    as_image_user,
    http_ready,
    jvm_environment,
    readiness_check,
)
from literals import BOOKIE_HTTP_PORT, COOKIE_FILES, JAAS_CONF, JOURNAL_DIR, LEDGERS_DIR, PULSAR_HOME, SERVICE

LAYER = "bookie"
# The heap of a one-off BookKeeper shell command.
SHELL_HEAP = "256m"
READY_PATH = "/api/v1/bookie/is_ready"
READY_URL = f"http://localhost:{BOOKIE_HTTP_PORT}{READY_PATH}"
# Fails only when the bookie's state says it is shutting down (no answer yet: starting).
SHUT_DOWN_PROBE = (
    f"bash -c 'exec 3<>/dev/tcp/localhost/{BOOKIE_HTTP_PORT} || exit 0; "
    'printf "GET /api/v1/bookie/state HTTP/1.0\\r\\n\\r\\n" >&3; '
    '! grep -Eq "shuttingDown\\" *: *true" <&3\''
)


class BookieWorkload(PebbleWorkload):
    """A BookKeeper bookie run from the Pulsar distribution at /pulsar.

    The bookie runs as the image's non-root user, which owns its config and its storage.
    """

    def __init__(self, container: ops.Container) -> None:
        super().__init__(container, files_owner=(IMAGE_UID, IMAGE_GID))

    def layer(self, heap: str, direct_memory: str) -> ops.pebble.LayerDict:
        return {
            "summary": "Apache BookKeeper bookie",
            "services": {
                SERVICE: as_image_user(
                    {
                        "override": "replace",
                        "summary": "BookKeeper bookie with autorecovery",
                        "command": f"{PULSAR_HOME}/bin/pulsar bookie",
                        "startup": "enabled",
                        "environment": jvm_environment(heap, direct_memory, jaas_conf=JAAS_CONF),
                        "on-check-failure": {"bookie-alive": "restart"},
                    }
                )
            },
            "checks": {
                "bookie-ready": readiness_check({"http": {"url": READY_URL}}),
                # A bookie that shut itself down (its ZooKeeper session expired while the
                # ensemble changed) can leave the JVM running with the bookie stopped;
                # Pebble restarts it. A bookie still starting passes.
                "bookie-alive": {
                    "override": "replace",
                    "level": "alive",
                    "period": "10s",
                    "threshold": 3,
                    "exec": {"command": SHUT_DOWN_PROBE},
                },
            },
        }

    def ready(self) -> bool:
        """Whether the unit's bookie says it is ready (the charm shares the pod's network)."""
        return http_ready(READY_URL)

    def holds_data(self) -> bool:
        """Whether the bookie has registered with the cluster from this storage (its cookie is there)."""
        return any(self.container.exists(path) for path in COOKIE_FILES)

    def stop_bookie(self) -> None:
        if self.is_running(SERVICE):
            self.container.stop(SERVICE)

    def recover_ledgers(self, bookie_id: str, timeout: float) -> None:
        """Copy every ledger fragment a stopped bookie held onto a bookie outside the fragment's ensemble.

        BookKeeper's `recover` replaces only this bookie in each fragment, reading the entries
        from the fragment's other bookies. The autorecovery workers alone cannot always do it:
        they replace every bookie of a fragment found missing an entry, and a bookie that was
        killed or frozen while the fragment was written misses the entries acknowledged
        without it (ack quorum below write quorum). Such a fragment needs two new bookies;
        with one bookie to spare, its ledger never leaves this one. The ledger an open
        fragment on this bookie belongs to is closed first (the broker writing it opens a new
        one), as autorecovery does. Raises WorkloadCommandError (its stderr) on failure or timeout.
        """
        self._shell(["recover", "-force", bookie_id], timeout)

    def decommission(self, bookie_id: str, timeout: float) -> None:
        """BookKeeper's decommission of a stopped bookie: it returns once no ledger counts on it.

        It has the auditor check the bookies, waits until no ledger's ensemble holds the bookie
        (after `recover_ledgers`, at once), then its cookie leaves the metadata store. Raises
        WorkloadCommandError (its stderr) when it fails or times out.
        """
        self._shell(["decommissionbookie", "-bookieid", bookie_id], timeout)

    def _shell(self, arguments: list[str], timeout: float) -> None:
        """A `bookkeeper shell` command as the image user, logging in from the bookie's JAAS file."""
        self.run(
            [f"{PULSAR_HOME}/bin/bookkeeper", "shell", *arguments],
            timeout=timeout,
            environment=jvm_environment(SHELL_HEAP, jaas_conf=JAAS_CONF),
            user_id=IMAGE_UID,
            group_id=IMAGE_GID,
        )

    def wipe_data(self) -> None:
        """Empty the journal and ledger volumes (kept as mounted): a bookie of the same name later starts anew."""
        for directory in (JOURNAL_DIR, LEDGERS_DIR):
            for entry in self.container.list_files(directory):
                if entry.name != "lost+found":  # the file system's own
                    self.container.remove_path(entry.path, recursive=True)
