"""The postgresql-k8s test charm speaks postgresql_client as Canonical's postgresql-k8s does.

The requirer asks in its application data (`database`, `extra-user-roles`,
`requested-secrets`); the provider's leader answers in its own (`endpoints`,
`read-only-endpoints`, `version`, `database`, `secret-user`, `secret-tls`), with the requested
credentials in application-owned secrets granted to the relation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.charm_modules import load_charm_module
from ops import testing

CHARM_DIR = Path(__file__).resolve().parents[2] / "sandbox" / "charms" / "postgresql-k8s"
FQDN = "postgresql-k8s-0.postgresql-k8s-endpoints.test.svc.cluster.local"
VERSION_ROW = "15.18 (Debian 15.18-0+deb12u1)"
REQUESTED = ["username", "password", "tls", "tls-ca", "uris", "read-only-uris"]


charm = load_charm_module(CHARM_DIR, "postgresql_k8s_test_charm")


@pytest.fixture(autouse=True)
def pod_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(charm, "unit_host", lambda: FQDN)


@pytest.fixture
def ctx() -> testing.Context:
    return testing.Context(charm.PostgreSQLCharm)


def workload(users: str = "") -> testing.Container:
    """A running PostgreSQL: pg_isready answers, psql reports the version and these relation users."""
    return testing.Container(
        "postgresql",
        can_connect=True,
        execs={
            testing.Exec(["initdb"]),
            testing.Exec(["pg_isready"]),
            testing.Exec(["psql", "-f", "-"]),
            testing.Exec(["psql", "-c", charm.VERSION_QUERY], stdout=VERSION_ROW + "\n"),
            testing.Exec(["psql", "-c", charm.USERS_QUERY], stdout=users),
            testing.Exec(["psql", "-c", charm.DATABASES_QUERY], stdout="postgres\ncdc\n"),
        },
    )


def scripts(ctx: testing.Context) -> str:
    """Every SQL script the charm sent to psql, in order."""
    return "\n".join(str(call.stdin) for call in ctx.exec_history.get("postgresql", []) if call.stdin)


def requirer(**data: str) -> testing.Relation:
    return testing.Relation("database", remote_app_name="cdc-k8s", remote_app_data=data)


def secret_content(out: testing.State, secret_id: str) -> dict[str, str]:
    return dict(out.get_secret(id=secret_id).latest_content or {})


def test_a_superuser_request_gets_a_superuser_and_its_credentials_in_granted_secrets(ctx: testing.Context) -> None:
    # Given a requirer that asks for database `cdc` with SUPERUSER and its credentials in secrets
    relation = requirer(database="cdc", **{"extra-user-roles": "SUPERUSER", "requested-secrets": json.dumps(REQUESTED)})
    state = testing.State(leader=True, containers={workload()}, relations={relation})

    # When the leader sees the request
    out = ctx.run(ctx.on.relation_changed(relation), state)

    # Then it answers with postgresql-k8s's keys: endpoints and version in the databag, credentials in secrets
    answer = out.get_relation(relation.id).local_app_data
    assert set(answer) == {"endpoints", "read-only-endpoints", "version", "database", "secret-user", "secret-tls"}
    assert answer["endpoints"] == f"{FQDN}:5432"
    assert answer["read-only-endpoints"] == f"{FQDN}:5432"
    assert answer["version"] == "15.18"
    assert answer["database"] == "cdc"
    user = f"relation_id_{relation.id}"
    credentials = secret_content(out, answer["secret-user"])
    password = credentials["password"]
    assert credentials == {
        "username": user,
        "password": password,
        "uris": f"postgresql://{user}:{password}@{FQDN}:5432/cdc",
        "read-only-uris": f"postgresql://{user}:{password}@{FQDN}:5432/cdc",
    }
    assert len(password) == 16
    assert password.isalnum()
    assert secret_content(out, answer["secret-tls"]) == {"tls": "False"}
    # And both secrets are the application's, labelled as postgresql-k8s labels them, granted to the relation
    for group in ("user", "tls"):
        secret = out.get_secret(id=answer[f"secret-{group}"])
        assert secret.owner == "app"
        assert secret.label == f"database.{relation.id}.{group}.secret"
        assert relation.id in secret.remote_grants
    # And PostgreSQL was asked for a superuser and the database, never shown the password itself
    sql = scripts(ctx)
    assert f'ALTER ROLE "{user}" WITH LOGIN SUPERUSER NOCREATEDB NOCREATEROLE PASSWORD \'SCRAM-SHA-256$4096:' in sql
    assert 'CREATE DATABASE "cdc"' in sql
    assert password not in sql
    assert out.unit_status == testing.ActiveStatus()


def test_without_requested_secrets_the_credentials_go_in_the_databag(ctx: testing.Context) -> None:
    # Given a requirer that asks for a database only (an old client, without secrets)
    relation = requirer(database="app")
    state = testing.State(leader=True, containers={workload()}, relations={relation})

    # When the leader sees the request
    out = ctx.run(ctx.on.relation_changed(relation), state)

    # Then the credentials are plain fields, and the user has no extra role
    answer = out.get_relation(relation.id).local_app_data
    user = f"relation_id_{relation.id}"
    assert answer["username"] == user
    assert answer["uris"] == f"postgresql://{user}:{answer['password']}@{FQDN}:5432/app"
    assert answer["tls"] == "False"
    assert not {"secret-user", "secret-tls", "read-only-uris"} & set(answer)
    assert "NOSUPERUSER NOCREATEDB NOCREATEROLE" in scripts(ctx)


def test_the_password_stays_the_same_on_later_events(ctx: testing.Context) -> None:
    # Given credentials already shared in a secret
    relation = requirer(database="cdc", **{"requested-secrets": json.dumps(REQUESTED)})
    state = testing.State(leader=True, containers={workload()}, relations={relation})
    first = ctx.run(ctx.on.relation_changed(relation), state)
    shared = first.get_relation(relation.id).local_app_data["secret-user"]

    # When another event comes
    out = ctx.run(ctx.on.update_status(), first)

    # Then the same secret carries the same password
    assert out.get_relation(relation.id).local_app_data["secret-user"] == shared
    assert secret_content(out, shared) == secret_content(first, shared)


@pytest.mark.parametrize("roles", ["REPLICATION", "superuser,pg_read_server_files"])
def test_an_unknown_extra_role_is_refused(ctx: testing.Context, roles: str) -> None:
    # Given a requirer that asks for a role postgresql-k8s does not grant
    relation = requirer(database="cdc", **{"extra-user-roles": roles})
    state = testing.State(leader=True, containers={workload()}, relations={relation})

    # When the leader sees the request
    out = ctx.run(ctx.on.relation_changed(relation), state)

    # Then it is blocked with postgresql-k8s's message, creates nobody and shares nothing
    assert out.unit_status == testing.BlockedStatus("invalid role(s) for extra user roles")
    assert out.get_relation(relation.id).local_app_data == {}
    assert "CREATE ROLE" not in scripts(ctx)


def test_each_user_may_connect_to_its_own_database_only(ctx: testing.Context) -> None:
    # Given two requirers with a database each
    first, second = requirer(database="cdc"), requirer(database="app")
    state = testing.State(leader=True, containers={workload()}, relations={first, second})

    # When the leader reconciles
    out = ctx.run(ctx.on.update_status(), state)

    # Then pg_hba.conf lets the charm in through the socket and each user into its database, no one else
    root = out.get_container("postgresql").get_filesystem(ctx)
    hba = (root / charm.PGDATA.lstrip("/") / "pg_hba.conf").read_text().splitlines()
    assert hba == [
        "local all postgres peer",
        f'host "cdc" "relation_id_{first.id}" all scram-sha-256',
        f'host "app" "relation_id_{second.id}" all scram-sha-256',
    ]


def test_a_request_before_the_database_is_named_gets_nothing(ctx: testing.Context) -> None:
    # Given a requirer that has not asked yet
    relation = requirer()
    state = testing.State(leader=True, containers={workload()}, relations={relation})

    # When the relation changes
    out = ctx.run(ctx.on.relation_changed(relation), state)

    # Then nothing is shared, and the unit is active
    assert out.get_relation(relation.id).local_app_data == {}
    assert out.unit_status == testing.ActiveStatus()


def test_a_broken_relation_loses_its_user_and_secrets(ctx: testing.Context) -> None:
    # Given credentials shared on a relation
    relation = requirer(database="cdc", **{"requested-secrets": json.dumps(REQUESTED)})
    shared = ctx.run(
        ctx.on.relation_changed(relation),
        testing.State(leader=True, containers={workload()}, relations={relation}),
    )
    user = f"relation_id_{relation.id}"
    state = testing.State(
        leader=True,
        containers={workload(users=f"{user}\n")},
        relations=shared.relations,
        secrets=shared.secrets,
    )

    # When the relation is removed
    out = ctx.run(ctx.on.relation_broken(shared.get_relation(relation.id)), state)

    # Then its secrets are gone and its user is dropped, after what it owned went to the superuser
    assert not [s for s in out.secrets if s.label and s.label.startswith(f"database.{relation.id}.")]
    sql = scripts(ctx)
    assert f'\\connect "cdc"\nREASSIGN OWNED BY "{user}" TO "postgres";\nDROP OWNED BY "{user}";' in sql
    assert f'DROP ROLE IF EXISTS "{user}";' in sql


def test_a_non_leader_runs_postgresql_and_shares_nothing(ctx: testing.Context) -> None:
    # Given a non-leader unit and a requirer's request
    relation = requirer(database="cdc")
    state = testing.State(leader=False, containers={workload()}, relations={relation})

    # When the relation changes
    out = ctx.run(ctx.on.relation_changed(relation), state)

    # Then PostgreSQL is planned with logical decoding, as the user postgres, and nothing is shared
    service = out.get_container("postgresql").plan.services["postgresql"]
    assert service.user == "postgres"
    assert "-c wal_level=logical" in service.command
    assert "-c max_replication_slots=25 -c max_wal_senders=25" in service.command
    assert out.get_relation(relation.id).local_app_data == {}
    assert "CREATE ROLE" not in scripts(ctx)


def test_endpoint_address_ip_names_the_primary_by_its_address_as_after_a_failover(ctx: testing.Context) -> None:
    # Given a served requirer, and the primary named by its address (tests play a failover so)
    relation = requirer(database="cdc", **{"extra-user-roles": "SUPERUSER", "requested-secrets": json.dumps(REQUESTED)})
    network = testing.Network("database", ingress_addresses=["10.1.2.3"])
    state = testing.State(
        leader=True,
        containers={workload()},
        relations={relation},
        networks={network},
        config={"endpoint-address": "ip"},
    )

    # When the leader answers
    out = ctx.run(ctx.on.config_changed(), state)

    # Then `endpoints` and the credentials' URIs name that address
    answer = out.get_relation(relation.id).local_app_data
    assert answer["endpoints"] == "10.1.2.3:5432"
    assert "@10.1.2.3:5432/cdc" in secret_content(out, answer["secret-user"])["uris"]
