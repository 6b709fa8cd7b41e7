"""The leader's decisions on load tests: which test runs and when it moves on."""

from __future__ import annotations

from loadgen_k8s.managers.coordinator import (
    HISTORY_LENGTH,
    REPORT_GRACE_S,
    LoadTestPlan,
    Phase,
    StartRequest,
    UnitReport,
    adopt,
    advance,
    new_test_id,
    refusal,
    remember,
)

UNITS = ["lg/0", "lg/1", "lg/2"]


def _plan(phase: Phase, **changes: object) -> LoadTestPlan:
    fields: dict = {"id": "t1", "params": {}, "units": UNITS, "phase": phase, "started_ms": 1000, "budget_s": 30}
    return LoadTestPlan(**{**fields, **changes})


def _advance(plan: LoadTestPlan, **changes: object) -> LoadTestPlan:
    kwargs: dict = {
        "topic_ready": True,
        "topic_error": None,
        "stop_requested": False,
        "reports": {},
        "present_units": set(UNITS),
        "now_ms": 2000,
    }
    return advance(plan, **{**kwargs, **changes})


def test_a_test_id_sorts_by_time_and_differs_between_units_starting_together() -> None:
    first, second = new_test_id(0), new_test_id(0)
    assert first.startswith("19700101-000000-")
    assert len(first) == len("19700101-000000-abcd")
    assert new_test_id(86400) > first
    assert len({new_test_id(0) for _ in range(50)}) > 1 or first != second


def test_an_active_test_refuses_another() -> None:
    for phase in (Phase.PREPARING, Phase.RUNNING, Phase.STOPPING):
        assert refusal(_plan(phase)) == f"load test t1 is {phase}: stop it first with stop-load-test"
    for phase in (Phase.FINISHED, Phase.STOPPED, Phase.FAILED):
        assert refusal(_plan(phase)) is None
    assert refusal(None) is None


def test_the_oldest_pending_request_is_adopted_once() -> None:
    # Given two units asking at once, one of them already served earlier
    requests = {
        "lg/1": StartRequest("t2", {"rate": "5"}, UNITS, 30, requested_ms=20),
        "lg/2": StartRequest("t3", {"rate": "7"}, UNITS, 30, requested_ms=10),
        "lg/0": StartRequest("t1", {}, UNITS, 30, requested_ms=1),
    }
    # When the leader looks with t1 done
    plan = adopt(None, requests, ["t1"], now_ms=99)
    # Then the oldest pending one runs, preparing, with its units fixed
    assert plan == LoadTestPlan("t3", {"rate": "7"}, UNITS, Phase.PREPARING, "lg/2", 99, 0, 30)
    # and nothing is adopted while it is active
    assert adopt(plan, requests, ["t1"], now_ms=100) is None


def test_preparing_runs_once_the_topic_is_ready() -> None:
    plan = _plan(Phase.PREPARING, started_ms=0)
    assert _advance(plan, topic_ready=False) == plan
    running = _advance(plan, now_ms=5000)
    assert running.phase == Phase.RUNNING
    assert running.started_ms == 5000
    failed = _advance(plan, topic_ready=False, topic_error="exists without partitions")
    assert failed.phase == Phase.FAILED
    assert "exists without partitions" in failed.error
    assert _advance(plan, stop_requested=True).phase == Phase.STOPPED


def test_a_running_test_finishes_when_every_present_unit_reported() -> None:
    plan = _plan(Phase.RUNNING)
    done = {u: UnitReport("t1", "finished") for u in UNITS[:2]}
    # one unit still running
    assert _advance(plan, reports={**done, "lg/2": UnitReport("t1", "running")}) == plan
    # a report of another test does not count
    assert _advance(plan, reports={**done, "lg/2": UnitReport("t0", "finished")}) == plan
    # the last one reports
    assert _advance(plan, reports={**done, "lg/2": UnitReport("t1", "finished")}).phase == Phase.FINISHED
    # or leaves the application
    assert _advance(plan, reports=done, present_units={"lg/0", "lg/1"}).phase == Phase.FINISHED


def test_a_stop_request_stops_and_the_result_is_marked_stopped() -> None:
    plan = _plan(Phase.RUNNING)
    stopping = _advance(plan, stop_requested=True)
    assert stopping.phase == Phase.STOPPING
    reports = {u: UnitReport("t1", "stopped") for u in UNITS}
    assert _advance(stopping, reports=reports).phase == Phase.STOPPED


def test_failures_and_silence() -> None:
    plan = _plan(Phase.RUNNING)
    failed = _advance(plan, reports={u: UnitReport("t1", "failed") for u in UNITS})
    assert failed.phase == Phase.FAILED
    assert failed.error == "every unit's workers failed"
    # a unit that never reports does not block the next test forever
    overdue = 1000 + (30 + REPORT_GRACE_S) * 1000 + 1
    late = _advance(plan, reports={"lg/0": UnitReport("t1", "finished")}, now_ms=overdue)
    assert late.phase == Phase.FINISHED
    assert _advance(plan, now_ms=overdue).phase == Phase.FAILED


def test_history_keeps_the_last_tests_newest_last() -> None:
    history: list[str] = []
    for number in range(HISTORY_LENGTH + 3):
        history = remember(history, f"t{number}")
    assert len(history) == HISTORY_LENGTH
    assert history[-1] == f"t{HISTORY_LENGTH + 2}"
    assert remember(["a", "b"], "a") == ["b", "a"]
