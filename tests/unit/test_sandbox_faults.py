"""The sandbox's faults without pods: what the verbs accept and refuse, how a network cut is kept
with the model, how storage sizes are read, and how a volume is filled to the byte asked.

`ip`, `losetup` and the loop devices are stood in for; tests/sandbox/test_sandbox_faults.py
runs the real thing.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import threading
from pathlib import Path
from signal import Signals
from typing import Any

import pytest
from helpers.sandbox_models import GREETER, described_state

from sandbox import Model, SandboxError, cli, faults, persistence, pods, volume_filler, volumes
from sandbox.charmspec import CharmSpec
from sandbox.lifecycle import PodLifecycle
from sandbox.state import ModelState

MODEL_UUID = "0c4b8a1e-3f2d-4e5a-8b6c-7d8e9f0a1b2c"
GIB = 1 << 30
MIB = 1 << 20


class FakeIp:
    """`ip` for the model's pods: their bridge ports go down and up; what `ip -j` shows follows."""

    def __init__(self, model: ModelState) -> None:
        self.calls: list[list[str]] = []
        self.ports_up = {unit.pod.cluster_link: True for unit in model.units.values()}
        self.addresses = {unit.pod.netns: unit.pod.address for unit in model.units.values()}
        self.links = {unit.pod.netns: unit.pod.cluster_link for unit in model.units.values()}
        self.lost_addresses: set[str] = set()

    def __call__(self, argv: list[str], what: str, cwd: Path | None = None) -> str:
        self.calls.append(argv)
        match argv:
            case ["ip", "-n", _, "link", "set", port, ("up" | "down") as state]:
                self.ports_up[port] = state == "up"
                return ""
            case ["ip", "-j", "-n", _, "link", "show", "dev", port]:
                return json.dumps([{"master": "br0", "operstate": "UP" if self.ports_up[port] else "DOWN"}])
            case ["ip", "-j", "-n", ns, "addr", "show", "dev", "eth0"]:
                up = self.ports_up[self.links[ns]]
                inet = (
                    []
                    if ns in self.lost_addresses
                    else [{"family": "inet", "local": self.addresses[ns], "prefixlen": 16}]
                )
                return json.dumps([{"operstate": "UP" if up else "LOWERLAYERDOWN", "addr_info": inet}])
            case ["ip", "-j", "-n", ns, "route", "show", "dev", "eth0"]:
                up = self.ports_up[self.links[ns]]
                return json.dumps([{"dst": "10.97.0.0/16", "flags": [] if up else ["linkdown"]}])
        raise AssertionError(f"unexpected command {argv}")


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Model:
    """A model with one greeter application of two units, and no pods, where the CLI finds it.

    Nothing of this machine's namespaces or sockets is touched, whatever the model's name.
    """
    monkeypatch.setenv("PULSAR_SANDBOX_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(pods, "SOCKETS_ROOT", tmp_path / "sockets")
    monkeypatch.setattr(pods, "NETNS_DIR", tmp_path / "netns")
    monkeypatch.setattr(pods, "delete_netns", lambda name: None)
    created = Model(described_state(tmp_path / "home", "faults", MODEL_UUID, {"web": 2}))
    created.save()
    return created


@pytest.fixture
def ip(model: Model, monkeypatch: pytest.MonkeyPatch) -> FakeIp:
    fake = FakeIp(model.state)
    monkeypatch.setattr(pods, "run", fake)
    return fake


# ---------------------------------------------------------------------- storage sizes


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1G", GIB),
        ("512M", 512 * MIB),
        ("100", 100 * MIB),  # no suffix: MiB, as Juju reads it
        ("1.5G", 1536 * MIB),
        ("2GiB", 2 * GIB),
        ("10GB", 10 * GIB),
        ("1T", 1024 * GIB),
        ("0.5M", MIB),  # rounded up to a whole MiB
    ],
)
def test_storage_sizes_are_read_as_juju_reads_them(text: str, size: int) -> None:
    assert volumes.parse_size(text) == size


@pytest.mark.parametrize("text", ["1K", "abc", "", "-1G", "1 G", "G"])
def test_a_size_juju_would_refuse_is_refused(text: str) -> None:
    with pytest.raises(SandboxError, match="invalid size"):
        volumes.parse_size(text)


def test_a_volume_has_the_declared_minimum_size_or_jujus_default() -> None:
    # Given the charms' storage declarations
    greeter = CharmSpec.load(GREETER)

    # Then a declared minimum-size is the volume's size, and 1 GiB is the default
    assert volumes.declared_size({"type": "filesystem", "minimum-size": "2G"}) == 2 * GIB
    assert volumes.declared_size(greeter.storage["data"]) == volumes.DEFAULT_SIZE == GIB
    assert volumes.declared_size(None) == GIB


# ---------------------------------------------------------------------- signals


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("SIGKILL", "SIGKILL"),
        ("KILL", "SIGKILL"),
        ("kill", "SIGKILL"),
        ("9", "SIGKILL"),
        (9, "SIGKILL"),
        ("sigterm", "SIGTERM"),
        (Signals.SIGSTOP, "SIGSTOP"),
        ("CONT", "SIGCONT"),
    ],
)
def test_signals_are_taken_as_kill_takes_them(given: str | int, name: str) -> None:
    assert faults.signal_name(given) == name


@pytest.mark.parametrize("given", ["SIGHUP", "HUP", "1", "SIGUSR1", "", "bogus", Signals.SIGINT])
def test_other_signals_are_refused(given: str | int) -> None:
    with pytest.raises(SandboxError, match="use SIGKILL, SIGTERM, SIGSTOP, SIGCONT"):
        faults.signal_name(given)


@pytest.mark.parametrize(
    ("unit", "container", "signal", "message"),
    [
        ("web/0", "web", "SIGHUP", 'signal "SIGHUP" is not one the sandbox sends'),
        ("web/7", "web", "SIGKILL", 'unit "web/7" not found'),
        ("web/0", "db", "SIGKILL", 'unit web/0 has no container "db" \\(containers: web\\)'),
        ("web/0", "web", "SIGKILL", 'container "web" of unit web/0 is not running'),
    ],
)
def test_signalling_what_is_not_there_is_refused(
    model: Model, unit: str, container: str, signal: str, message: str
) -> None:
    with pytest.raises(SandboxError, match=message):
        model.signal_service(unit, container, "web", signal)


def test_the_cli_refuses_a_bad_signal_in_one_line(model: Model, capsys: pytest.CaptureFixture[str]) -> None:
    # When the user sends a signal the sandbox does not send
    code = cli.main(["-m", model.name, "signal", "web/0", "web", "web", "HUP"])

    # Then the command fails with one line that says which signals it sends
    assert code == 1
    assert capsys.readouterr().err == (
        'ERROR signal "HUP" is not one the sandbox sends: use SIGKILL, SIGTERM, SIGSTOP, SIGCONT\n'
    )


# ---------------------------------------------------------------------- network cuts


def test_a_cut_is_kept_with_the_model_and_lifted_from_another_process(model: Model, ip: FakeIp) -> None:
    # When a unit's pod is cut off
    model.cut_network("web/0")

    # Then its bridge port went down, and the saved model knows it, as status shows
    assert ip.calls == [["ip", "-n", "psb-faults", "link", "set", "v2", "down"]]
    loaded = Model.load(model.name)
    assert loaded.units["web/0"].pod.network_cut
    assert not loaded.units["web/1"].pod.network_cut
    assert "(network cut)" in next(line for line in loaded.status().splitlines() if line.startswith("web/0"))

    # When another process (the CLI) restores it
    assert cli.main(["-m", model.name, "restore-network", "web/0"]) == 0

    # Then the port is up, the pod's address and route are back, and the model says so
    assert ip.calls[1] == ["ip", "-n", "psb-faults", "link", "set", "v2", "up"]
    assert ip.ports_up["v2"]
    assert not Model.load(model.name).units["web/0"].pod.network_cut
    assert Model.load(model.name).units["web/0"].pod.network_problems() == []


def test_cutting_twice_or_restoring_what_is_not_cut_is_refused(model: Model, ip: FakeIp) -> None:
    # Given a connected pod
    with pytest.raises(SandboxError, match='the network of unit "web/0" is not cut'):
        model.restore_network("web/0")

    # When it is cut, a second cut is refused
    model.cut_network("web/0")
    with pytest.raises(SandboxError, match='the network of unit "web/0" is already cut'):
        model.cut_network("web/0")
    with pytest.raises(SandboxError, match='unit "web/9" not found'):
        model.cut_network("web/9")


def test_a_cut_the_saved_model_forgot_is_still_restored(model: Model, ip: FakeIp) -> None:
    # Given a pod whose port is down while the model does not record a cut (another process saved over it)
    model.cut_network("web/1")
    model.units["web/1"].pod.network_cut = False

    # When its network is restored
    model.restore_network("web/1")

    # Then the port is up again
    assert ip.ports_up["v3"]


def test_network_cut_restores_even_when_the_block_fails(model: Model, ip: FakeIp) -> None:
    # When the block run while the pod is cut raises
    port_up_inside: list[bool] = []

    def fail_while_cut() -> None:
        with model.network_cut("web/0"):
            port_up_inside.append(ip.ports_up["v2"])
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_while_cut()

    # Then the pod was cut inside the block, and connected again after it
    assert port_up_inside == [False]
    assert ip.ports_up["v2"]
    assert not model.units["web/0"].pod.network_cut


def test_a_restore_that_does_not_bring_the_address_back_fails_and_says_so(model: Model, ip: FakeIp) -> None:
    # Given a cut pod whose interface lost its address meanwhile
    pod = model.units["web/0"].pod
    model.cut_network("web/0")
    ip.lost_addresses.add(pod.netns)

    # When its network is restored, the check fails with what is missing
    with pytest.raises(SandboxError, match=r"is not back after 0s: eth0 lost 10\.97\.0\.2/16"):
        pod.restore_network(timeout=0.1)


def test_a_new_pod_of_a_cut_unit_starts_connected(model: Model, ip: FakeIp, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a cut pod
    model.cut_network("web/0")
    started: list[str] = []
    monkeypatch.setattr(PodLifecycle, "start_pod", lambda _, unit: started.append(unit.name))

    # When Kubernetes replaces it
    PodLifecycle(model.state, threading.RLock()).replace_pod(model.units["web/0"], move_leader=False)

    # Then the new pod is connected
    assert started == ["web/0"]
    assert ip.ports_up["v2"]
    assert not model.units["web/0"].pod.network_cut


def test_a_pod_saved_before_network_cuts_existed_loads_connected(model: Model) -> None:
    # Given a pod pickled without the field
    pod = model.units["web/0"].pod
    del pod.__dict__["network_cut"]

    # When it is loaded
    loaded = pickle.loads(pickle.dumps(pod))  # noqa: S301 - our own pickle

    # Then it is connected
    assert loaded.network_cut is False


# ---------------------------------------------------------------------- storage


@pytest.mark.parametrize(
    ("storage", "leave", "message"),
    [
        ("logs", 0, 'unit web/0 has no storage "logs" \\(storage: data\\)'),
        ("data", -1, "cannot leave -1 bytes free: give 0 or more"),
        ("data", 0, 'storage "data" of web/0 is not attached'),
    ],
)
def test_filling_what_is_not_there_is_refused(model: Model, storage: str, leave: int, message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        model.fill_storage("web/0", storage, leave)


@pytest.fixture
def loop(model: Model, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """web/0's volume on /dev/loop9; the calls that fill and free it."""
    image = model.units["web/0"].pod.volume_image("data").resolve()
    calls: list[tuple[str, Any]] = []
    filled: set[str] = set()

    def fill(device: str, leave: int) -> int:
        calls.append(("fill", device, leave))
        filled.add(device)
        return leave

    def free(device: str) -> bool:
        calls.append(("free", device))
        was = device in filled
        filled.discard(device)
        return was

    monkeypatch.setattr(volumes, "loop_devices", lambda: {"/dev/loop9": image})
    monkeypatch.setattr(volumes, "fill", fill)
    monkeypatch.setattr(volumes, "free", free)
    return calls


def test_storage_filled_frees_even_when_the_block_fails(model: Model, loop: list[tuple[str, Any]]) -> None:
    # When a block that runs with a full volume raises
    left_inside: list[int] = []

    def fail_while_full() -> None:
        with model.storage_filled("web/0", "data", leave_bytes=4096) as left:
            left_inside.append(left)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_while_full()

    # Then the volume was filled, then freed
    assert left_inside == [4096]
    assert loop == [("fill", "/dev/loop9", 4096), ("free", "/dev/loop9")]


def test_freeing_a_volume_that_is_not_filled_is_refused(model: Model, loop: list[tuple[str, Any]]) -> None:
    with pytest.raises(SandboxError, match='storage "data" of unit web/0 is not filled'):
        model.free_storage("web/0", "data")


def test_the_cli_fills_and_frees(model: Model, loop: list[tuple[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    # When the user fills a unit's storage leaving a MiB, then frees it
    assert cli.main(["-m", model.name, "fill-storage", "web/0", "data", "--leave", str(MIB)]) == 0
    assert cli.main(["-m", model.name, "free-storage", "web/0", "data"]) == 0

    # Then each verb said what it did
    assert capsys.readouterr().out == f"filled data of web/0: {MIB} bytes free\nfreed data of web/0\n"
    assert loop == [("fill", "/dev/loop9", MIB), ("free", "/dev/loop9")]


class FakeVolume:
    """A file system of `capacity` bytes under a real directory: what the filler allocates counts as used.

    fallocate extends the file sparsely (nothing reaches the disk) and, as on ext4, needs a
    block of its own for the extent tree; writes count as they land.
    """

    block = 4096

    def __init__(self, root: Path, capacity: int) -> None:
        self.root, self.capacity = root, capacity

    def used(self) -> int:
        filler = self.root / volume_filler.FILLER
        return filler.stat().st_size if filler.exists() else 0

    def free(self, _: Path) -> int:
        return self.capacity - self.used()

    def fallocate(self, descriptor: int, offset: int, length: int) -> None:
        if length + self.block > self.free(self.root):
            raise OSError(errno.ENOSPC, "No space left on device")
        os.ftruncate(descriptor, offset + length)


@pytest.mark.parametrize("leave", [0, 4096, 5 * MIB + 123])
def test_fill_leaves_the_bytes_asked_to_the_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, leave: int) -> None:
    # Given a 64 MiB volume
    volume = FakeVolume(tmp_path, 64 * MIB)
    monkeypatch.setattr(volume_filler, "_free_bytes", volume.free)
    monkeypatch.setattr(os, "posix_fallocate", volume.fallocate)

    # When it is filled
    left = volume_filler.fill_mounted(tmp_path, leave)

    # Then what is free is what was asked, to the block
    assert left == volume.free(tmp_path)
    assert leave <= left < leave + FakeVolume.block


def test_filling_again_gives_back_what_a_larger_leave_asks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a full volume
    root = tmp_path / "volume"
    root.mkdir()
    volume = FakeVolume(root, 64 * MIB)
    monkeypatch.setattr(volume_filler, "_free_bytes", volume.free)
    monkeypatch.setattr(os, "posix_fallocate", volume.fallocate)
    volume_filler.fill_mounted(root, 0)

    # When it is filled again leaving 8 MiB
    left = volume_filler.fill_mounted(root, 8 * MIB)

    # Then the one filler file shrank to leave them
    assert left == 8 * MIB
    assert [p.name for p in root.iterdir()] == [volume_filler.FILLER]


def test_fill_refuses_to_leave_more_than_is_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    volume = FakeVolume(tmp_path, MIB)
    monkeypatch.setattr(volume_filler, "_free_bytes", volume.free)
    with pytest.raises(SandboxError, match=f"only {MIB} bytes are free, fewer than {2 * MIB} to leave"):
        volume_filler.fill_mounted(tmp_path, 2 * MIB)
    assert not (tmp_path / volume_filler.FILLER).exists()


def test_free_deletes_the_filler_and_says_whether_there_was_one(tmp_path: Path) -> None:
    root = tmp_path / "volume"
    root.mkdir()
    (root / volume_filler.FILLER).write_bytes(b"x")
    assert volume_filler.free_mounted(root) is True
    assert volume_filler.free_mounted(root) is False
    assert list(root.iterdir()) == []


# ---------------------------------------------------------------------- releasing volumes


def test_a_volume_still_in_use_is_named_when_it_cannot_be_detached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a loop device that stays attached to a volume (mounted in a process that lives on)
    image = tmp_path / "data.ext4"
    commands: list[list[str]] = []
    monkeypatch.setattr(volumes, "loop_devices", lambda: {"/dev/loop7": image.resolve()})
    monkeypatch.setattr(volumes, "run", lambda argv, what, cwd=None: commands.append(argv) or "")

    # When it is detached, the error names the device and the volume
    with pytest.raises(SandboxError, match=f"/dev/loop7 still holds {image} after 0s"):
        volumes.detach(image, timeout=0.1)
    assert commands == [["losetup", "--detach", "/dev/loop7"]]


def test_release_detaches_only_the_volumes_under_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a volume of this model and one of another
    ours, theirs = (tmp_path / "ours" / "data.ext4").resolve(), (tmp_path / "theirs" / "data.ext4").resolve()
    attached = {"/dev/loop1": ours, "/dev/loop2": theirs}

    def losetup(argv: list[str], what: str, cwd: Path | None = None) -> str:
        assert argv[:2] == ["losetup", "--detach"]
        del attached[argv[2]]
        return ""

    monkeypatch.setattr(volumes, "loop_devices", lambda: dict(attached))
    monkeypatch.setattr(volumes, "run", losetup)

    # When the model's directory is released
    problems = volumes.release_under(tmp_path / "ours")

    # Then only its volume was detached
    assert problems == []
    assert attached == {"/dev/loop2": theirs}


def test_a_pod_whose_volume_stays_attached_keeps_its_files_and_says_so(
    model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pod with a volume that cannot be detached
    pod = model.units["web/1"].pod
    pod.storage_dir.mkdir(parents=True)
    pod.volume_image("data").write_bytes(b"")

    def stuck(image: Path) -> None:
        raise SandboxError(f"/dev/loop3 still holds {image} after 10s")

    monkeypatch.setattr(volumes, "detach", stuck)

    # When the pod is deleted, it says which volume stays, and its files stay with it
    with pytest.raises(SandboxError, match="storage of web/1 not detached: /dev/loop3 still holds"):
        pod.delete()
    assert pod.volume_image("data").exists()


def test_destroy_reports_what_it_could_not_release_and_keeps_the_model(
    model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a model whose removed unit's volume is still attached
    image = model.root / "pods" / "web-2" / "storage" / "data.ext4"
    monkeypatch.setattr(volumes, "loop_devices", lambda: {"/dev/loop4": image.resolve()})
    monkeypatch.setattr(volumes, "run", lambda argv, what, cwd=None: "")
    monkeypatch.setattr(volumes, "DETACH_TIMEOUT", 0.1)

    # When it is destroyed, the error names the volume, and the model's directory stays
    with pytest.raises(SandboxError, match="model faults not removed entirely: /dev/loop4 still holds"):
        persistence.destroy(model.state)
    assert model.root.is_dir()
