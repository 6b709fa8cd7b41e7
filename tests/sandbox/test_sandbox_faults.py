"""Faults a user causes as with kubectl or on a node: signals, a network partition, a full volume.

A killed service is restarted by its Pebble; a stopped one hangs until continued; a cut pod
reaches no other pod and no other pod reaches it, while its localhost answers; each unit's
storage is a volume of its own size that fills without filling the machine, outlives the pod,
and goes with the model. The tests of this module build on each other in order.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox import Model, SandboxError
from sandbox.paths import REPO_ROOT, state_dir

GREETER = Path(__file__).resolve().parent / "charms" / "greeter-k8s"
VICTIM, CALLER = "victim/0", "caller/0"
GIB = 1 << 30


def fetch(model: Model, unit: str, target: str) -> tuple[str, str]:
    """(status, body or failure) of `unit` fetching `target`'s page (a unit's FQDN, or localhost)."""
    host = "localhost" if target == "localhost" else model.fqdn(target)
    result = model.run(unit, "fetch", {"url": f"http://{host}:8080/index.html"})
    return result.status, result.results.get("body", result.message)


def fetch_until_served(model: Model, unit: str, target: str, timeout: float = 30.0) -> tuple[str, str]:
    """`fetch`, again until it is served (a restarted server takes a moment to listen) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while (outcome := fetch(model, unit, target))[0] != "completed" and time.monotonic() < deadline:
        time.sleep(0.5)
    return outcome


def server_pids(model: Model, unit: str) -> list[int]:
    """The processes of the unit's web service (python3 -m http.server)."""
    return [p.pid for p in model.container_processes(unit, "web") if "http.server" in p.argv]


def in_container(model: Model, unit: str, command: str) -> tuple[str, str]:
    """(status, stdout or failure) of a command run in the unit's workload container."""
    result = model.run(unit, "exec", {"command": command})
    return result.status, result.results.get("stdout", result.message)


def sandbox_cli(model: Model, *argv: str) -> str:
    """Run a verb from the command line, as a user in another shell would; return its output."""
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "-m", model.name, *argv],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_killed_service_is_restarted_by_pebble(model: Model) -> None:
    # Given a greeter serving, and another pod to call it
    model.deploy(GREETER, "victim")
    model.deploy(GREETER, "caller")
    model.wait_for_idle(timeout=120)
    (old_pid,) = server_pids(model, VICTIM)

    # When its service is killed, as `kubectl exec ... kill -KILL` would
    model.signal_service(VICTIM, "web", "web", "SIGKILL")

    # Then Pebble restarts it (after its backoff): a new process, serving again
    model.drive_until(lambda m: server_pids(m, VICTIM) not in ([], [old_pid]), timeout=30)
    assert fetch_until_served(model, CALLER, VICTIM) == ("completed", "hello from victim/0")
    assert model.pebble(VICTIM, "web").get_services(["web"])[0].is_running()
    model.wait_for_idle(timeout=60)
    # And what is not there cannot be signalled
    with pytest.raises(SandboxError, match='has no service "nope" \\(services: web\\)'):
        model.signal_service(VICTIM, "web", "nope", "SIGKILL")


def test_a_service_terminated_from_the_command_line_is_restarted_too(model: Model) -> None:
    # Given the serving process
    (old_pid,) = server_pids(model, VICTIM)

    # When a user asks it to end from a shell
    output = sandbox_cli(model, "signal", VICTIM, "web", "web", "TERM")

    # Then it ended, and Pebble started it again
    assert output == f"sent SIGTERM to service web of {VICTIM} (container web)\n"
    model.drive_until(lambda m: server_pids(m, VICTIM) not in ([], [old_pid]), timeout=30)
    assert fetch_until_served(model, CALLER, VICTIM) == ("completed", "hello from victim/0")
    model.wait_for_idle(timeout=60)


def test_a_stopped_service_hangs_until_it_is_continued(model: Model) -> None:
    # Given the serving process
    (pid,) = server_pids(model, VICTIM)

    # When it is stopped, another pod's request times out
    with model.service_stopped(VICTIM, "web", "web"):
        status, message = fetch(model, CALLER, VICTIM)
        assert status == "failed"
        assert "timed out" in message

    # Then once continued, the same process answers again
    assert fetch(model, CALLER, VICTIM) == ("completed", "hello from victim/0")
    assert server_pids(model, VICTIM) == [pid]
    model.wait_for_idle(timeout=60)


def test_a_cut_pod_reaches_no_pod_and_no_pod_reaches_it(model: Model) -> None:
    # When the victim's pod is cut off
    with model.network_cut(VICTIM):
        # Then no other pod reaches it, it reaches no other pod, and its own localhost answers
        assert fetch(model, CALLER, VICTIM)[0] == "failed"
        assert fetch(model, VICTIM, CALLER)[0] == "failed"
        assert fetch(model, VICTIM, "localhost") == ("completed", "hello from victim/0")
        assert "(network cut)" in next(line for line in model.status().splitlines() if line.startswith(VICTIM))

    # Then once restored, both ways work again
    assert fetch(model, CALLER, VICTIM) == ("completed", "hello from victim/0")
    assert fetch(model, VICTIM, CALLER) == ("completed", "hello from caller/0")
    assert model.units[VICTIM].pod.network_problems() == []


def test_a_cut_made_from_the_command_line_is_lifted_from_it(model: Model) -> None:
    # When a user cuts the victim off from one shell
    assert sandbox_cli(model, "cut-network", VICTIM) == f"cut the network of {VICTIM}\n"

    # Then no pod reaches it until the user restores it from another
    assert fetch(model, CALLER, VICTIM)[0] == "failed"
    assert sandbox_cli(model, "restore-network", VICTIM) == f"restored the network of {VICTIM}\n"
    assert fetch(model, CALLER, VICTIM) == ("completed", "hello from victim/0")


def test_a_cut_pod_that_is_replaced_comes_back_connected(model: Model) -> None:
    # Given a cut pod
    model.cut_network(VICTIM)
    assert fetch(model, CALLER, VICTIM)[0] == "failed"

    # When Kubernetes replaces it
    model.restart_pod(VICTIM)
    model.wait_for_idle(timeout=90)

    # Then the new pod is reachable and not cut
    assert not model.units[VICTIM].pod.network_cut
    assert fetch(model, CALLER, VICTIM) == ("completed", "hello from victim/0")


def test_storage_is_a_volume_of_its_own_size(model: Model) -> None:
    # When the victim's container looks at its storage
    status, stat = in_container(model, VICTIM, "stat -f -c '%b %S %a %T' /var/lib/greeter")

    # Then it is a file system of its own, of Juju's default size (the charm declares none)
    blocks, block_size, _, kind = stat.split()
    assert status == "completed"
    assert kind == "ext2/ext3"  # stat's name for ext4
    assert 0.9 * GIB < int(blocks) * int(block_size) <= GIB
    # And its image costs the machine's disk only what is written to it
    image = model.units[VICTIM].pod.volume_image("data")
    assert image.stat().st_size == GIB
    assert image.stat().st_blocks * 512 < 0.2 * GIB


def test_a_full_volume_refuses_writes_until_it_is_freed(model: Model) -> None:
    # Given a file written on storage
    model.run(VICTIM, "write-files", {"content": "written before the volume filled"})
    write = "dd if=/dev/zero of=/var/lib/greeter/more bs=64k count=1 conv=fsync"

    # When the volume is filled
    with model.storage_filled(VICTIM, "data") as left:
        # Then a write to it fails for want of space, and only the volume is full
        assert left < 4096
        status, message = in_container(model, VICTIM, write)
        assert status == "failed"
        assert "No space left on device" in message

    # Then once freed, writes work again
    assert in_container(model, VICTIM, write)[0] == "completed"
    assert in_container(model, VICTIM, "rm /var/lib/greeter/more")[0] == "completed"


def test_the_command_line_fills_a_volume_leaving_what_is_asked(model: Model) -> None:
    # When a user fills the victim's storage leaving a MiB
    output = sandbox_cli(model, "fill-storage", VICTIM, "data", "--leave", str(1 << 20))

    # Then the volume has a MiB free (to the block), as the workload sees it
    left = int(output.removeprefix(f"filled data of {VICTIM}: ").removesuffix(" bytes free\n"))
    assert (1 << 20) <= left < (1 << 20) + 4096
    _, stat = in_container(model, VICTIM, "stat -f -c '%a %S' /var/lib/greeter")
    available, block_size = stat.split()
    assert int(available) * int(block_size) == left

    # When the user frees it, the space is back
    assert sandbox_cli(model, "free-storage", VICTIM, "data") == f"freed data of {VICTIM}\n"
    _, stat = in_container(model, VICTIM, "stat -f -c '%a %S' /var/lib/greeter")
    available, block_size = stat.split()
    assert int(available) * int(block_size) > 0.9 * GIB


def test_what_storage_held_before_a_pod_restart_is_there_after_it(model: Model) -> None:
    # When the pod is replaced
    model.restart_pod(VICTIM)
    model.wait_for_idle(timeout=90)

    # Then the file written before the volume filled is still there; the rest is lost
    result = model.run(VICTIM, "read-files")
    assert result.results == {"kept": "written before the volume filled", "lost": "missing"}


def attached_volumes(root: Path) -> list[str]:
    """`losetup -a` lines of loop devices behind files under `root`."""
    listing = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if str(root) in line]


def mounts_under(root: Path) -> list[str]:
    return [line for line in Path("/proc/mounts").read_text().splitlines() if str(root) in line]


def test_volumes_go_with_their_model_even_after_a_crash() -> None:
    # Given a model of two units whose owner died without destroying it
    root = state_dir() / "t-faults-gone"
    crashed = Model.create("t-faults-gone")
    crashed.deploy(GREETER, "solo", num_units=2)
    assert len(attached_volumes(root)) == 2
    del crashed

    # When a model of the same name is created, the old volumes are gone
    fresh = Model.create("t-faults-gone")
    assert attached_volumes(root) == []

    # When the new model's units come and one goes
    fresh.deploy(GREETER, "solo", num_units=2)
    fresh.remove_unit("solo")

    # Then the removed unit's volume is detached and kept for its ordinal
    (line,) = attached_volumes(root)
    assert "solo-0" in line
    assert (root / "pods" / "solo-1" / "storage" / "data.ext4").is_file()

    # When the model is destroyed, no loop device, mount or file of it is left
    fresh.destroy()
    assert attached_volumes(root) == []
    assert mounts_under(root) == []
    assert not root.exists()
