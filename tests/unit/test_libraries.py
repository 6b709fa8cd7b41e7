"""Charm libraries: one owner, identical copies everywhere else, and the helpers' behaviour."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import lightkube
import pytest
from helpers.kubernetes import FakeKubernetes
from ops import testing

from pulsar_k8s.charm import PulsarCharm
from pulsar_k8s.charms.pulsar_k8s.v0 import pulsar_workload, refresh, rolling_restart
from pulsar_k8s.charms.pulsar_k8s.v0.pulsar_workload import PebbleWorkload, WorkloadCommandError

CHARMS_DIR = Path(__file__).resolve().parents[2] / "charms"
TEST_CHARMS_DIR = Path(__file__).resolve().parents[1] / "sandbox" / "charms"
OWNER = CHARMS_DIR / "pulsar-k8s" / "lib" / "charms" / "pulsar_k8s"
OWNED_LIBS = sorted(OWNER.rglob("*.py"))
COPIES = [
    pytest.param(owned, copy, id=f"{copy.parents[4].name}/{copy.name}")
    for owned in OWNED_LIBS
    for copy in sorted(
        [
            *CHARMS_DIR.glob(f"*/lib/charms/pulsar_k8s/{owned.relative_to(OWNER)}"),
            *TEST_CHARMS_DIR.glob(f"*/lib/charms/pulsar_k8s/{owned.relative_to(OWNER)}"),
        ]
    )
    if copy != owned
]


@pytest.mark.parametrize(("owned", "copy"), COPIES)
def test_library_copies_are_identical(owned: Path, copy: Path) -> None:
    assert copy.read_bytes() == owned.read_bytes(), f"{copy} drifted from {owned}: copy it again"


@pytest.mark.parametrize("library", ["rolling_restart.py", "refresh.py"])
def test_the_stateful_charms_carry_the_restart_and_refresh_libraries(library: str) -> None:
    # The restart lock and the refresh guard are one mechanism each for both charms.
    owned = OWNER / "v0" / library
    copy = CHARMS_DIR / "bookie-k8s" / "lib" / "charms" / "pulsar_k8s" / "v0" / library
    assert copy.is_file(), f"bookie-k8s lacks its copy of {library}"
    assert copy.read_bytes() == owned.read_bytes(), f"{copy} drifted from {owned}: copy it again"


def test_every_charm_carries_the_libraries_it_imports() -> None:
    for charm in sorted(p for p in CHARMS_DIR.iterdir() if (p / "charmcraft.yaml").is_file()):
        for source in (charm / "src").rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("charms."):
                    path = charm / "lib" / (node.module.replace(".", "/") + ".py")
                    assert path.is_file(), f"{source} imports {node.module}, missing at {path}"


@pytest.mark.parametrize("owned", OWNED_LIBS, ids=lambda p: p.name)
def test_library_declares_its_identity(owned: Path) -> None:
    assignments = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(owned.read_text()).body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id in ("LIBID", "LIBAPI", "LIBPATCH")
    }
    assert set(assignments) == {"LIBID", "LIBAPI", "LIBPATCH"}
    assert assignments["LIBAPI"] == int(owned.parent.name.removeprefix("v"))
    assert assignments["LIBPATCH"] >= 1


def _workload(ctx: testing.Context, state: testing.State, fn):  # type: ignore[no-untyped-def]
    with ctx(ctx.on.update_status(), state) as manager:
        result = fn(PebbleWorkload(manager.charm.unit.get_container("pulsar")))
        return result, manager.run()


def test_a_failing_command_surfaces_its_exit_code_and_stderr() -> None:
    # Given a command that fails in the container
    ctx = testing.Context(PulsarCharm)
    failing = testing.Exec(["bin/pulsar"], return_code=3, stderr="Error: metadata store unreachable\n")
    state = testing.State(containers={testing.Container("pulsar", can_connect=True, execs={failing})})

    # When the charm runs it
    def run(workload: PebbleWorkload) -> WorkloadCommandError:
        with pytest.raises(WorkloadCommandError) as raised:
            workload.run(["bin/pulsar", "initialize-cluster-metadata"])
        return raised.value

    error, _ = _workload(ctx, state, run)

    # Then the error carries the exit code and the last line of stderr
    assert error.exit_code == 3
    assert str(error) == "bin/pulsar initialize-cluster-metadata exited 3: Error: metadata store unreachable"
    assert ctx.exec_history["pulsar"][0].command == ["bin/pulsar", "initialize-cluster-metadata"]


def test_write_pushes_only_when_the_content_changes(tmp_path: Path) -> None:
    # Given a container whose config file already holds the rendered content
    ctx = testing.Context(PulsarCharm)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "broker.conf").write_text("clusterName=pulsar\n")
    mounts = {"conf": testing.Mount(location="/pulsar/conf", source=conf)}
    state = testing.State(containers={testing.Container("pulsar", can_connect=True, mounts=mounts)})

    # When the same content, then new content, is written
    def write_twice(workload: PebbleWorkload) -> tuple[bool, bool]:
        return (
            workload.write("/pulsar/conf/broker.conf", "clusterName=pulsar\n"),
            workload.write("/pulsar/conf/broker.conf", "clusterName=other\n"),
        )

    (unchanged, changed), _ = _workload(ctx, state, write_twice)

    # Then only the second write touches the file
    assert (unchanged, changed) == (False, True)
    assert (conf / "broker.conf").read_text() == "clusterName=other\n"


def waiting(*services: str) -> rolling_restart.RestartRequest:
    return rolling_restart.RestartRequest(rolling_restart.WAITING, list(services))


def restarted(*services: str) -> rolling_restart.RestartRequest:
    return rolling_restart.RestartRequest(rolling_restart.RESTARTED, list(services))


class TestRollingRestart:
    def test_only_running_services_with_changed_fingerprints_are_stale(self) -> None:
        desired = {"zookeeper": "a", "broker": "b"}
        assert rolling_restart.stale_services(
            desired, {"zookeeper": "a", "broker": "old"}, {"zookeeper", "broker"}
        ) == ["broker"]
        assert rolling_restart.stale_services(desired, {}, set()) == []  # nothing runs: start freely

    def test_the_lock_goes_to_one_unit_at_a_time(self) -> None:
        requests = {"p/0": None, "p/1": waiting("broker"), "p/2": waiting("zookeeper")}
        assert rolling_restart.next_holder(requests, None) == "p/1"
        # The holder keeps it while restarting, even when others wait
        requests["p/1"] = restarted("broker")
        assert rolling_restart.next_holder(requests, "p/1") == "p/1"
        # Once it serves again, the next unit gets it
        requests["p/1"] = None
        assert rolling_restart.next_holder(requests, "p/1") == "p/2"

    def test_nobody_gets_the_lock_while_a_restart_is_unfinished(self) -> None:
        assert rolling_restart.next_holder({"p/0": restarted("zookeeper"), "p/1": waiting("broker")}, None) is None

    def test_a_unit_the_charm_holds_back_is_passed_over(self) -> None:
        requests = {"p/0": waiting("zookeeper"), "p/1": waiting("broker")}
        # Only broker restarts may go: the lowest unit waiting for one gets the lock
        only_brokers = lambda _unit, request: "zookeeper" not in request.services  # noqa: E731
        assert rolling_restart.next_holder(requests, None, only_brokers) == "p/1"
        assert rolling_restart.next_holder({"p/0": waiting("zookeeper")}, None, only_brokers) is None

    def test_fingerprints_change_with_any_part(self) -> None:
        assert rolling_restart.fingerprint("conf", {"env": 1}) != rolling_restart.fingerprint("conf", {"env": 2})
        assert rolling_restart.fingerprint("conf", {"env": 1}) == rolling_restart.fingerprint("conf", {"env": 1})


def _units(*units: tuple[int, str, bool] | tuple[int, str, bool, bool]) -> list[refresh.UnitRefresh]:
    return [refresh.UnitRefresh(*unit) for unit in units]


def _sts(partition: int, current: str = "a", update: str = "a", replicas: int = 3) -> refresh.StatefulSetRevisions:
    return refresh.StatefulSetRevisions(partition, replicas, current, update)


class TestRefreshPlan:
    def test_in_steady_state_the_partition_is_armed_at_the_highest_ordinal(self) -> None:
        units = _units((0, "a", True), (1, "a", True), (2, "a", False))
        plan = refresh.plan_partition(units, _sts(0))
        assert (plan.partition, plan.rolling, plan.updated) == (2, False, 3)
        # A pod not in the peer relation yet still counts: the StatefulSet's replicas say where the top is
        assert refresh.plan_partition(units[:2], _sts(0, replicas=3)).partition == 2

    def test_a_refreshed_unit_that_serves_lowers_the_partition_by_one(self) -> None:
        units = _units((0, "a", True), (1, "a", True), (2, "b", True))
        plan = refresh.plan_partition(units, _sts(2, "a", "b"))
        assert (plan.partition, plan.rolling, plan.updated, plan.total) == (1, True, 1, 3)
        assert not plan.in_flight

    def test_stale_serving_from_the_old_pod_does_not_count(self) -> None:
        units = _units((0, "a", True), (1, "a", True), (2, "a", True))
        plan = refresh.plan_partition(units, _sts(2, "a", "b"))
        assert plan.partition == 2
        assert plan.in_flight
        assert "has not said it runs the new revision" in plan.waits_for

    def test_a_refreshed_unit_that_does_not_serve_yet_holds_it(self) -> None:
        units = _units((0, "a", True), (1, "a", True), (2, "b", False))
        assert refresh.plan_partition(units, _sts(2, "a", "b")).partition == 2

    def test_another_unit_not_serving_holds_it(self) -> None:
        units = _units((0, "a", False), (1, "a", True), (2, "b", True))
        plan = refresh.plan_partition(units, _sts(2, "a", "b"))
        assert (plan.partition, plan.in_flight) == (2, False)

    def test_a_restart_asked_for_or_held_holds_it(self) -> None:
        units = _units((0, "a", True), (1, "a", True, True), (2, "b", True))
        assert refresh.plan_partition(units, _sts(2, "a", "b")).partition == 2
        units = _units((0, "a", True), (1, "a", True), (2, "b", True))
        assert refresh.plan_partition(units, _sts(2, "a", "b"), lock_held=True).partition == 2

    def test_the_partition_is_never_raised_during_a_roll(self) -> None:
        # Unit 1 is being replaced: raising to 2 would put unit 2 back on the old revision
        units = _units((0, "a", True), (1, "", False), (2, "b", True))
        assert refresh.plan_partition(units, _sts(1, "a", "b")).partition == 1
        # With no partition, the StatefulSet rolls on by itself; the guard does not step in
        assert refresh.plan_partition(units, _sts(0, "a", "b")).partition == 0

    def test_a_partition_above_every_pod_comes_down_to_the_highest(self) -> None:
        units = _units((0, "a", True), (1, "a", True))
        assert refresh.plan_partition(units, _sts(5, "a", "b", replicas=2)).partition == 1

    def test_the_refusal_says_what_to_wait_for(self) -> None:
        serving = {f"p/{n}": refresh.UnitRefresh(n, "a", True) for n in range(3)}
        assert refresh.refusal(serving, _sts(2), "") is None
        assert "refresh is under way" in (refresh.refusal(serving, _sts(2, "a", "b"), "") or "")
        down = {**serving, "p/1": refresh.UnitRefresh(1, "a", False)}
        assert refresh.refusal(down, _sts(2), "") == "not every unit serves (p/1): refresh once they do"
        assert "restart is under way or asked for (p/2)" in (refresh.refusal(serving, _sts(2), "p/2") or "")


class TestKubernetes:
    def test_reads_and_patches_go_to_the_applications_statefulset_and_pods(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        cluster = FakeKubernetes("app").refreshing(replicas=3, partition=2)
        monkeypatch.setattr(lightkube, "Client", cluster.client)
        api = refresh.Kubernetes("app", "model")
        assert api.statefulset() == refresh.StatefulSetRevisions(2, 3, "rev-old", "rev-new")
        assert (api.pod_revision("app/2"), api.pod_revision("app/1")) == ("rev-new", "rev-old")
        api.set_partition(1)
        assert cluster.patches == [{"spec": {"updateStrategy": {"rollingUpdate": {"partition": 1}}}}]
        assert cluster.namespaces == {"model"}

    def test_a_refusal_says_how_to_trust_the_application(self, monkeypatch: pytest.MonkeyPatch) -> None:
        cluster = FakeKubernetes("app", trusted=False)
        monkeypatch.setattr(lightkube, "Client", cluster.client)
        with pytest.raises(refresh.NotTrustedError, match=r"^not trusted: juju trust app --scope=cluster$"):
            refresh.Kubernetes("app", "model").statefulset()

    def test_an_unreachable_api_is_an_error_with_the_reason(self, monkeypatch: pytest.MonkeyPatch) -> None:
        cluster = FakeKubernetes("app", reachable=False)
        monkeypatch.setattr(lightkube, "Client", cluster.client)
        with pytest.raises(refresh.KubernetesError, match=r"Kubernetes API unreachable: .*Connection refused"):
            refresh.Kubernetes("app", "model").pod_revision("app/0")

    def test_without_credentials_the_client_cannot_be_made(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def no_config(*_: object, **__: object) -> lightkube.Client:
            raise lightkube.ConfigError("Configuration file ~/.kube/config not found")

        monkeypatch.setattr(lightkube, "Client", no_config)
        with pytest.raises(refresh.KubernetesError, match="no Kubernetes API credentials"):
            refresh.Kubernetes("app", "model").statefulset()


class TestClusterDomain:
    def test_the_domain_is_read_from_the_models_search_entry(self) -> None:
        resolv = "nameserver 10.0.0.10\nsearch m.svc.example.internal svc.example.internal example.internal\n"
        assert pulsar_workload.cluster_domain("m", resolv) == "example.internal"
        assert pulsar_workload.pod_fqdn("app/3", "m", "example.internal") == (
            "app-3.app-endpoints.m.svc.example.internal"
        )

    @pytest.mark.parametrize(
        "resolv", ["", "nameserver 10.0.0.10\n", "search other.svc.example.internal\n", "search m.example.internal\n"]
    )
    def test_without_the_models_entry_it_is_cluster_local(self, resolv: str) -> None:
        assert pulsar_workload.cluster_domain("m", resolv) == "cluster.local"


@dataclasses.dataclass
class _Member:
    id: int
    host: str


@dataclasses.dataclass
class _Databag:
    name: str = dataclasses.field(default="", metadata={"alias": "the-name"})
    count: int = 0
    ready: bool = False
    members: list[_Member] = dataclasses.field(default_factory=list)
    holder: str | None = None


class TestDatabags:
    def _roundtrip(self, databag: dict[str, str], change=None):  # type: ignore[no-untyped-def]
        """Read `databag` as _Databag in a charm's event, apply `change`, write it back."""
        ctx = testing.Context(PulsarCharm)
        relation = testing.PeerRelation("cluster", local_unit_data=databag)
        state = testing.State(relations={relation}, containers={testing.Container("pulsar")})
        with ctx(ctx.on.update_status(), state) as manager:
            live = manager.charm.model.get_relation("cluster")
            assert live is not None
            try:
                read = pulsar_workload.read_databag(live, _Databag, manager.charm.unit)
            except pulsar_workload.InvalidDatabagError as error:
                read = error
            if change is not None and isinstance(read, _Databag):
                pulsar_workload.write_databag(live, change(read), manager.charm.unit)
            out = manager.run()
        return read, out.get_relation(relation.id).local_unit_data

    def test_values_are_json_and_keys_keep_their_juju_names(self) -> None:
        read, _ = self._roundtrip({"the-name": '"x"', "count": "3", "members": '[{"id": 1, "host": "h"}]'})
        assert read == _Databag(name="x", count=3, members=[_Member(1, "h")])

    def test_an_empty_databag_is_absent(self) -> None:
        assert self._roundtrip({"unrelated": '"x"'})[0] is None

    @pytest.mark.parametrize(
        ("databag", "reason"),
        [
            ({"count": "three"}, "key 'count' is not JSON: 'three'"),
            ({"count": '"3"'}, "key 'count': expected int, got '3'"),
            ({"ready": "1"}, "key 'ready': expected bool, got 1"),
            ({"count": "true"}, "key 'count': expected int, got True"),
            ({"members": '[{"id": 1}]'}, "key 'members': "),
        ],
    )
    def test_data_that_does_not_match_the_schema_is_an_error_naming_the_key(
        self, databag: dict[str, str], reason: str
    ) -> None:
        read, _ = self._roundtrip(databag)
        assert isinstance(read, pulsar_workload.InvalidDatabagError)
        assert reason in str(read)

    def test_empty_values_erase_their_keys(self) -> None:
        databag = {"the-name": '"x"', "holder": '"u/1"', "count": "2"}
        _, written = self._roundtrip(databag, lambda d: dataclasses.replace(d, name="", holder=None, ready=True))
        assert written == {"count": "2", "ready": "true"}
