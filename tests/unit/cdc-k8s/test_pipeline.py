"""cdc-k8s pure logic: the config as a whole, the user secret, and the names and values of the pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc_k8s.charms.pulsar_k8s.v0.pulsar_workload import InvalidConfigError, template_environment
from cdc_k8s.managers.connector import last_error
from cdc_k8s.managers.metrics import pipeline_counts
from cdc_k8s.managers.pipeline import Names, function_values, source_values
from cdc_k8s.managers.postgres import NoSource, PostgresConnection, SourceProblem, from_user_secret
from cdc_k8s.managers.settings import CdcSettings, Table

TEMPLATES = Path(__file__).resolve().parents[3] / "charms" / "cdc-k8s" / "templates"
DEFAULTS = {"database-name": "cdc", "tables": "public.customers", "topic-prefix": "cdc", "snapshot-mode": "initial"}
DATABASE = PostgresConnection("10.1.2.3", 5432, "cdc", "relation_id_7", "s3cret", source="relation")


def _settings(**changes: Any) -> CdcSettings:
    return CdcSettings.parse({**DEFAULTS, **changes})


def test_the_defaults_capture_one_table_from_the_initial_snapshot() -> None:
    settings = _settings()
    assert settings.tables == (Table("public", "customers"),)
    assert settings.snapshot_mode == "initial"
    assert settings.routing_map == {}


def test_several_tables_keep_their_order_once_each() -> None:
    settings = _settings(tables=" public.customers, sales.orders ,public.customers,")
    assert [str(t) for t in settings.tables] == ["public.customers", "sales.orders"]


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("tables", "customers", "'customers' is not schema.table"),
        ("tables", "public.cust omers", "is not schema.table"),
        ("tables", " , ", "name at least one schema.table"),
        ("snapshot-mode", "when_needed", "'when_needed' is not one of initial, initial_only, never"),
        ("snapshot-mode", "custom", "is not one of"),
        ("topic-prefix", "cdc/x", "letters, digits"),
        ("database-name", "", "is not a database name"),
        ("routing-field", "after..region", "is not a dotted field path"),
        ("routing-map", "eu-west", "is not value=suffix"),
        ("routing-map", "eu-west=e u", "is not value=suffix"),
    ],
)
def test_a_bad_value_names_its_option_and_why(option: str, value: str, reason: str) -> None:
    # Given a config with one bad value (routing needs its field for the map to be checked)
    config = {"routing-field": "after.region"} if option == "routing-map" else {}

    # When it is parsed, Then the error names the option and says what is wrong
    with pytest.raises(InvalidConfigError) as raised:
        _settings(**config, **{option: value})
    assert raised.value.option == option
    assert reason in str(raised.value)


def test_routing_maps_values_to_suffixes_and_needs_its_field() -> None:
    settings = _settings(**{"routing-field": "after.region", "routing-map": "eu-west=eu, us-east = us"})
    assert settings.routing_map == {"eu-west": "eu", "us-east": "us"}
    with pytest.raises(InvalidConfigError) as raised:
        _settings(**{"routing-map": "eu-west=eu"})
    assert raised.value.option == "routing-map"


def test_a_user_secret_gives_a_connection_or_says_what_it_lacks() -> None:
    content = {"host": "db.example", "port": "6432", "database": "shop", "user": "cdc", "password": "pw"}
    connection = from_user_secret(content)
    assert isinstance(connection, PostgresConnection)
    assert (connection.host, connection.port, connection.source, connection.tls) == (
        "db.example",
        6432,
        "secret",
        False,
    )
    assert from_user_secret({**content, "ca": "-----BEGIN CERTIFICATE-----"}).tls  # type: ignore[union-attr]
    assert from_user_secret({"host": "db"}) == NoSource(
        SourceProblem.SECRET_INVALID, "it lacks port, database, user, password"
    )
    assert from_user_secret({**content, "port": "70000"}) == NoSource(
        SourceProblem.SECRET_INVALID, "port '70000' is not a TCP port"
    )


def test_a_connection_never_shows_its_password() -> None:
    assert "s3cret" not in repr(DATABASE)
    assert "s3cret" not in str(DATABASE)


def test_slot_and_publication_are_valid_postgresql_names_of_the_application() -> None:
    names = Names("CDC-k8s.prod", "cdc-k8s/default", "cdc")
    assert names.slot == "cdc_cdc_k8s_prod"
    assert names.publication == "cdc_cdc_k8s_prod_publication"
    assert len(Names("x" * 80, "a/b", "p").slot) == 63


def _render(template: str, values: dict[str, object]) -> dict[str, Any]:
    return json.loads(template_environment(TEMPLATES).get_template(template).render(**values))


def test_the_source_config_is_strings_only_and_holds_no_password() -> None:
    # Given two tables and a database without TLS
    names = Names("cdc-k8s", "cdc-k8s/default", "cdc")
    settings = _settings(tables="public.customers,public.orders", **{"snapshot-mode": "never"})

    # When the source config is rendered
    rendered = _render("source.json.j2", source_values(names, settings, DATABASE, "/pulsar/connectors/x.nar", None))

    # Then every connector value is a string, the password is left to the secrets provider
    configs = rendered["configs"]
    assert all(isinstance(v, str) for v in configs.values())
    assert configs["database.password"] == "${PG_PASSWORD}"
    assert "s3cret" not in json.dumps(rendered)
    # and Debezium gets pgoutput, our slot, and our publication (the charm keeps its tables)
    assert configs["plugin.name"] == "pgoutput"
    assert configs["slot.name"] == "cdc_cdc_k8s"
    assert configs["publication.name"] == "cdc_cdc_k8s_publication"
    assert configs["publication.autocreate.mode"] == "disabled"
    assert configs["table.include.list"] == "public.customers,public.orders"
    assert configs["snapshot.mode"] == "never"
    assert configs["database.port"] == "5432"
    assert configs["decimal.handling.mode"] == "string"
    assert configs["database.sslmode"] == "disable"
    assert configs["database.server.name"] == "cdc"
    assert (rendered["tenant"], rendered["namespace"], rendered["archive"]) == (
        "cdc-k8s",
        "default",
        "/pulsar/connectors/x.nar",
    )


def test_generation_0_keeps_the_default_offset_topic_and_later_ones_get_their_own() -> None:
    # Given the names of generation 0 (as deployed before resnapshot existed) and of generation 3
    first = Names("cdc-k8s", "cdc-k8s/default", "cdc")
    third = Names("cdc-k8s", "cdc-k8s/default", "cdc", generation=3)

    # When their source configs are rendered
    def configs(names: Names) -> dict[str, Any]:
        return _render("source.json.j2", source_values(names, _settings(), DATABASE, "a.nar", None))["configs"]

    # Then generation 0 leaves the key out (the connector's default topic, where the offsets are)
    assert "offset.storage.topic" not in configs(first)
    assert first.offset_topic == "persistent://cdc-k8s/default/cdc-k8s-source-debezium-offset-topic"
    # and generation 3 names a topic of its own, as a string
    assert configs(third)["offset.storage.topic"] == (
        "persistent://cdc-k8s/default/cdc-k8s-source-debezium-offset-topic-3"
    )
    # and the slot and the publication stay the same across generations
    assert (third.slot, third.publication) == (first.slot, first.publication)


def test_the_source_log_config_keeps_errors_one_line_each_in_a_small_file() -> None:
    # When the source's log4j2 config is rendered
    text = (
        template_environment(TEMPLATES)
        .get_template("source-log4j2.yaml.j2")
        .render(errors_file="/var/lib/cdc/source-errors.log", max_size="64 KB")
    )
    config = yaml.safe_load(text)["Configuration"]

    # Then everything goes to the console (Pebble keeps it), as Pulsar's own config does
    appenders = config["Appenders"]
    assert appenders["Console"]["target"] == "SYSTEM_OUT"
    assert {"ref": "Console"} in config["Loggers"]["Root"]["AppenderRef"]
    # and ERROR events also go to the errors file, size-capped with one rolled-over part
    errors = appenders["RollingFile"]
    assert errors["name"] == "Errors"
    assert errors["fileName"] == "/var/lib/cdc/source-errors.log"
    assert errors["filePattern"] == "/var/lib/cdc/source-errors.log.%i"
    assert errors["Policies"]["SizeBasedTriggeringPolicy"]["size"] == "64 KB"
    assert errors["DefaultRolloverStrategy"]["max"] == 1
    assert {"ref": "Errors", "level": "error"} in config["Loggers"]["Root"]["AppenderRef"]
    # one line each: the root cause's first line, a tab, the message; line breaks escaped, no stack trace
    layout = errors["PatternLayout"]
    assert layout["alwaysWriteExceptions"] is False
    assert layout["Pattern"] == "%d{ISO8601_OFFSET_DATE_TIME_HHCMM} %enc{%rEx{1}}{CRLF}\t%enc{%msg}{CRLF}%n"


def test_the_last_error_line_is_the_connectors_root_cause_without_its_time() -> None:
    # Given two error lines, as log4j2 writes them: the time, the root cause (a line break in it
    # is a backslash and r or n), a tab, the message
    log = (
        "2025-03-01T10:00:00,120+00:00 \tfirst failure, logged without an exception\n"
        "2025-03-01T10:00:01,350+00:00 org.postgresql.util.PSQLException: ERROR: replication slot"
        ' "cdc_cdc_k8s" is active for PID 4242\\r\\n\t[cdc-k8s/default/cdc-k8s-source:0] Uncaught exception\n\n'
    )

    # When it is read, Then the last one's root cause is the error, on one line, without its time
    assert last_error(log) == (
        'org.postgresql.util.PSQLException: ERROR: replication slot "cdc_cdc_k8s" is active for PID 4242'
    )
    # and an error logged without an exception is its message
    assert last_error(log.splitlines()[0]) == "first failure, logged without an exception"
    assert last_error("") is None
    assert last_error("\n  \n") is None
    long = last_error("2025-03-01T10:00:00,000+00:00 " + "x" * 1000)
    assert long is not None
    assert len(long) == 300
    assert long.endswith("...")


def test_tls_verifies_the_server_against_the_ca_when_there_is_one() -> None:
    names = Names("cdc-k8s", "cdc-k8s/default", "cdc")
    tls = PostgresConnection("db", 5432, "cdc", "u", "p", tls=True, tls_ca="CA")
    configs = source_values(names, _settings(), tls, "a.nar", "/var/lib/cdc/postgresql-ca.pem")["connector"]
    assert configs["database.sslmode"] == "verify-full"  # type: ignore[index]
    assert configs["database.sslrootcert"] == "/var/lib/cdc/postgresql-ca.pem"  # type: ignore[index]
    without_ca = source_values(names, _settings(), tls, "a.nar", None)["connector"]
    assert without_ca["database.sslmode"] == "require"  # type: ignore[index]


def test_the_function_reads_every_table_topic_in_order_and_routes_by_config() -> None:
    # Given two tables and a routing map
    names = Names("cdc-k8s", "cdc-k8s/default", "cdc")
    settings = _settings(
        tables="public.customers,sales.orders", **{"routing-field": "after.region", "routing-map": "eu-west=eu"}
    )

    # When the function config is rendered
    rendered = _render("function.json.j2", function_values(names, settings, "/var/lib/cdc/function/enrichment.py"))

    # Then it reads both tables' topics, in one ordered (failover) subscription from the earliest
    assert rendered["inputs"] == [
        "persistent://cdc-k8s/default/cdc.public.customers",
        "persistent://cdc-k8s/default/cdc.sales.orders",
    ]
    assert rendered["retainOrdering"] is True
    assert rendered["subscriptionPosition"] == "Earliest"
    assert rendered["parallelism"] == 1
    assert rendered["className"] == "enrichment.Enrichment"
    assert rendered["userConfig"] == {
        "dead-letter-topic": "persistent://cdc-k8s/default/cdc.dead-letter",
        "routing-field": "after.region",
        "routing-map": {"eu-west": "eu"},
    }


SOURCE_METRICS = """\
# HELP pulsar_source_written_total Total number of records written to a Pulsar topic.
# TYPE pulsar_source_written_total counter
pulsar_source_written_total{tenant="cdc-k8s",namespace="cdc-k8s/default",name="cdc-k8s-source",instance_id="0"} 42.0
pulsar_source_source_exceptions_total{tenant="cdc-k8s",name="cdc-k8s-source",instance_id="0"} 1.0
"""
FUNCTION_METRICS = """\
pulsar_function_received_total{tenant="cdc-k8s",name="cdc-k8s-enrichment",instance_id="0"} 43.0
pulsar_function_last_invocation{tenant="cdc-k8s",name="cdc-k8s-enrichment",instance_id="0"} 1.7644716e+12
pulsar_function_user_metric_count{name="cdc-k8s-enrichment",metric="enriched"} 40.0
pulsar_function_user_metric_count{name="cdc-k8s-enrichment",metric="dead_lettered"} 3.0
pulsar_function_user_metric_count{name="cdc-k8s-enrichment",metric="source_lag_ms"} 40.0
pulsar_function_user_metric_sum{name="cdc-k8s-enrichment",metric="source_lag_ms"} 2000.0
pulsar_function_user_metric_sum{name="cdc-k8s-enrichment",metric="enriched"} 40.0
not a sample line
"""


def test_the_runners_counters_add_up_to_the_pipelines_figures() -> None:
    counts = pipeline_counts(SOURCE_METRICS, FUNCTION_METRICS)
    assert (counts.captured, counts.source_errors, counts.received) == (42, 1, 43)
    assert (counts.enriched, counts.dead_lettered, counts.publish_failed) == (40, 3, None)
    assert counts.last_change_ms == 1764471600000
    assert counts.last_lag_ms == 50.0


def test_a_runner_that_does_not_answer_gives_no_figure() -> None:
    counts = pipeline_counts(None, "")
    assert counts.captured is None
    assert counts.enriched is None
    assert counts.last_lag_ms is None
