"""loadgen-k8s: actions answer clearly even before load generation exists."""

from __future__ import annotations

import pytest
from ops import testing

from loadgen_k8s.charm import LoadgenCharm


@pytest.mark.parametrize("action", ["start-load-test", "stop-load-test", "get-results"])
def test_actions_fail_with_a_message(action: str) -> None:
    # Given a load generator unit
    ctx = testing.Context(LoadgenCharm)

    # When the user runs an action this revision does not provide yet
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action(action), testing.State())

    # Then the action fails with a message that names it
    assert failed.value.message == f"{action.replace('-', '_')} is not available in this revision"
