"""Runs inside a loadgen pod: read a whole topic and say what its messages are.

The request (token included) arrives as JSON on stdin. Prints one JSON line: the topic's
registered schema type, how many messages decode with that schema, whether each key is the
reading's device id, and the device ids each unit sent (from the producer name
`<unit>:<worker>:<test id>` the engine gives its producers).
"""

import io
import json
import sys
import urllib.parse
import urllib.request

import fastavro
import pulsar


def registered_schema(web_service_url: str, topic: str, token: str) -> dict:
    path = urllib.parse.urlparse(topic.replace("persistent://", "http://x/")).path
    url = f"{web_service_url.split(',')[0]}/admin/v2/schemas{path}/schema"
    request = urllib.request.Request(url)  # noqa: S310 - the broker's URL
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def main() -> None:
    request = json.loads(sys.stdin.read())
    token = request["token"]
    schema_info = registered_schema(request["web_service_url"], request["topic"], token)
    parsed = fastavro.parse_schema(json.loads(schema_info["data"]))
    client = pulsar.Client(request["service_url"], authentication=pulsar.AuthenticationToken(token))
    reader = client.create_reader(request["topic"], pulsar.MessageId.earliest)
    messages = undecodable = mismatches = 0
    keys: dict[str, set[str]] = {}
    while True:
        try:
            message = reader.read_next(timeout_millis=5000)
        except pulsar.Timeout:
            break
        messages += 1
        try:
            reading = fastavro.schemaless_reader(io.BytesIO(message.data()), parsed)
        except Exception:  # noqa: BLE001 - counted: the test asserts there is none
            undecodable += 1
            continue
        if reading.get("deviceId") != message.partition_key():
            mismatches += 1
        producer = message.producer_name()
        unit = producer.split(":")[0]
        keys.setdefault(unit, set()).add(message.partition_key())
    client.close()
    print(
        json.dumps(
            {
                "schema_type": schema_info.get("type"),
                "messages": messages,
                "undecodable": undecodable,
                "key_mismatches": mismatches,
                "keys_by_unit": {unit: sorted(ids) for unit, ids in keys.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
