"""evpn-lab on real namespaces: a three-node topology written per test (lab names with a random
suffix), links, binds, private /run and /tmp, exec lines, down, crash recovery, status codes."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent.lab import STATE_DIR, ExecLineError, Lab, LabError, NodeCommandError, main
from tests.netns.netlab import poll

PROJECT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in "ZX"


def namespaces(prefix: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir("/run/netns") if n.startswith(prefix))
    except FileNotFoundError:
        return []


def topology(name: str, *, extra_exec: dict[str, list[str]] | None = None) -> dict[str, object]:
    """a - b - c; a gets a bound file (read-only), a bound directory and a background daemon."""
    nodes: dict[str, dict[str, object]] = {
        "a": {
            "binds": ["cfg/a.conf:/etc/labtest/a.conf:ro", "ctl:/etc/labtest/ctl"],
            "env": {"LABVAR": "from-topology"},
            "exec": [
                "ip addr add 10.0.1.1/24 dev eth1",
                "ip route add 10.0.2.0/24 via 10.0.1.2",
                "sleep 1000 >/dev/null 2>&1 & echo $! > /etc/labtest/ctl/daemon.pid",
            ],
        },
        "b": {
            "binds": ["cfg/a.conf:/var/run/labtest/a.conf"],  # /var/run -> /run: lands on b's private /run
            "exec": [
                "ip addr add 10.0.1.2/24 dev eth1",
                "ip addr add 10.0.2.2/24 dev eth2",
                "sysctl -qw net.ipv4.ip_forward=1",
            ],
        },
        "c": {
            "binds": ["/var/lib/evpn-lab-volume"],  # anonymous volume: an empty private tmpfs
            "exec": ["ip addr add 10.0.2.3/24 dev eth1", "ip route add default via 10.0.2.2"],
        },
    }
    for node, lines in (extra_exec or {}).items():
        nodes[node]["exec"] = [*nodes[node]["exec"], *lines]  # type: ignore[misc]
    return {
        "name": name,
        "topology": {
            "defaults": {"kind": "linux", "image": "debian:12"},
            "nodes": nodes,
            "links": [{"endpoints": ["a:eth1", "b:eth1"]}, {"endpoints": ["b:eth2", "c:eth1"], "mtu": 1500}],
        },
    }


def write_topology(directory: Path, name: str, **kwargs: dict[str, list[str]] | None) -> Path:
    (directory / "cfg").mkdir(exist_ok=True)
    (directory / "ctl").mkdir(exist_ok=True)
    (directory / "cfg" / "a.conf").write_text(f"config of a in {name}\n")
    path = directory / f"{name}.clab.yml"
    path.write_text(yaml.safe_dump(topology(name, **kwargs), sort_keys=False))
    return path


@pytest.fixture
def name() -> str:
    return "t" + secrets.token_hex(3)


@pytest.fixture
def topo(tmp_path: Path, name: str) -> Path:
    return write_topology(tmp_path, name)


@pytest.fixture
def messages() -> list[str]:
    return []


@pytest.fixture
def clab(topo: Path, messages: list[str]) -> Iterator[Lab]:
    lab = Lab(topo, log=messages.append)
    try:
        yield lab
    finally:
        lab.down()


def keepers(lab: Lab) -> list[int]:
    state = json.loads(lab.state_path.read_text())
    return [entry["keeper"] for entry in state["nodes"].values()]


def assert_gone(lab: Lab, pids: list[int]) -> None:
    assert namespaces(lab.topology.prefix) == []
    assert not lab.state_path.exists()
    assert not (lab.state_dir / f"{lab.name}.lock").exists()
    poll(lambda: not any(alive(p) for p in pids), 5, what="lab processes to die")


def ping(lab: Lab, node: str, address: str) -> bool:
    return lab.exec(node, ["ping", "-c1", "-W1", address], check=False).returncode == 0


# --------------------------------------------------------------------------- up / use / down


def test_up_links_binds_environment_and_down(clab: Lab, messages: list[str]) -> None:
    assert not Path("/etc/labtest").exists()
    clab.up()
    assert messages[-1] == f"lab {clab.name} up: 3 nodes, 2 links"
    assert namespaces(clab.topology.prefix) == [clab.netns(n) for n in ("a", "b", "c")]

    # Links named as in the file, containerlab's default MTU unless the link sets one, routed a-b-c.
    assert "mtu 9500" in clab.exec("a", "ip link show eth1").stdout
    assert "mtu 1500" in clab.exec("c", "ip link show eth1").stdout
    assert set(clab.exec("b", "ls /sys/class/net").stdout.split()) == {"lo", "eth1", "eth2"}
    poll(lambda: ping(clab, "a", "10.0.1.2"), 10, what="a -> b over a:eth1-b:eth1")
    poll(lambda: ping(clab, "a", "10.0.2.3"), 10, what="a -> c through b")

    # Binds: the file shows in a, read-only; nothing appears on the host or in b.
    assert clab.exec("a", "cat /etc/labtest/a.conf").stdout == f"config of a in {clab.name}\n"
    write = clab.exec("a", "echo x > /etc/labtest/a.conf", check=False)
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr
    assert not Path("/etc/labtest").exists()
    assert clab.exec("b", "test -e /etc/labtest", check=False).returncode == 1
    assert clab.exec("a", "test -e /etc/hostname -a -e /etc/passwd", check=False).returncode == 0  # /etc kept
    # The bound directory is the host's: written in the node, seen on the host.
    clab.exec("a", "echo from-a > /etc/labtest/ctl/hello")
    assert (clab.topology.path.parent / "ctl" / "hello").read_text() == "from-a\n"

    # Environment, hostname, the project's tools on PATH.
    out = clab.exec("a", 'echo "$LABVAR $CLAB_NODE_NAME $CLAB_LAB_NAME $CLAB_INTFS"; hostname').stdout
    assert out.split("\n")[:2] == [f"from-topology a {clab.name} 1", "a"]
    evpnctl = clab.exec("a", "command -v evpnctl").stdout.strip()
    assert evpnctl == os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "evpnctl")
    assert clab.exec("b", ["evpnctl", "decode", "--help"]).returncode == 0

    # exec with check=True reports node, command and stderr.
    with pytest.raises(NodeCommandError) as info:
        clab.exec("b", "echo nope >&2; exit 4")
    assert info.value.returncode == 4
    assert str(info.value).startswith("node b: sh -c 'echo nope >&2; exit 4' exited with code 4")
    assert "nope" in str(info.value)

    status = clab.status()
    assert status.up
    assert [(n.node, n.interfaces, n.interfaces_expected, n.processes) for n in status.nodes] == [
        ("a", 1, 1, 1),  # the background sleep
        ("b", 2, 2, 0),
        ("c", 1, 1, 0),
    ]

    daemon = int((clab.topology.path.parent / "ctl" / "daemon.pid").read_text())
    assert alive(daemon)
    pids = [*keepers(clab), daemon]
    removed = clab.down()
    assert removed.processes == 4 and removed.state_file
    assert removed.namespaces == [clab.netns(n) for n in ("a", "b", "c")]
    assert_gone(clab, pids)
    assert not clab.status().up
    with pytest.raises(LabError, match="is not up"):
        clab.exec("a", "true")
    assert clab.down().describe() == "nothing"  # idempotent


def test_run_tmp_and_bind_targets_are_private_per_node(clab: Lab) -> None:
    clab.up()
    marker = f"evpn-lab-{clab.name}"
    for directory in ("/run", "/tmp", "/var/run"):
        clab.exec("a", f"echo a > {directory}/{marker}")
        assert clab.exec("a", f"cat {directory}/{marker}").stdout == "a\n"
        assert clab.exec("b", f"test -e {directory}/{marker}", check=False).returncode == 1
        assert not Path(directory, marker).exists()
    # A node's /run and /tmp start empty: no host state leaks in.
    # Fresh and empty, but for the project itself when it lives under /tmp or /run (a CI
    # clone): the runner keeps it visible in every node.
    keep = {
        Path(p).relative_to(top).parts[0]
        for p in (str(Path(__file__).resolve().parents[2]), sys.prefix)
        for top in ("/run", "/tmp")
        if Path(p).is_relative_to(top)
    }
    assert set(clab.exec("c", "ls -A /run").stdout.split()) <= keep
    assert set(clab.exec("c", "ls -A /tmp").stdout.split()) <= keep
    # b's bind through the /var/run symlink landed in b's /run only.
    assert clab.exec("b", "cat /run/labtest/a.conf").stdout == f"config of a in {clab.name}\n"
    assert not Path("/run/labtest").exists()
    # c's anonymous volume: writable, empty at first, not on the host.
    assert clab.exec("c", "ls -A /var/lib/evpn-lab-volume && touch /var/lib/evpn-lab-volume/f").stdout == ""
    assert not Path("/var/lib/evpn-lab-volume").exists()
    assert clab.exec("a", "test -e /var/lib/evpn-lab-volume", check=False).returncode == 1


def test_popen_runs_in_the_node(clab: Lab) -> None:
    clab.up()
    proc = clab.popen("c", ["ip", "-br", "addr", "show", "eth1"], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=10)
    assert "10.0.2.3/24" in out


# --------------------------------------------------------------------------- failures leave nothing


def test_failing_exec_line_reports_and_removes_everything(tmp_path: Path, name: str) -> None:
    path = write_topology(tmp_path, name, extra_exec={"b": ["echo starting; echo boom >&2; exit 7", "true"]})
    lab = Lab(path, log=lambda _: None)
    try:
        with pytest.raises(ExecLineError) as info:
            lab.up()
        err = info.value
        assert (err.node, err.index, err.returncode) == ("b", 3, 7)
        assert err.command == "echo starting; echo boom >&2; exit 7"
        assert str(err).splitlines()[0] == (
            "node b: exec line 4 exited with code 7: echo starting; echo boom >&2; exit 7"
        )
        assert str(err).splitlines()[1:] == ["  stderr:", "    boom"]  # stderr only, not stdout
        assert_gone(lab, [])
        daemon = int((tmp_path / "ctl" / "daemon.pid").read_text())  # a's, started before b failed
        poll(lambda: not alive(daemon), 5, what="a's background daemon to die")
    finally:
        lab.down()


def test_failing_exec_line_through_the_cli(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_topology(tmp_path, name, extra_exec={"c": ["ls /nonexistent-evpn-lab"]})
    try:
        assert main(["up", "-t", str(path)]) == 1
        err = capsys.readouterr().err
        assert "evpn-lab: node c: exec line 3 exited with code 2: ls /nonexistent-evpn-lab" in err
        assert "No such file or directory" in err
        assert namespaces(f"evl-{name}-") == []
        assert not (STATE_DIR / f"{name}.json").exists()
    finally:
        main(["down", "-t", str(path)])


def test_exec_line_that_does_not_exit_times_out(tmp_path: Path, name: str) -> None:
    path = write_topology(tmp_path, name, extra_exec={"a": ["sleep 60"]})
    lab = Lab(path, log=lambda _: None, exec_timeout=1.0)
    try:
        with pytest.raises(LabError, match=r"node a: exec line 4 did not exit within 1 s: sleep 60 \(start"):
            lab.up()
        assert_gone(lab, [])
    finally:
        lab.down()


def test_missing_bind_source_fails_before_building(tmp_path: Path, name: str) -> None:
    path = write_topology(tmp_path, name)
    (tmp_path / "cfg" / "a.conf").unlink()
    lab = Lab(path, log=lambda _: None)
    with pytest.raises(
        LabError, match=r"node a: bind 'cfg/a.conf:/etc/labtest/a.conf:ro': source .* does not exist"
    ):
        lab.up()
    assert namespaces(lab.topology.prefix) == []
    assert not lab.state_path.exists()


def test_bind_under_a_missing_top_level_directory_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "t.clab.yml"
    (tmp_path / "f").write_text("x")
    doc = {"name": name, "topology": {"nodes": {"a": {"kind": "linux", "binds": ["f:/evpn-lab-nope/f"]}}}}
    path.write_text(yaml.safe_dump(doc))
    lab = Lab(path, log=lambda _: None)
    try:
        with pytest.raises(
            LabError, match="node a: cannot set up the node: bind destination /evpn-lab-nope/f"
        ):
            lab.up()
        assert not Path("/evpn-lab-nope").exists()
        assert_gone(lab, [])
    finally:
        lab.down()


# --------------------------------------------------------------------------- crash recovery


def test_up_again_after_keepers_were_killed(topo: Path, messages: list[str]) -> None:
    first = Lab(topo, log=lambda _: None)
    second = Lab(topo, log=messages.append)
    try:
        first.up()
        old = keepers(first)
        os.kill(old[1], signal.SIGKILL)  # node b's keeper dies abruptly; the first Lab is forgotten
        poll(lambda: not alive(old[1]), 5, what="keeper of b to die")
        assert not second.status().up
        with pytest.raises(LabError, match="node b is not running"):
            second.exec("b", "true")
        second.up()
        assert messages[0].startswith(f"lab {second.name}: removed leftovers of a previous run: namespaces ")
        assert "state file" in messages[0]
        assert second.status().up
        assert not any(alive(p) for p in old)
        poll(lambda: ping(second, "a", "10.0.2.3"), 10, what="a -> c after the rebuild")
    finally:
        second.down()


def test_up_again_after_the_runner_was_killed_mid_up(topo: Path, messages: list[str]) -> None:
    """A CLI `up` is SIGKILLed while an exec line of c waits; the next `up` cleans and succeeds."""
    doc = yaml.safe_load(topo.read_text())
    doc["topology"]["nodes"]["c"]["exec"].append("while [ ! -e /etc/labtest/go ]; do sleep 0.05; done")
    doc["topology"]["nodes"]["c"]["binds"] = ["ctl:/etc/labtest"]
    topo.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(PROJECT))
    runner = subprocess.Popen(
        [sys.executable, "-m", "agent.lab", "up", "-t", str(topo)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lab = Lab(topo, log=messages.append)
    try:
        poll(lambda: lab.status().nodes[2].processes > 0, 20, what="c's exec line to be waiting")
        leftovers = [*keepers(lab)]
        runner.kill()
        runner.wait()
        assert namespaces(lab.topology.prefix) != []
        (topo.parent / "ctl" / "go").write_text("")
        lab.up()
        assert messages[0].startswith(f"lab {lab.name}: removed leftovers of a previous run: namespaces ")
        assert "processes" in messages[0]
        assert not any(alive(p) for p in leftovers)
        assert lab.status().up
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        lab.down()


def test_down_without_state_file_works_from_the_name_prefix(clab: Lab) -> None:
    clab.up()
    pids = keepers(clab)
    clab.state_path.unlink()
    assert main(["down", "--name", clab.name]) == 0
    assert_gone(clab, pids)


def test_labs_whose_names_share_a_prefix_do_not_touch_each_other(tmp_path: Path, name: str) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    short = Lab(write_topology(tmp_path / "one", name), log=lambda _: None)
    longer = Lab(write_topology(tmp_path / "two", f"{name}-x"), log=lambda _: None)
    try:
        longer.up()
        short.up()  # "evl-<name>-" also prefixes the longer lab's namespaces: they are not leftovers
        assert longer.status().up
        short.down()
        assert longer.status().up
        assert namespaces(short.topology.prefix) == [longer.netns(n) for n in ("a", "b", "c")]
    finally:
        short.down()
        longer.down()


# --------------------------------------------------------------------------- CLI


def test_cli_status_and_exec_exit_codes(topo: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    t = ["-t", str(topo)]
    try:
        assert main(["status", *t]) == 3
        assert main(["up", str(topo)]) == 0  # the file as last argument
        capsys.readouterr()
        assert main(["status", *t]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith(f"a: up, netns evl-{name}-a present, keeper ")
        assert out[0].endswith("alive, interfaces 1/1, processes 1")
        assert out[-1] == f"lab {name}: up"
        assert main(["exec", *t, "a", "--", "sh", "-c", "exit 5"]) == 5
        assert (
            main(["exec", *t, "c", "--", "ip -br addr show eth1 | grep -q 10.0.2.3"]) == 0
        )  # one word: sh -c
        assert main(["exec", *t, "zz", "--", "true"]) == 125
        assert "no node 'zz'" in capsys.readouterr().err
        state = json.loads((STATE_DIR / f"{name}.json").read_text())
        os.kill(state["nodes"]["c"]["keeper"], signal.SIGKILL)
        poll(lambda: not alive(state["nodes"]["c"]["keeper"]), 5, what="keeper of c to die")
        capsys.readouterr()
        assert main(["status", *t]) == 3
        assert "c: DOWN" in capsys.readouterr().out
        assert main(["exec", *t, "c", "--", "true"]) == 125
        assert main(["down", *t]) == 0
        assert main(["status", *t]) == 3
    finally:
        main(["down", *t])


def test_module_entry_point(topo: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(PROJECT))
    run = subprocess.run(
        [sys.executable, "-m", "agent.lab", "status", "-t", str(topo)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 3
    assert "not up" in run.stdout
