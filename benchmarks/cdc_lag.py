"""Benchmark: commit-to-topic lag of cdc-k8s, raw and enriched, at steady insert rates, in one run.

Cluster: pulsar-k8s -n 1, bookie-k8s -n 3, the postgresql-k8s test charm (PostgreSQL from
Debian, `wal_level=logical`) and cdc-k8s capturing `public.readings`, related as a user would.

Each step inserts rows at a steady rate for a fixed time, from inside PostgreSQL (a procedure
that commits a small batch whenever the schedule says rows are due, so the driver adds no client
round trips), each row tagged with its step. Then a reader in the cdc pod measures, for every
row, its message's publish time minus its commit time (`source.ts_ms`) on the raw topic
(Debezium's output) and on the enriched one (the function's). Prints p50/p99/max of both in the
same step, and enriched p99 / raw p99: what the enrichment adds (target: at most 1.2).

A step is sustained when every row reached both topics, the driver met its rate (within 3 %),
and the lag did not grow: the median lag of the step's last quarter of rows stays within twice
the first quarter's plus 1 s. The steps rise until one is not sustained; the highest sustained
rate is printed last.

Prints figures only; nothing here asserts a rate or a lag. About 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from sandbox import Model

ROOT = Path(__file__).resolve().parent.parent
CHARMS = ROOT / "charms"
TEST_CHARMS = ROOT / "tests" / "sandbox" / "charms"
READER = Path(__file__).resolve().parent / "cdc_lag_reader.py"
READER_IN_POD = "/tmp/cdc_lag_reader.py"  # noqa: S108 (in the cdc pod, for one exec)
TOKEN_FILE = "/var/lib/cdc/pulsar-token"  # noqa: S105 (a path, the unit's own 0600 file)
CDC = "cdc-k8s"
POSTGRESQL = "postgresql-k8s"
TABLE = "public.readings"
RAW = "cdc.public.readings"
ENRICHED = f"{RAW}-enriched"

SCHEMA = """
CREATE TABLE IF NOT EXISTS public.readings (
    id bigserial PRIMARY KEY, step int NOT NULL, device int NOT NULL, reading double precision, unit text
);
CREATE OR REPLACE PROCEDURE bench_insert(step_no int, rate int, seconds float8)
LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
    total bigint := floor(rate * seconds);
    done bigint := 0;
    due bigint;
    batch bigint;
BEGIN
    WHILE done < total LOOP
        due := least(total, floor(extract(epoch FROM clock_timestamp() - started) * rate));
        IF due > done THEN
            batch := least(due - done, greatest(rate / 100, 1));
            INSERT INTO public.readings (step, device, reading, unit)
                SELECT step_no, (done + g) % 1000, random() * 100, 'celsius' FROM generate_series(1, batch) g;
            done := done + batch;
            COMMIT;
        ELSE
            PERFORM pg_sleep(0.001);
        END IF;
    END LOOP;
END $$;
"""


def _psql(model: Model, statement: str, timeout: float = 120) -> str:
    """SQL as PostgreSQL's superuser in its own container (the `cdc` database)."""
    client = model.pebble(f"{POSTGRESQL}/0", "postgresql")
    socket_dir = "/tmp"  # noqa: S108 (the server's socket directory, in its pod)
    argv = ["psql", "-h", socket_dir, "-U", "postgres", "-d", "cdc", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    process = client.exec([*argv, "-c", statement], user="postgres", timeout=timeout)
    stdout, _ = process.wait_output()
    return stdout.strip()


def _grant(model: Model) -> dict[str, Any]:
    """What pulsar-k8s granted cdc-k8s (its library JSON-encodes each value)."""
    return {k: json.loads(v) for k, v in model.relation(CDC, "pulsar-k8s").app_data["pulsar-k8s"].items()}


def _measure(model: Model, step: int, since_ms: int, expected: int) -> dict[str, Any]:
    client = model.pebble(f"{CDC}/0", "cdc")
    client.push(READER_IN_POD, READER.read_text(), make_dirs=True)
    grant = _grant(model)
    namespace = grant["namespace"]
    request = {
        "service_url": grant["service-url"],
        "token": client.pull(TOKEN_FILE).read().strip(),
        "topics": {"raw": f"persistent://{namespace}/{RAW}", "enriched": f"persistent://{namespace}/{ENRICHED}"},
        "since_ms": since_ms,
        "step": step,
        "expected": expected,
        "timeout_s": 300,
        "idle_s": 60,
    }
    process = client.exec(["python3", READER_IN_POD], stdin=json.dumps(request), timeout=900)
    stdout, _ = process.wait_output()
    answer = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(answer.removeprefix("RESULT "))


def _bring_up(model: Model) -> None:
    print("deploying pulsar-k8s, bookie-k8s -n 3, postgresql-k8s and cdc-k8s", flush=True)
    model.deploy(CHARMS / "pulsar-k8s")
    model.deploy(CHARMS / "bookie-k8s", num_units=3)
    model.integrate("pulsar-k8s", "bookie-k8s")
    model.deploy(TEST_CHARMS / POSTGRESQL)
    model.deploy(CHARMS / CDC, config={"tables": TABLE})
    model.integrate(CDC, POSTGRESQL)
    model.wait_for_idle([POSTGRESQL], timeout=600)
    _psql(model, SCHEMA)
    model.integrate(CDC, "pulsar-k8s")
    model.wait_for_idle(timeout=900)


def _wait_for_pipeline(model: Model) -> None:
    """The services start after the hooks that plan them: a warm-up step says the pipeline flows."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        since = int(time.time() * 1000) - 1000
        _psql(model, "CALL bench_insert(0, 50, 2)")
        found = _measure(model, 0, since, 100)
        if found["enriched"]["rows"] == 100:  # the procedure inserts exactly rate x seconds rows
            return
        print(
            f"warm-up: {found['raw']['rows']} raw and {found['enriched']['rows']} enriched rows of 100 so far",
            flush=True,
        )
        model.settle()
        _psql(model, "DELETE FROM public.readings WHERE step = 0")
    raise SystemExit("the pipeline did not deliver the warm-up rows within 5 minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="250,500,1000,2000,4000,8000,16000", help="rows/s, rising")
    parser.add_argument("--seconds", type=float, default=30.0, help="insert time of each step")
    parser.add_argument("--model", default="bench-cdc")
    parser.add_argument("--keep", action="store_true", help="leave the model up at the end")
    args = parser.parse_args()
    model = Model.create(args.model, update_status_interval=300)
    try:
        _bring_up(model)
        _wait_for_pipeline(model)
        print(
            f"{'rows/s':>7} {'inserted/s':>10} | {'raw p50':>7} {'p99':>6} {'max':>6} | "
            f"{'enriched p50':>12} {'p99':>6} {'max':>6} | {'p99 ratio':>9} | dup | sustained",
            flush=True,
        )
        highest = 0
        for step, rate in enumerate((int(r) for r in args.rates.split(",")), start=1):
            since = int(time.time() * 1000) - 1000
            started = time.monotonic()
            _psql(model, f"CALL bench_insert({step}, {rate}, {args.seconds})", timeout=args.seconds + 120)
            elapsed = time.monotonic() - started
            counted = f"SELECT count(*) FROM public.readings WHERE step = {step:d}"  # noqa: S608 (an int)
            inserted = int(_psql(model, counted))
            found = _measure(model, step, since, inserted)
            raw, enriched = found["raw"], found["enriched"]
            complete = raw["rows"] == inserted and enriched["rows"] == inserted
            growing = any(t["last_quarter_p50"] > 2 * t["first_quarter_p50"] + 1000 for t in (raw, enriched))
            met = elapsed <= 1.03 * args.seconds + 1  # the driver kept its schedule (1 s for the exec)
            sustained = complete and not growing and met
            reasons = [
                *([] if complete else [f"arrived raw {raw['rows']} / enriched {enriched['rows']} of {inserted}"]),
                *(["lag grows"] if growing else []),
                *([] if met else ["the driver fell short"]),
            ]
            verdict = "yes" if sustained else "no: " + ", ".join(reasons)
            ratio = enriched["p99"] / raw["p99"] if raw["p99"] > 0 else float("nan")
            print(
                f"{rate:7d} {inserted / elapsed:10.0f} | {raw['p50']:7d} {raw['p99']:6d} {raw['max']:6d} | "
                f"{enriched['p50']:12d} {enriched['p99']:6d} {enriched['max']:6d} | {ratio:9.2f} | "
                f"{raw['duplicates'] + enriched['duplicates']:3d} | {verdict}",
                flush=True,
            )
            if not sustained:
                break
            highest = rate
        print(f"highest sustained rate: {highest} rows/s (lags in ms, commit to publish)")
    finally:
        if not args.keep:
            model.destroy()


if __name__ == "__main__":
    main()
