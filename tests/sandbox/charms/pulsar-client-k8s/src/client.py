"""Runs inside the workload container: produce, consume or call the admin API; print one JSON line.

The request, token included, arrives as JSON on stdin: a secret never goes on a command line.
"""

import json
import os
import signal
import ssl
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pulsar

ADMIN_TIMEOUT = 15
SEND_TIMEOUT = 30  # the client library's default, in seconds


def admin(web_service_url: str, token: str, method: str, path: str, ca: str | None) -> None:
    """One admin REST call to the first broker; reports the HTTP status whatever it is."""
    base = web_service_url.split(",")[0]
    request = urllib.request.Request(f"{base}{path}", method=method)  # noqa: S310 - the broker's URL
    request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cadata=ca) if ca else None
    try:
        with urllib.request.urlopen(request, timeout=ADMIN_TIMEOUT, context=context) as response:  # noqa: S310
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        sys.exit(1)
    print(json.dumps({"status": status, "body": body.decode(errors="replace")[:1000]}))


def produce(client: pulsar.Client, topic: str, count: int, request: dict[str, object]) -> None:
    """Send `count` messages; print how many the broker acknowledged and how many failed.

    With `rate`, messages go out at that pace, each one's outcome recorded: a writer that keeps
    writing while the cluster changes. A send that fails is counted and the writer goes on;
    SIGTERM ends it early (what was sent is still waited for); with `progress`, the counts so
    far and the highest index acknowledged are written to that file every second, for a test
    to read while it runs. `acked-indices` lists the acknowledged messages. Without `rate` a
    client error ends it.
    """
    producer = client.create_producer(topic, batching_enabled=True, block_if_queue_full=True)
    rate = float(request.get("rate") or 0)  # type: ignore[arg-type]
    progress = request.get("progress")
    acked: dict[int, bool] = {}
    last_acked = -1  # the highest index acknowledged
    lock = threading.Lock()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())

    def done(index: int) -> object:
        def record(result: pulsar.Result, _msg_id: object) -> None:
            nonlocal last_acked
            with lock:
                acked[index] = result == pulsar.Result.Ok
                if acked[index]:
                    last_acked = max(last_acked, index)

        return record

    def counts() -> dict[str, object]:
        with lock:
            ok = sum(acked.values())
            return {"sent": sent, "acked": ok, "failed": len(acked) - ok, "last-acked": last_acked}

    def report(path: str) -> None:
        with open(f"{path}.new", "w") as file:
            json.dump(counts(), file)
        os.replace(f"{path}.new", path)

    def keep_reporting(path: str) -> None:  # a thread: the sending one may block on a full queue
        while not stopping.wait(1):
            report(path)

    sent = 0
    reporter = threading.Thread(target=keep_reporting, args=(str(progress),), daemon=True)
    if progress:
        reporter.start()
    start = time.monotonic()
    while sent < count and not stopping.is_set():
        if rate:
            time.sleep(max(0.0, start + sent / rate - time.monotonic()))
        try:
            producer.send_async(f"message-{sent}".encode(), done(sent))
        except Exception:  # a send refused at once is a failed send, not the end
            if not rate:
                raise
            with lock:
                acked[sent] = False
        sent += 1
    stopping.set()
    # Every message sent gets its outcome (at worst its send timeout) before the counts are final.
    try:
        producer.flush()
    except Exception:  # a failed flush leaves failed sends, counted below
        if not rate:
            raise
    deadline = time.monotonic() + SEND_TIMEOUT + 30
    while len(acked) < sent and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        producer.close()
    except Exception:  # noqa: BLE001, S110 - the outcomes are known; closing is courtesy
        pass
    with lock:
        for index in range(sent):  # no outcome at all: not acknowledged
            acked.setdefault(index, False)
    if progress:
        reporter.join()
        report(str(progress))
    result = counts()
    if not rate:
        result.pop("sent")
        result.pop("last-acked")
    else:
        result["acked-indices"] = sorted(i for i, ok in acked.items() if ok)
    print(json.dumps(result))


def main() -> None:
    request = json.loads(sys.stdin.read())
    mode, url, token, ca = request["mode"], request["url"], request["token"], request.get("ca")
    if mode == "admin":
        admin(url, token, request["method"], request["path"], ca)
        return
    topic, count = request["topic"], int(request["count"])
    auth = pulsar.AuthenticationToken(token) if token else None
    tls: dict[str, object] = {}
    if ca:  # verify the brokers with the CA pulsar-k8s handed over (and their names)
        with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as file:
            file.write(ca)
        tls = {"tls_trust_certs_file_path": file.name, "tls_validate_hostname": True}
    client = pulsar.Client(
        url,
        authentication=auth,
        operation_timeout_seconds=15,
        connection_timeout_ms=5000,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
        **tls,  # type: ignore[arg-type]
    )
    try:
        if mode == "produce":
            produce(client, topic, count, request)
        else:
            earliest = pulsar.InitialPosition.Earliest
            consumer = client.subscribe(topic, request["subscription"], initial_position=earliest)
            seen = set()
            duplicates = 0
            while len(seen) < count:
                try:
                    message = consumer.receive(timeout_millis=10000)
                except pulsar.Timeout:
                    break
                duplicates += message.data() in seen
                seen.add(message.data())
                consumer.acknowledge(message)
            received: dict[str, object] = {"received": len(seen)}
            if request.get("indices"):
                received["indices"] = sorted(int(m.decode().rsplit("-", 1)[1]) for m in seen)
                received["duplicates"] = duplicates
            print(json.dumps(received))
    except Exception as error:  # noqa: BLE001 - report any client failure as the action's error
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        sys.exit(1)
    finally:
        client.close()


if __name__ == "__main__":
    main()
