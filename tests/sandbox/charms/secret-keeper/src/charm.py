#!/usr/bin/env python3
"""Secret keeper: a sandbox test charm, without containers, that owns secrets which expire and rotate."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

import ops

logger = logging.getLogger(__name__)


class SecretKeeperCharm(ops.CharmBase):
    """Creates and changes secrets on demand; logs and answers the secret events Juju sends.

    Each secret event is logged as `got <event> <label> revision <n>`, for tests that read the
    unit's debug log.
    """

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        framework.observe(self.on.secret_expired, self._on_secret_expired)
        framework.observe(self.on.secret_rotate, self._on_secret_rotate)
        framework.observe(self.on.secret_remove, self._on_secret_remove)
        framework.observe(self.on.add_secret_action, self._on_add_secret)
        framework.observe(self.on.set_content_action, self._on_set_content)
        framework.observe(self.on.set_expiry_action, self._on_set_expiry)
        framework.observe(self.on.secret_info_action, self._on_secret_info)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)

    # ------------------------------------------------------------------ secret events

    def _on_secret_expired(self, event: ops.SecretExpiredEvent) -> None:
        logger.info("got secret-expired %s revision %d", event.secret.label, event.revision)
        answer = str(self.config["on-expired"])
        if answer == "new-revision":
            event.secret.set_content(_fresh_content())
        elif answer == "remove":
            event.secret.remove_all_revisions()

    def _on_secret_rotate(self, event: ops.SecretRotateEvent) -> None:
        logger.info("got secret-rotate %s", event.secret.label)
        if self.config["on-rotate"] == "new-revision":
            event.secret.set_content(_fresh_content())

    def _on_secret_remove(self, event: ops.SecretRemoveEvent) -> None:
        logger.info("got secret-remove %s revision %d", event.secret.label, event.revision)
        if not self.config["keep-old-revisions"]:
            event.remove_revision()

    # ------------------------------------------------------------------ actions

    def _on_add_secret(self, event: ops.ActionEvent) -> None:
        owner = self.app if event.params["owner"] == "app" else self.unit
        if owner is self.app and not self.unit.is_leader():
            event.fail("only the leader creates the application's secrets")
            return
        rotate = str(event.params["rotate"])
        secret = owner.add_secret(
            _fresh_content(),
            label=str(event.params["label"]),
            expire=_expire_in(event.params["expire-in"]),
            rotate=ops.SecretRotate(rotate) if rotate else None,
        )
        event.set_results({"id": secret.id or ""})

    def _on_set_content(self, event: ops.ActionEvent) -> None:
        secret = self.model.get_secret(label=str(event.params["label"]))
        secret.set_content(_fresh_content())
        expire = _expire_in(event.params["expire-in"])
        if expire is not None:
            secret.set_info(expire=expire)

    def _on_set_expiry(self, event: ops.ActionEvent) -> None:
        expire = _expire_in(event.params["expire-in"])
        if expire is None:
            event.fail("expire-in must be more than 0")
            return
        self.model.get_secret(label=str(event.params["label"])).set_info(expire=expire)

    def _on_secret_info(self, event: ops.ActionEvent) -> None:
        info = self.model.get_secret(label=str(event.params["label"])).get_info()
        event.set_results(
            {
                "revision": str(info.revision),
                "expires": info.expires.isoformat() if info.expires else "",
                "rotation": info.rotation.value if info.rotation else "",
            }
        )

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        event.add_status(ops.ActiveStatus("keeping secrets"))


def _fresh_content() -> dict[str, str]:
    return {"value": secrets.token_hex(8)}


def _expire_in(seconds: float) -> timedelta | None:
    return timedelta(seconds=float(seconds)) if float(seconds) > 0 else None


if __name__ == "__main__":  # pragma: nocover
    ops.main(SecretKeeperCharm)
