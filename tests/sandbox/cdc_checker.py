"""Runs inside a cdc pod, with its Python: read topics whole, or put one message on a topic.

The request (token included) arrives as JSON on stdin; the answer is one line starting with
"RESULT ", then JSON:
- `{"read": [topic, ...]}`: maps each topic to its messages in order,
  each as `{"key", "value", "properties"}` (value decoded as UTF-8 JSON when it is JSON)
- `{"send": topic, "value": text}`: publishes `value` as bytes; `{"sent": id}`
"""

import json
import sys

import pulsar

RESULT = "RESULT "


def _decoded(data: bytes) -> object:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return data.decode("utf-8", errors="replace")


def read_all(client: pulsar.Client, topic: str) -> list[dict]:
    reader = client.create_reader(topic, pulsar.MessageId.earliest)
    messages = []
    while True:
        try:
            message = reader.read_next(timeout_millis=5000)
        except pulsar.Timeout:
            break
        messages.append(
            {"key": message.partition_key(), "value": _decoded(message.data()), "properties": message.properties()}
        )
    reader.close()
    return messages


def main() -> None:
    request = json.loads(sys.stdin.read())
    client = pulsar.Client(request["service_url"], authentication=pulsar.AuthenticationToken(request["token"]))
    try:
        if "send" in request:
            producer = client.create_producer(request["send"])
            sent = producer.send(request["value"].encode("utf-8"), partition_key=request.get("key") or None)
            answer: dict = {"sent": str(sent)}
        else:
            answer = {topic: read_all(client, topic) for topic in request["read"]}
    finally:
        client.close()
    # The client logs on stdout too, even while it closes: the answer is the line marked so.
    print(RESULT + json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
