"""Runs inside the cdc pod, with its Python: one rate step's lag on the raw and the enriched topic.

The request arrives as JSON on stdin: `service_url`, `token`, `topics` (label -> topic), `since_ms`
(publish time to seek to, just before the step's first commit), `step` (the rows' step column),
`expected` (rows the step committed) and `timeout_s`. Each topic is read from `since_ms` until
every row of the step has arrived once, or nothing new came for `idle_s`, or `timeout_s` passed.

Lag of a row = the message's publish time minus the commit time Debezium recorded
(`source.ts_ms`); the first copy of a row counts, later copies are duplicates. The answer is one
line starting with "RESULT ", then JSON: per topic, rows seen, duplicates, lag p50 / p99 / max
(ms), and the median lag of the first and of the last quarter of the rows by commit time, which
tells a lag that grows from one that does not.
"""

import json
import sys
import time

import pulsar

RESULT = "RESULT "


def _percentile(ordered: list[int], fraction: float) -> int:
    if not ordered:
        return -1
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _change(data: bytes) -> dict | None:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if isinstance(value, dict) and "payload" in value and "schema" in value:
        value = value["payload"]  # a converter that wraps the envelope with its schema
    return value if isinstance(value, dict) and isinstance(value.get("after"), dict) else None


def measure(client: pulsar.Client, topic: str, request: dict) -> dict:
    reader = client.create_reader(topic, pulsar.MessageId.earliest)
    reader.seek(int(request["since_ms"]))
    first_lag: dict[int, tuple[int, int]] = {}  # row id -> (commit ms, lag ms)
    duplicates = 0
    deadline = time.monotonic() + float(request["timeout_s"])
    last_news = time.monotonic()
    while len(first_lag) < request["expected"] and time.monotonic() < deadline:
        if time.monotonic() - last_news > float(request["idle_s"]):
            break
        try:
            message = reader.read_next(timeout_millis=1000)
        except pulsar.Timeout:
            continue
        change = _change(message.data())
        if change is None or change["after"].get("step") != request["step"]:
            continue
        last_news = time.monotonic()
        row = change["after"]["id"]
        if row in first_lag:
            duplicates += 1
            continue
        committed = int(change["source"]["ts_ms"])
        first_lag[row] = (committed, message.publish_timestamp() - committed)
    reader.close()
    by_commit = sorted(first_lag.values())
    quarter = max(1, len(by_commit) // 4)
    lags = sorted(lag for _, lag in by_commit)
    return {
        "rows": len(first_lag),
        "duplicates": duplicates,
        "p50": _percentile(lags, 0.50),
        "p99": _percentile(lags, 0.99),
        "max": lags[-1] if lags else -1,
        "first_quarter_p50": _percentile(sorted(lag for _, lag in by_commit[:quarter]), 0.5),
        "last_quarter_p50": _percentile(sorted(lag for _, lag in by_commit[-quarter:]), 0.5),
    }


def main() -> None:
    request = json.loads(sys.stdin.read())
    client = pulsar.Client(request["service_url"], authentication=pulsar.AuthenticationToken(request["token"]))
    try:
        answer = {label: measure(client, topic, request) for label, topic in request["topics"].items()}
    finally:
        client.close()
    # The client logs on stdout too: the answer is the line marked so.
    print(RESULT + json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
