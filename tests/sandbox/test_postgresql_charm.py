"""PostgreSQL for the CDC charm, in the sandbox: the postgresql-k8s test charm and a client.

The server is real PostgreSQL (Debian's, as the postgres image carries it) under Pebble; the
client connects with what postgresql_client shared, from its own pod. The client's second
container runs the pulsar-all image, which cdc-k8s runs too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import Model
from sandbox.provision import DEBEZIUM_POSTGRES_NAR, DEBEZIUM_POSTGRES_SHA512
from sandbox.state import RelationState

TEST_CHARMS = Path(__file__).resolve().parent / "charms"
SERVER, CLIENT = "postgresql-k8s", "client"
RELATION_USERS = "SELECT rolname FROM pg_roles WHERE rolname LIKE 'relation_id_%'"
PSQL = ["psql", "-X", "-A", "-t", "-h", "/tmp", "-U", "postgres", "-d", "postgres", "-c"]


def superuser_query(model: Model, sql: str) -> str:
    """What the server's superuser sees (as `juju ssh` into its container would)."""
    pebble = model.pebble(f"{SERVER}/0", "postgresql")
    process = pebble.exec([*PSQL, sql], user="postgres", group="postgres", working_dir="/tmp")
    stdout, _ = process.wait_output()
    return stdout.strip()


@pytest.fixture(scope="module")
def relation(model: Model) -> RelationState:
    """PostgreSQL and a client asking for database `client` with SUPERUSER, integrated."""
    model.deploy(TEST_CHARMS / "postgresql-k8s")
    model.deploy(TEST_CHARMS / "postgresql-client-k8s", CLIENT)
    model.wait_for_idle([SERVER], timeout=180)
    integrated = model.integrate(CLIENT, SERVER)
    model.wait_for_idle(timeout=180)
    return integrated


def test_the_client_gets_postgresql_k8s_s_answer_and_connects_as_a_superuser(
    model: Model, relation: RelationState
) -> None:
    # Given a client integrated with PostgreSQL (the fixture)

    # Then the server answered with postgresql-k8s's keys, the credentials in secrets
    answer = model.relation_data(relation.id).app_data[SERVER]
    assert set(answer) == {"endpoints", "read-only-endpoints", "version", "database", "secret-user", "secret-tls"}
    assert answer["endpoints"] == f"{model.fqdn(f'{SERVER}/0')}:5432"
    assert answer["database"] == "client"
    assert answer["version"].startswith("15.")

    # When the client connects with what it was given
    result = model.run(f"{CLIENT}/0", "query")

    # Then it is the relation's own user, a superuser, on a server with logical decoding
    assert result.status == "completed", result.message
    assert result.results == {"user": f"relation_id_{relation.id}", "superuser": "true", "wal-level": "logical"}
    assert superuser_query(model, "SHOW max_replication_slots") == "25"


def test_other_users_and_other_databases_are_refused(model: Model, relation: RelationState) -> None:
    # When the client tries the superuser's name, then its own user on another database
    as_postgres = model.run(f"{CLIENT}/0", "query", {"username": "postgres"})
    elsewhere = model.run(f"{CLIENT}/0", "query", {"database": "postgres"})

    # Then PostgreSQL turns both away before any password is checked
    assert as_postgres.status == "failed"
    assert "no pg_hba.conf entry for host" in as_postgres.message
    assert 'user "postgres"' in as_postgres.message
    assert elsewhere.status == "failed"
    assert f'user "relation_id_{relation.id}", database "postgres"' in elsewhere.message


def test_a_pulsar_all_container_has_the_debezium_postgres_nar(model: Model, relation: RelationState) -> None:
    # Given the client's container of the pulsar-all image
    pebble = model.pebble(f"{CLIENT}/0", "connectors")

    # When it lists /pulsar/connectors, and a non-root process reads the NAR
    listed = [f.name for f in pebble.list_files("/pulsar/connectors/")]
    process = pebble.exec(
        ["sha512sum", f"/pulsar/connectors/{DEBEZIUM_POSTGRES_NAR}"], user="nobody", group="nogroup", working_dir="/"
    )
    stdout, _ = process.wait_output()

    # Then the connector is there, under the image's name, with the provisioned content, beside Pulsar
    assert listed == [DEBEZIUM_POSTGRES_NAR]
    assert stdout.split()[0] == DEBEZIUM_POSTGRES_SHA512
    assert pebble.list_files("/pulsar/bin/pulsar")[0].name == "pulsar"


def test_removing_the_relation_drops_the_user_and_its_secrets(model: Model, relation: RelationState) -> None:
    # Given the relation's user in PostgreSQL
    user = f"relation_id_{relation.id}"
    assert superuser_query(model, RELATION_USERS) == user

    # When the relation is removed
    model.remove_relation(CLIENT, SERVER)
    model.wait_for_idle([SERVER], timeout=120)

    # Then the user is gone, the credentials' secrets too, and the client has nothing to connect with
    assert superuser_query(model, RELATION_USERS) == ""
    assert not [s for s in model.secrets.values() if (s.label or "").startswith(f"database.{relation.id}.")]
    assert model.run(f"{CLIENT}/0", "query").message == "no database shared yet"
    # And the database and its data stay, as postgresql-k8s keeps them
    assert superuser_query(model, "SELECT datname FROM pg_database WHERE datname = 'client'") == "client"
