"""Which load test runs, and in which phase: the leader's decisions, as pure functions.

No ops here. A test goes through these phases, which the leader alone writes (the peer
application databag holds the current `LoadTestPlan`):

- `preparing`: accepted; its topic is asked of pulsar-k8s (created partitioned by the provider)
- `running`: the topic is ready; every unit of the plan starts its workers once
- `stopping`: someone ran `stop-load-test`; every unit stops its workers (results kept, marked stopped)
- `finished` / `stopped` / `failed`: every unit of the plan reported a final state (or left)

Any unit may start or stop a test: the leader starts one directly, another unit leaves a
request in its own peer databag that the leader adopts. The units taking part, their order
(hence the rate shares and device slices) and the spec are fixed when the test is accepted, so
a unit added or removed during a test changes the next test only.
"""

from __future__ import annotations

import enum
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class Phase(enum.StrEnum):
    PREPARING = "preparing"
    RUNNING = "running"
    STOPPING = "stopping"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"


ACTIVE = frozenset({Phase.PREPARING, Phase.RUNNING, Phase.STOPPING})
HISTORY_LENGTH = 20  # test ids the leader remembers, newest last
# A plan whose units have not all reported this long after its scheduled end is closed: a unit
# that vanished without leaving the relation (its pod gone for good) must not block the next test.
REPORT_GRACE_S = 300


@dataclass
class LoadTestPlan:
    """The current (or last) test, as the leader publishes it in the peer application databag.

    - `id`: the test id, e.g. `20261130-031500-ab12` (UTC start, then random hex)
    - `params`: the validated `start-load-test` params (`LoadTestSpec.to_params()`)
    - `units`: the units taking part, in unit-number order (fixes rate shares and device slices)
    - `phase`: one of `Phase`
    - `requested_by`: the unit the action ran on
    - `accepted_ms`, `started_ms`: epoch ms when accepted and when it went running (0 before)
    - `budget_s`: how long the workers run at most (warm-up, rate search, duration)

    Nested in a databag value, its keys are these field names (ops saves nested dataclasses
    with `dataclasses.asdict`); the same holds for `StartRequest` and `UnitReport`.
    - `error`: why a test failed before running (e.g. the topic could not be made)
    """

    id: str
    params: dict[str, Any]
    units: list[str]
    phase: str
    requested_by: str = ""
    accepted_ms: int = 0
    started_ms: int = 0
    budget_s: int = 0
    error: str = ""

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE


@dataclass
class StartRequest:
    """A non-leader unit's `start-load-test`, waiting for the leader to accept it."""

    id: str
    params: dict[str, Any]
    units: list[str]
    budget_s: int = 0
    requested_ms: int = 0


@dataclass
class UnitReport:
    """What one unit says about its part in a test (its peer unit databag's `report`).

    - `state`: `running`, then `finished`, `stopped` or `failed`
    - `test_id`: the test it is about
    - `result`: the unit's `UnitResult` as JSON, once final
    """

    test_id: str
    state: str
    result: str = ""

    @property
    def final(self) -> bool:
        return self.state in {Phase.FINISHED, Phase.STOPPED, Phase.FAILED}


def new_test_id(now: float | None = None) -> str:
    """`YYYYmmdd-HHMMSS-xxxx`: sortable by start time, unique across units starting at once."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(2)}"


def refusal(plan: LoadTestPlan | None) -> str | None:
    """Why a new test cannot start now, or None."""
    if plan is not None and plan.active:
        return f"load test {plan.id} is {plan.phase}: stop it first with stop-load-test"
    return None


def adopt(
    plan: LoadTestPlan | None, requests: Mapping[str, StartRequest], history: list[str], now_ms: int
) -> LoadTestPlan | None:
    """Leader: the oldest pending start request becomes the plan, when no test is active."""
    if refusal(plan) is not None:
        return None
    done = set(history) | ({plan.id} if plan else set())
    pending = sorted(
        ((unit, request) for unit, request in requests.items() if request.id not in done),
        key=lambda item: (item[1].requested_ms, item[1].id),
    )
    if not pending:
        return None
    unit, request = pending[0]
    return LoadTestPlan(
        id=request.id,
        params=request.params,
        units=request.units,
        phase=Phase.PREPARING,
        requested_by=unit,
        accepted_ms=now_ms,
        budget_s=request.budget_s,
    )


def advance(
    plan: LoadTestPlan,
    *,
    topic_ready: bool,
    topic_error: str | None,
    stop_requested: bool,
    reports: Mapping[str, UnitReport | None],
    present_units: set[str],
    now_ms: int,
) -> LoadTestPlan:
    """Leader: the plan's next phase from what the units and pulsar-k8s say (same plan if none)."""
    phase = Phase(plan.phase)
    if phase is Phase.PREPARING:
        if stop_requested:
            return _with(plan, phase=Phase.STOPPED, error="stopped before it started")
        if topic_error:
            return _with(plan, phase=Phase.FAILED, error=f"the topic could not be prepared: {topic_error}")
        if topic_ready:
            return _with(plan, phase=Phase.RUNNING, started_ms=now_ms)
        return plan
    if phase not in ACTIVE:
        return plan
    if phase is Phase.RUNNING and stop_requested:
        plan = _with(plan, phase=Phase.STOPPING)
    overdue = now_ms > plan.started_ms + (plan.budget_s + REPORT_GRACE_S) * 1000
    finals = {
        unit: report.state
        for unit, report in reports.items()
        if report is not None and report.test_id == plan.id and report.final
    }
    waiting = [u for u in plan.units if u in present_units and u not in finals]
    if waiting and not overdue:
        return plan
    states = set(finals.values())
    if Phase(plan.phase) is Phase.STOPPING or Phase.STOPPED in states:
        return _with(plan, phase=Phase.STOPPED)
    if states and states <= {Phase.FAILED}:
        return _with(plan, phase=Phase.FAILED, error="every unit's workers failed")
    if not states:
        return _with(plan, phase=Phase.FAILED, error="no unit reported a result")
    return _with(plan, phase=Phase.FINISHED)


def remember(history: list[str], test_id: str) -> list[str]:
    """The history with `test_id` last, at most HISTORY_LENGTH long."""
    return [*(t for t in history if t != test_id), test_id][-HISTORY_LENGTH:]


def _with(plan: LoadTestPlan, **changes: Any) -> LoadTestPlan:
    return LoadTestPlan(**{**plan.__dict__, **changes})
