"""Load tests across the application: the reconcile every event runs, and the three actions.

The leader decides which test runs and its phase (managers/coordinator.py); every unit starts,
stops and collects its own workers (managers/workers.py) and writes the application's result
files into its storage once every unit of the test has reported. Nothing here waits for load:
workers are Pebble services, and the engine raises a Pebble notice when one is done.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import ops

from charms.pulsar_k8s.v0.pulsar import Connection, InvalidRequestError, PulsarRequirer, RequestNotWritableError
from literals import CA_FILE, TOKEN_FILE, Status
from managers import coordinator, report
from managers.coordinator import LoadTestPlan, Phase, StartRequest, UnitReport
from managers.perf import PERF_NOTES, perf_result, read_perf_summary
from managers.results import OmbMeta, UnitResult, combine_workers, merge, omb_json
from managers.spec import Engine, InvalidParamsError, LoadTestSpec
from managers.workers import PERF_EXIT_KIND, budget_s, plan_workers
from state import LoadgenState
from workload import LoadgenWorkload, test_dir

logger = logging.getLogger(__name__)

FOLLOW_PERIOD_S = 5  # load-test-results follow=true: a progress line this often
FOLLOW_GRACE_S = 60  # ... and never longer than the test's budget and this


class ActionError(Exception):
    """An action refused with a message for the user."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _last_file(engine: str | None) -> str:
    """The file a worker of this engine writes last, once it has ended."""
    return PERF_EXIT_KIND if engine == Engine.PULSAR_PERF else "result"


class LoadTests:
    """One event's work on load tests, over one state snapshot."""

    def __init__(self, unit: ops.Unit, workload: LoadgenWorkload, pulsar: PulsarRequirer, state: LoadgenState) -> None:
        self.unit = unit
        self.workload = workload
        self.pulsar = pulsar
        self.state = state
        self.statuses: list[ops.StatusBase] = []  # what the last reconcile found

    # ------------------------------------------------------------ the reconcile

    def reconcile(self, connection: Connection | None) -> None:
        """Leader's decisions, then this unit's workers; `statuses` says what it found."""
        if self.state.peers is None:
            self.statuses = [Status.NO_PEERS()]
            return
        if self.state.error is not None:
            self.statuses = [Status.PEER_DATA(reason=self.state.error)]
            return
        if connection is not None:
            self.workload.write_token(connection.token)
            # Rewritten like the token: a new CA reaches running workers through the same file.
            if connection.tls_ca:
                self.workload.write_ca(connection.tls_ca)
            else:
                self.workload.remove_ca()
            self.workload.install_engine()
        if self.state.leader:
            self._lead()
        self._own_part(connection)
        if self.state.leader:
            # The leader's own report, collected just now, may be the last one the test waited
            # for: no other event would tell the leader (a unit hears nothing of its own writes).
            self._lead()
        self.state.save()
        self._write_application_results(connection)
        self.statuses = [self._status(connection)]

    def _lead(self) -> None:
        data = self.state.app_data
        if adopted := coordinator.adopt(data.test, self.state.start_requests(), data.history, _now_ms()):
            logger.info("load test %s accepted from %s", adopted.id, adopted.requested_by)
            data.test = adopted
        plan = data.test
        if plan is None or not plan.active:
            return
        spec = LoadTestSpec.parse(plan.params)
        topic_error = self.pulsar.topic_errors().get(spec.topic)
        if plan.phase == Phase.PREPARING:
            try:
                self.pulsar.request_partitioned_topics({spec.topic: spec.partitions})
            except (InvalidRequestError, RequestNotWritableError) as error:
                topic_error = str(error)
        advanced = coordinator.advance(
            plan,
            topic_ready=self.pulsar.partitioned_topics().get(spec.topic) == spec.partitions,
            topic_error=topic_error,
            stop_requested=any(self.state.unit_data_of(u).stop_request == plan.id for u in self.state.units),
            reports=self.state.reports(),
            present_units=set(self.state.units),
            now_ms=_now_ms(),
        )
        if advanced.phase != plan.phase:
            logger.info("load test %s: %s -> %s %s", plan.id, plan.phase, advanced.phase, advanced.error)
            data.test = advanced
            if not advanced.active:
                data.history = coordinator.remember(data.history, advanced.id)

    def _own_part(self, connection: Connection | None) -> None:
        plan, mine = self.state.plan, self.state.unit_data
        if (
            mine.start_request
            and plan
            and (plan.id == mine.start_request.id or mine.start_request.id in self.state.app_data.history)
        ):
            mine.start_request = None  # the leader has it
        if mine.stop_request and (plan is None or plan.id != mine.stop_request or not plan.active):
            mine.stop_request = ""
        if plan is None or self.unit.name not in plan.units:
            return
        started = self.workload.started(plan.id)
        if plan.phase == Phase.RUNNING and not started and connection is not None:
            self._start(plan, connection)
            return
        if not started:
            return
        # A worker that left its last file is done, though its process may take a moment to exit
        # (the done notice comes right after that file): our engine's result, pulsar-perf's exit status.
        engines = self.workload.engines(plan.id)
        running = {
            w
            for w in self.workload.running_workers(started)
            if self.workload.worker_file(plan.id, w, _last_file(engines.get(w))) is None
        }
        if running and plan.phase in (Phase.STOPPING, Phase.STOPPED, Phase.FAILED):
            logger.info("stopping the workers of load test %s", plan.id)
            self.workload.stop_workers(started)
            running = set()
        report_now = mine.report if mine.report and mine.report.test_id == plan.id else None
        if not running and (report_now is None or not report_now.final):
            mine.report = self._collect(plan, started)

    def _start(self, plan: LoadTestPlan, connection: Connection) -> None:
        spec = LoadTestSpec.parse(plan.params)
        workers = plan_workers(
            spec,
            plan.id,
            plan.units,
            self.unit.name,
            connection.service_url,
            f"persistent://{connection.namespace}/{spec.topic}",
            test_dir(plan.id),
            TOKEN_FILE,
            CA_FILE if connection.tls_ca else None,
        )
        logger.info("load test %s: starting %s", plan.id, ", ".join(w.name for w in workers))
        self.workload.start_workers(plan.id, workers)
        self.state.unit_data.report = UnitReport(test_id=plan.id, state="running")

    def _collect(self, plan: LoadTestPlan, workers: list[str]) -> UnitReport:
        """The unit's result from its workers' files; a worker without one failed."""
        files = []
        engines = self.workload.engines(plan.id)
        for worker in workers:
            if engines.get(worker) == Engine.PULSAR_PERF:
                data = self._perf_file(plan, worker)
            else:
                data = self.workload.worker_file(plan.id, worker, "result")
            if data is None:
                data = {"worker": worker, "state": "failed", "error": f"{worker} left no result (its pod restarted?)"}
            files.append(data)
        try:
            result = combine_workers(self.unit.name, files)
        except ValueError as error:
            logger.error("load test %s: the workers' results do not decode: %s", plan.id, error)
            result = UnitResult(unit=self.unit.name, target_rate=0.0, state="failed", errors=(str(error),))
        self.workload.write(f"{test_dir(plan.id)}/unit-result.json", result.to_json())
        logger.info("load test %s: this unit %s: %d acknowledged", plan.id, result.state, result.acknowledged)
        return UnitReport(test_id=plan.id, state=result.state, result=result.to_json())

    def _perf_file(self, plan: LoadTestPlan, worker: str) -> dict[str, Any] | None:
        """A pulsar-perf worker's result, from its histogram log and its stdout."""
        directory = test_dir(plan.id)
        log = self.workload.read_text(f"{directory}/{worker}.hlog")
        if log is None:
            return None
        spec = LoadTestSpec.parse(plan.params)
        summary = self.workload.read_text(f"{directory}/{worker}.out")
        workers = plan_workers(spec, plan.id, plan.units, self.unit.name, "", "", directory, TOKEN_FILE)
        target = next((float(w.values["rate"]) for w in workers if w.name == worker), 0.0)
        result = perf_result(self.unit.name, target, log, summary, spec.warm_up_s, message_size=spec.size or 0)
        error = read_perf_summary(summary).error if summary else "pulsar-perf left no output"
        ended = self.workload.worker_file(plan.id, worker, PERF_EXIT_KIND) or {}
        if not error and ended.get("exit_status", 0) != 0 and plan.phase not in (Phase.STOPPING, Phase.STOPPED):
            error = f"pulsar-perf exited with status {ended['exit_status']}"
        stopped = plan.phase in (Phase.STOPPING, Phase.STOPPED)
        state = "failed" if error else "stopped" if stopped else "finished"
        document = json.loads(result.to_json())
        return {**document, "worker": worker, "state": state, "error": error or "", "notes": list(PERF_NOTES)}

    def _write_application_results(self, connection: Connection | None) -> None:
        """Once every unit of a finished test has reported: the application's files, in this unit's storage."""
        plan = self.state.plan
        if plan is None or plan.active or (plan.phase == Phase.FAILED and not plan.started_ms):
            return
        directory = test_dir(plan.id)
        if self.workload.read_json(f"{directory}/application.json") is not None:
            return
        reports = [self.state.unit_data_of(u).report for u in plan.units]
        results = [UnitResult.from_json(r.result) for r in reports if r and r.test_id == plan.id and r.result]
        if not results:
            return
        app = merge(results)
        spec = LoadTestSpec.parse(plan.params)
        meta = self._meta(plan, spec, results, connection)
        title = f"load test {plan.id} ({plan.phase})"
        notes = [
            *dict.fromkeys(n for r in results for n in r.notes),
            *(f"{r.unit}: {e}" for r in results for e in r.errors),
        ]
        self.workload.write(f"{directory}/results.txt", report.results_table(app, title, notes))
        self.workload.write(f"{directory}/report.html", report.html_report(app, meta, title))
        omb = omb_json(
            app,
            OmbMeta(
                workload=f"loadgen-{plan.id}",
                driver="pulsar-perf" if spec.engine.value == "pulsar-perf" else "loadgen-k8s",
                message_size=int(meta["payload encoded bytes"]),
                partitions=spec.partitions,
                producers_per_topic=spec.producers_per_unit * len(plan.units),
                consumers_per_topic=len(plan.units) if spec.consumers else 0,
            ),
        )
        self.workload.write(f"{directory}/omb-result.json", json.dumps(omb, indent=1))
        document = {
            "test-id": plan.id,
            "phase": plan.phase,
            "meta": meta,
            "units": [json.loads(r.to_json()) for r in results],
        }
        self.workload.write(f"{directory}/application.json", json.dumps(document, indent=1))
        logger.info("load test %s: application results written to %s", plan.id, directory)

    def _meta(
        self, plan: LoadTestPlan, spec: LoadTestSpec, results: list[UnitResult], connection: Connection | None
    ) -> dict[str, Any]:
        acknowledged = sum(r.acknowledged for r in results)
        encoded = sum(r.bytes_uncompressed for r in results) / acknowledged if acknowledged else 0.0
        compressed = sum(r.bytes_compressed for r in results) / acknowledged if acknowledged else 0.0
        return {
            "test id": plan.id,
            "phase": plan.phase,
            "units": len(plan.units),
            "target rate (msg/s)": "max" if spec.rate is None else spec.rate,
            "rate found (msg/s)": round(sum(r.found_rate for r in results), 1) if spec.find_max else "-",
            "engine": spec.engine.value,
            "payload": spec.payload.value,
            "payload encoded bytes": round(encoded, 1),
            "wire bytes per message (compressed, with batch overhead)": round(compressed, 1),
            "device count": spec.device_count,
            "keys": spec.keys,
            "batching": f"{spec.batch_delay_ms} ms, {spec.batch_max_messages} messages, {spec.batch_max_bytes} bytes"
            if spec.batching
            else "off",
            "compression": spec.compression.value,
            "topic": f"{spec.topic} ({spec.partitions} partitions)",
            "producers per unit": spec.producers_per_unit,
            "consumers": spec.consumers,
            "warm-up (s)": spec.warm_up_s,
            "duration (s)": spec.duration_s,
            **self._cluster_meta(connection),
            "end-to-end latency": report.CLOCK_NOTE,
        }

    def _cluster_meta(self, connection: Connection | None) -> dict[str, Any]:
        """What pulsar-k8s says of its cluster (at the end of the test), and the client's own version."""
        cluster = self.pulsar.cluster_info()
        quorum = [cluster.get(k, "?") for k in ("ensemble-size", "write-quorum", "ack-quorum")]
        return {
            "pulsar version (cluster)": cluster.get("pulsar-version", "unknown"),
            "pulsar version (client image)": self.workload.pulsar_version() or "unknown",
            "brokers": cluster.get("brokers", len(connection.service_url.split(",")) if connection else "unknown"),
            "bookies": cluster.get("bookies", "unknown"),
            "ledger quorum (ensemble/write/ack)": "/".join(str(q) for q in quorum) if cluster else "unknown",
        }

    def _status(self, connection: Connection | None) -> ops.StatusBase:
        plan = self.state.plan
        if plan and plan.active and self.unit.name in plan.units:
            if plan.phase == Phase.PREPARING:
                return Status.PREPARING(test=plan.id)
            if plan.phase == Phase.STOPPING:
                return Status.STOPPING(test=plan.id)
            return Status.RUNNING(test=plan.id, progress=self._progress_line(plan))
        last = f"; last test {plan.id} {plan.phase}" if plan else ""
        namespace = connection.namespace if connection else "?"
        return Status.IDLE(units=len(self.state.units), namespace=namespace, last=last)

    def progress(self, plan: LoadTestPlan) -> dict[str, Any]:
        """The progress files of the unit's workers, summed."""
        files = [self.workload.worker_file(plan.id, w, "progress") for w in self.workload.started(plan.id)]
        files = [f for f in files if f]
        return {
            "states": sorted({str(f.get("state")) for f in files}),
            "elapsed_s": max((float(f.get("elapsed_seconds") or 0) for f in files), default=0.0),
            "rate": sum(
                float(f.get("current_rate") or 0) for f in files if str(f.get("worker", "")).startswith("producer")
            ),
            "acknowledged": sum(int(f.get("acknowledged") or 0) for f in files),
            "received": sum(int(f.get("received") or 0) for f in files),
            "failed": sum(int(f.get("failed") or 0) for f in files),
        }

    def _progress_line(self, plan: LoadTestPlan) -> str:
        progress = self.progress(plan)
        if not progress["states"]:
            return "starting workers"
        states = "/".join(progress["states"])
        rate, failed = progress["rate"], progress["failed"]
        return f"{states}, {progress['elapsed_s']:.0f}s measured, {rate:.0f} msg/s, {failed} failed"

    # ------------------------------------------------------------ actions

    def start(self, params: dict[str, Any], connection: Connection | None) -> dict[str, Any]:
        try:
            spec = LoadTestSpec.parse(params)
        except InvalidParamsError as error:
            raise ActionError(str(error)) from None
        self._check_ready(connection)
        if reason := coordinator.refusal(self.state.plan):
            raise ActionError(reason)
        pending = self.state.unit_data.start_request
        if pending is not None and pending.id not in self.state.app_data.history:
            raise ActionError(f"load test {pending.id} asked of this unit is waiting for the leader to accept it")
        units = self.state.units
        if spec.device_count < len(units) * spec.producers_per_unit:
            raise ActionError(
                f"device-count={spec.device_count} is smaller than the {len(units) * spec.producers_per_unit} "
                f"producers ({len(units)} units x {spec.producers_per_unit}): every producer needs a device"
            )
        test_id = coordinator.new_test_id()
        request = StartRequest(test_id, spec.to_params(), units, budget_s(spec), _now_ms())
        if self.state.leader:
            self.state.app_data.test = coordinator.adopt(None, {self.unit.name: request}, [], _now_ms())
            self._lead()
        else:
            self.state.unit_data.start_request = request
        self.reconcile(connection)
        rate = "max (searching)" if spec.rate is None else f"{spec.rate} msg/s"
        return {
            "test-id": test_id,
            "units": ",".join(units),
            "target-rate": rate,
            "message": f"load test {test_id} starting on {len(units)} unit(s) at {rate}; "
            f"see load-test-results test-id={test_id}",
        }

    def _check_ready(self, connection: Connection | None) -> None:
        if self.pulsar.relation is None:
            raise ActionError("no pulsar relation: juju integrate loadgen-k8s pulsar-k8s")
        if error := self.pulsar.error():
            raise ActionError(f"pulsar-k8s refused the request: {error}")
        if connection is None:
            raise ActionError("pulsar-k8s has not granted a namespace yet: try again shortly")
        if self.state.peers is None or self.state.error is not None:
            raise ActionError(f"the workers peer relation is not usable: {self.state.error or 'not there yet'}")

    def stop(self) -> dict[str, Any]:
        plan = self.state.plan
        if plan is None or not plan.active:
            last = f" (last: {plan.id}, {plan.phase})" if plan else ""
            raise ActionError(f"no load test is running{last}")
        if self.state.leader:
            self.state.unit_data.stop_request = plan.id
            self._lead()
        else:
            self.state.unit_data.stop_request = plan.id
        self.workload.stop_workers(
            self.workload.started(plan.id)
        )  # this unit's at once, the others on their next event
        self.reconcile(self.pulsar.connection())
        return {
            "test-id": plan.id,
            "message": f"stopping load test {plan.id} on {len(plan.units)} unit(s); partial results are kept, "
            f"marked stopped: see load-test-results test-id={plan.id}",
        }

    @staticmethod
    def _search_results(document: dict[str, Any], units: list[UnitResult]) -> dict[str, str]:
        """For rate=max: the rate found and how steadily it was held."""
        if document.get("meta", {}).get("target rate (msg/s)") != "max":
            return {}
        return {
            "rate-found": f"{sum(u.found_rate for u in units):.1f}",
            "stability-cv": f"{max((u.stability_cv for u in units), default=0.0):.3f}",
        }

    def follow(self, log: Callable[[str], None]) -> None:
        """While this unit's workers run the current test, log their progress every few seconds.

        The action holds this unit's hooks meanwhile (Juju runs one at a time per unit); the
        workers do not need them, and the results are collected as soon as it returns.
        """
        plan = self.state.plan
        if plan is None or not plan.active or not (started := self.workload.started(plan.id)):
            return
        deadline = plan.started_ms / 1000 + plan.budget_s + FOLLOW_GRACE_S
        while True:
            log(f"load test {plan.id}: {self._progress_line(plan)}")
            if not self.workload.running_workers(started) or time.time() > deadline:
                return
            time.sleep(FOLLOW_PERIOD_S)

    def results(self, test_id: str) -> dict[str, Any]:
        plan = self.state.plan
        wanted = test_id or (plan.id if plan else "")
        if not wanted:
            raise ActionError("no load test has run yet")
        document = self.workload.read_json(f"{test_dir(wanted)}/application.json")
        if isinstance(document, dict):
            units = [UnitResult.from_json(json.dumps(u)) for u in document.get("units", [])]
            app = merge(units)
            notes = list(dict.fromkeys(n for u in units for n in u.notes))
            table = report.results_table(app, f"load test {wanted} ({document.get('phase')})", notes)
            return {
                "test-id": wanted,
                "state": str(document.get("phase")),
                "achieved-rate": f"{app.achieved_rate:.1f}",
                "target-rate": f"{app.target_rate:.1f}",
                "acknowledged": str(app.acknowledged),
                "failed": str(app.failed_total),
                "table": table,
                **self._search_results(document, units),
                "files": f"{test_dir(wanted)}/{{results.txt,report.html,omb-result.json,application.json}} "
                "and each unit's <worker>.hlog",
            }
        if plan is not None and plan.id == wanted:
            reported = [u for u, r in self.state.reports().items() if r and r.test_id == wanted and r.final]
            progress = self.progress(plan) if plan.active else {}
            return {
                "test-id": wanted,
                "state": plan.phase,
                "message": f"no results yet: {len(reported)}/{len(plan.units)} units reported"
                + (f"; {plan.error}" if plan.error else ""),
                "progress": {k.replace("_", "-"): str(v) for k, v in progress.items()},
            }
        raise ActionError(f"no results for load test {wanted} on this unit")
