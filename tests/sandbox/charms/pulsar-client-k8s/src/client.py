"""Runs inside the workload container: produce or consume, print one JSON line."""

import json
import sys

import pulsar


def main() -> None:
    mode, url, token, topic, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
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
            consumer = client.subscribe(topic, sys.argv[6], initial_position=pulsar.InitialPosition.Earliest)
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
