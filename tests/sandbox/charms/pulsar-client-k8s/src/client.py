"""Runs inside the workload container: produce, consume or call the admin API; print one JSON line.

The request, token included, arrives as JSON on stdin: a secret never goes on a command line.
"""

import json
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pulsar

ADMIN_TIMEOUT = 15


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
            producer = client.create_producer(topic, batching_enabled=True, block_if_queue_full=True)
            acked: dict[int, bool] = {}
            # With `rate`, messages go out at that pace (a writer that keeps writing while the
            # cluster changes), each one's outcome recorded: `acked-indices` lists the acknowledged.
            rate = float(request.get("rate") or 0)
            start = time.monotonic()

            def done(index: int) -> object:
                return lambda result, _msg_id: acked.__setitem__(index, result == pulsar.Result.Ok)

            for index in range(count):
                if rate:
                    time.sleep(max(0.0, start + index / rate - time.monotonic()))
                producer.send_async(f"message-{index}".encode(), done(index))
            producer.flush()
            producer.close()
            result: dict[str, object] = {"acked": sum(acked.values()), "failed": len(acked) - sum(acked.values())}
            if rate:
                result["acked-indices"] = sorted(i for i, ok in acked.items() if ok)
            print(json.dumps(result))
        else:
            earliest = pulsar.InitialPosition.Earliest
            consumer = client.subscribe(topic, request["subscription"], initial_position=earliest)
            seen = set()
            while len(seen) < count:
                try:
                    message = consumer.receive(timeout_millis=10000)
                except pulsar.Timeout:
                    break
                seen.add(message.data())
                consumer.acknowledge(message)
            received: dict[str, object] = {"received": len(seen)}
            if request.get("indices"):
                received["indices"] = sorted(int(m.decode().rsplit("-", 1)[1]) for m in seen)
            print(json.dumps(received))
    except Exception as error:  # noqa: BLE001 - report any client failure as the action's error
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        sys.exit(1)
    finally:
        client.close()


if __name__ == "__main__":
    main()
