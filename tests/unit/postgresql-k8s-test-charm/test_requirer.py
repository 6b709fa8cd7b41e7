"""The postgresql-client-k8s test charm asks as data-platform-libs' requirer does, and connects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.charm_modules import load_charm_module
from ops import testing

CHARM_DIR = Path(__file__).resolve().parents[2] / "sandbox" / "charms" / "postgresql-client-k8s"
ENDPOINT = "postgresql-k8s-0.postgresql-k8s-endpoints.test.svc.cluster.local:5432"


charm = load_charm_module(CHARM_DIR, "postgresql_client_k8s_test_charm")


@pytest.fixture
def ctx() -> testing.Context:
    return testing.Context(charm.PostgreSQLClientCharm)


def shared_relation() -> tuple[testing.Relation, testing.Secret]:
    secret = testing.Secret({"username": "relation_id_4", "password": "0123456789abcdef"}, owner=None)
    relation = testing.Relation(
        "database",
        remote_app_name="postgresql-k8s",
        remote_app_data={"endpoints": ENDPOINT, "database": "client", "secret-user": secret.id, "version": "15.18"},
    )
    return relation, secret


def test_the_leader_asks_for_a_database_a_superuser_and_secrets(ctx: testing.Context) -> None:
    # Given the leader of a client
    relation = testing.Relation("database", remote_app_name="postgresql-k8s")
    state = testing.State(leader=True, relations={relation})

    # When the relation is created
    out = ctx.run(ctx.on.relation_created(relation), state)

    # Then its application data asks for the database, SUPERUSER and the credentials in secrets
    request = out.get_relation(relation.id).local_app_data
    assert request["database"] == "client"
    assert request["extra-user-roles"] == "SUPERUSER"
    requested = ["username", "password", "tls", "tls-ca", "uris", "read-only-uris"]
    assert json.loads(request["requested-secrets"]) == requested
    assert out.unit_status == testing.WaitingStatus("waiting for credentials")


def test_query_connects_with_the_shared_credentials(ctx: testing.Context) -> None:
    # Given shared credentials, and a server that answers
    relation, secret = shared_relation()
    psql = testing.Exec(["psql"], stdout="relation_id_4 t\nlogical\n")
    container = testing.Container("client", can_connect=True, execs={psql})
    state = testing.State(relations={relation}, secrets={secret}, containers={container})

    # When the query action runs
    ctx.run(ctx.on.action("query"), state)

    # Then it reports the session's user, its superuser bit and wal_level
    assert ctx.action_results == {"user": "relation_id_4", "superuser": "true", "wal-level": "logical"}
    # And psql got the endpoint and user on its command line, the password only in its environment
    call = ctx.exec_history["client"][0]
    assert call.command[call.command.index("-h") + 1 : call.command.index("-h") + 6] == [
        ENDPOINT.rsplit(":", 1)[0],
        "-p",
        "5432",
        "-U",
        "relation_id_4",
    ]
    assert "0123456789abcdef" not in " ".join(call.command)
    assert call.environment["PGPASSWORD"] == "0123456789abcdef"


def test_a_refused_connection_fails_the_action_with_psql_s_error(ctx: testing.Context) -> None:
    # Given a server that refuses the user
    relation, secret = shared_relation()
    refused = 'psql: error: FATAL:  no pg_hba.conf entry for host "10.97.0.3", user "postgres"'
    container = testing.Container(
        "client", can_connect=True, execs={testing.Exec(["psql"], return_code=2, stderr=refused)}
    )
    state = testing.State(relations={relation}, secrets={secret}, containers={container})

    # When the query action runs as another user
    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action("query", params={"username": "postgres"}), state)

    # Then it fails with psql's exit code and error
    assert failure.value.message == f"psql exit 2: {refused}"
