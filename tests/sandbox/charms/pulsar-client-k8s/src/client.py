"""Runs inside the workload container: produce, consume or call the admin API; print one JSON line.

The request, token included, arrives as JSON on stdin: a secret never goes on a command line.
"""

import json
import sys
import urllib.error
import urllib.request

import pulsar

ADMIN_TIMEOUT = 15


def admin(web_service_url: str, token: str, method: str, path: str) -> None:
    """One admin REST call to the first broker; reports the HTTP status whatever it is."""
    base = web_service_url.split(",")[0]
    request = urllib.request.Request(f"{base}{path}", method=method)  # noqa: S310 - the broker's URL
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=ADMIN_TIMEOUT) as response:  # noqa: S310
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        sys.exit(1)
    print(json.dumps({"status": status, "body": body.decode(errors="replace")[:1000]}))


def main() -> None:
    request = json.loads(sys.stdin.read())
    mode, url, token = request["mode"], request["url"], request["token"]
    if mode == "admin":
        admin(url, token, request["method"], request["path"])
        return
    topic, count = request["topic"], int(request["count"])
    auth = pulsar.AuthenticationToken(token) if token else None
    client = pulsar.Client(
        url,
        authentication=auth,
        operation_timeout_seconds=15,
        connection_timeout_ms=5000,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
    )
    try:
        if mode == "produce":
            producer = client.create_producer(topic, batching_enabled=True, block_if_queue_full=True)
            acked = []

            def done(result: pulsar.Result, _msg_id: object) -> None:
                acked.append(result == pulsar.Result.Ok)

            for index in range(count):
                producer.send_async(f"message-{index}".encode(), done)
            producer.flush()
            producer.close()
            print(json.dumps({"acked": sum(acked), "failed": len(acked) - sum(acked)}))
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
            print(json.dumps({"received": len(seen)}))
    except Exception as error:  # noqa: BLE001 - report any client failure as the action's error
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        sys.exit(1)
    finally:
        client.close()


if __name__ == "__main__":
    main()
