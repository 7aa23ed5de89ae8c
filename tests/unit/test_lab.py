"""evpn-lab's topology parsing (containerlab inheritance, binds, links, errors) and its pure parts."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import lab as labmod
from agent.lab import (
    DEFAULT_MTU,
    Bind,
    Lab,
    TopologyError,
    _NodeFs,
    load_topology,
    main,
    parse_topology,
)

TOPO = Path("/labs/x/fabric.clab.yml")


def parse(doc: dict[str, Any], path: Path = TOPO) -> labmod.Topology:
    return parse_topology(doc, path)


def doc(nodes: dict[str, Any], links: list[Any] | None = None, **topology: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"nodes": nodes, **topology}
    if links is not None:
        body["links"] = links
    return {"name": "fab", "topology": body}


def error_of(document: object, path: Path = TOPO) -> str:
    with pytest.raises(TopologyError) as info:
        parse_topology(document, path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


# --------------------------------------------------------------------------- basics


def test_minimal_topology_nodes_in_file_order_and_names() -> None:
    topo = parse(doc({"b": {"kind": "linux"}, "a": {"kind": "linux"}}, [{"endpoints": ["a:eth1", "b:eth1"]}]))
    assert topo.name == "fab"
    assert list(topo.nodes) == ["b", "a"]
    assert topo.netns("a") == "evl-fab-a"
    assert topo.prefix == "evl-fab-"
    (link,) = topo.links
    assert (str(link.a), str(link.b), link.mtu) == ("a:eth1", "b:eth1", DEFAULT_MTU)
    assert topo.interfaces("a") == ["eth1"]
    assert topo.path == TOPO


def test_null_node_takes_everything_from_defaults() -> None:
    topo = parse(doc({"a": None}, defaults={"kind": "linux", "image": "debian", "exec": ["true"]}))
    node = topo.nodes["a"]
    assert (node.kind, node.image, node.exec) == ("linux", "debian", ("true",))


# --------------------------------------------------------------------------- inheritance


def test_kind_comes_from_node_then_group_then_defaults_group_then_defaults() -> None:
    groups = {"g": {"kind": "linux"}, "dg": {"kind": "linux"}}
    topo = parse(
        doc(
            {"own": {"kind": "linux"}, "grouped": {"group": "g"}, "plain": {}},
            groups=groups,
            defaults={"group": "dg"},
        )
    )
    assert all(n.kind == "linux" for n in topo.nodes.values())
    assert "kind 'bridge' is not supported" in error_of(
        doc({"a": {"group": "g"}}, groups={"g": {"kind": "bridge"}})
    )


def test_image_precedence_node_group_kind_defaults() -> None:
    topo = parse(
        doc(
            {"n": {"image": "node-img", "group": "g"}, "g": {"group": "g"}, "k": {}},
            defaults={"kind": "linux", "image": "default-img"},
            kinds={"linux": {"image": "kind-img"}},
            groups={"g": {"image": "group-img"}},
        )
    )
    assert [n.image for n in topo.nodes.values()] == ["node-img", "group-img", "kind-img"]
    topo = parse(doc({"d": {}}, defaults={"kind": "linux", "image": "default-img"}))
    assert topo.nodes["d"].image == "default-img"


def test_group_can_come_from_the_kind() -> None:
    topo = parse(
        doc(
            {"a": {"kind": "linux"}},
            kinds={"linux": {"group": "leaves"}},
            groups={"leaves": {"env": {"ROLE": "leaf"}}},
        )
    )
    assert topo.nodes["a"].group == "leaves"
    assert topo.nodes["a"].env == {"ROLE": "leaf"}


def test_env_merged_most_specific_wins_scalars_as_text() -> None:
    topo = parse(
        doc(
            {"a": {"group": "g", "env": {"E1": "node", "FLAG": True, "N": 3}}},
            defaults={"kind": "linux", "env": {"E1": "defaults", "E2": "defaults", "E3": "defaults"}},
            kinds={"linux": {"env": {"E2": "kind", "E4": "kind"}}},
            groups={"g": {"env": {"E3": "group", "E4": "group"}}},
        )
    )
    assert topo.nodes["a"].env == {
        "E1": "node",
        "E2": "kind",
        "E3": "group",
        "E4": "group",
        "FLAG": "true",
        "N": "3",
    }


def test_exec_lines_concatenated_defaults_kind_group_node() -> None:
    topo = parse(
        doc(
            {"a": {"group": "g", "exec": ["node"]}, "b": {}},
            defaults={"kind": "linux", "exec": ["defaults"]},
            kinds={"linux": {"exec": ["kind1", "kind2"]}},
            groups={"g": {"exec": ["group"]}},
        )
    )
    assert topo.nodes["a"].exec == ("defaults", "kind1", "kind2", "group", "node")
    assert topo.nodes["b"].exec == ("defaults", "kind1", "kind2")


def test_binds_merged_by_destination_more_specific_level_wins() -> None:
    topo = parse(
        doc(
            {"a": {"group": "g", "binds": ["node.conf:/etc/x.conf", "n2:/etc/n2"]}},
            defaults={"kind": "linux", "binds": ["d.conf:/etc/x.conf", "d2:/etc/d2:ro"]},
            kinds={"linux": {"binds": ["k.conf:/etc/x.conf", "k2:/etc/k2"]}},
            groups={"g": {"binds": ["g2:/etc/k2/"]}},
        )
    )
    binds = {b.dst: b for b in topo.nodes["a"].binds}
    assert set(binds) == {"/etc/x.conf", "/etc/d2", "/etc/k2", "/etc/n2"}
    assert binds["/etc/x.conf"].src == "/labs/x/node.conf"
    assert binds["/etc/k2"].src == "/labs/x/g2"  # "/etc/k2/" and "/etc/k2" are one destination
    assert binds["/etc/d2"].readonly


# --------------------------------------------------------------------------- binds


def test_bind_paths_resolve_against_the_topology_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    base = Path("/labs/x")
    assert Bind.parse("cfg/a.conf:/etc/a.conf", base, "w") == Bind(
        "/labs/x/cfg/a.conf", "/etc/a.conf", False, "cfg/a.conf:/etc/a.conf"
    )
    assert Bind.parse("../shared/f:/etc/f:ro", base, "w").src == "/labs/shared/f"
    assert Bind.parse("./d/:/srv/d/", base, "w").src == "/labs/x/d"
    assert Bind.parse("/abs/f:/etc/f", base, "w").src == "/abs/f"
    assert Bind.parse("~/keys:/root/keys", base, "w").src == "/home/someone/keys"
    anonymous = Bind.parse("/var/lib/scratch", base, "w")
    assert (anonymous.src, anonymous.dst, anonymous.readonly) == (None, "/var/lib/scratch", False)
    assert Bind.parse("a:/b:rw", base, "w").readonly is False
    assert Bind.parse("a:/b:ro,Z", base, "w").readonly is True


def test_relative_topology_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "t.clab.yml").write_text(
        yaml.safe_dump(doc({"a": {"kind": "linux", "binds": ["cfg/a:/etc/a"]}}))
    )
    monkeypatch.chdir(tmp_path)
    topo = load_topology("lab/t.clab.yml")
    assert topo.path == tmp_path / "lab" / "t.clab.yml"
    assert topo.nodes["a"].binds[0].src == str(tmp_path / "lab" / "cfg" / "a")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("a:b:c:d", "cannot parse bind"),
        (":/x", "cannot parse bind"),
        ("a:relative/dst", "destination must be an absolute path"),
        ("a:/", "cannot bind on /"),
        ("a:/x:rshared", "unsupported option 'rshared'"),
        ("__clabNodeDir__/x:/x", "__clabNodeDir__/__clabDir__ are not supported"),
    ],
)
def test_bad_binds(spec: str, expected: str) -> None:
    message = error_of(doc({"a": {"kind": "linux", "binds": [spec]}}))
    assert "topology.nodes.a.binds" in message
    assert expected in message


# --------------------------------------------------------------------------- links


def test_link_forms_mtu_mac_and_addresses() -> None:
    topo = parse(
        doc(
            {"a": {"kind": "linux"}, "b": {"kind": "linux"}, "c": {"kind": "linux"}},
            [
                {"endpoints": ["a:eth1", "b:eth1"], "mtu": 1500, "ipv4": ["10.0.0.1/31", "10.0.0.0/31"]},
                {"endpoints": ["b:eth2", "c:eth1"], "ipv6": ["", "2001:db8::2/64"]},
                {
                    "type": "veth",
                    "endpoints": [
                        {"node": "a", "interface": "e2", "mac": "02:00:00:00:00:01", "ipv4": "10.1.0.1/24"},
                        {"node": "c", "interface": "e2", "ipv6": "2001:db8:1::2/64"},
                    ],
                },
            ],
        )
    )
    first, second, third = topo.links
    assert first.mtu == 1500
    assert first.a.addresses == ("10.0.0.1/31",)
    assert first.b.addresses == ("10.0.0.0/31",)
    assert second.mtu == DEFAULT_MTU
    assert (second.a.addresses, second.b.addresses) == ((), ("2001:db8::2/64",))
    assert third.a.mac == "02:00:00:00:00:01"
    assert third.a.addresses == ("10.1.0.1/24",)
    assert third.b.addresses == ("2001:db8:1::2/64",)
    assert topo.interfaces("a") == ["eth1", "e2"]


def nodes_ab() -> dict[str, Any]:
    return {"a": {"kind": "linux"}, "b": {"kind": "linux"}}


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        ([{"endpoints": ["a:eth1", "z:eth1"]}], "topology.links[0]: unknown node 'z' in endpoint z:eth1"),
        ([{"endpoints": ["a-eth1", "b:eth1"]}], "endpoint 'a-eth1' is not of the form NODE:INTERFACE"),
        ([{"endpoints": ["a:eth1"]}], "a link needs exactly two endpoints"),
        ([{"endpoints": ["a:eth1", "b:eth1", "b:eth2"]}], "a link needs exactly two endpoints"),
        ([{"endpoints": ["a:eth1", "host:veth-a"]}], "special endpoint host:veth-a is not supported"),
        ([{"endpoints": ["a:eth1", "mgmt-net:a1"]}], "special endpoint mgmt-net:a1 is not supported"),
        (
            [{"endpoints": ["a:ethernet-1-long1", "b:eth1"]}],
            "interface name 'ethernet-1-long1' is longer than 15 characters",
        ),
        ([{"endpoints": ["a:lo", "b:eth1"]}], "'lo' is not a usable interface name"),
        ([{"endpoints": ["a:eth1", "a:eth1"]}], "both endpoints are a:eth1"),
        (
            [{"endpoints": ["a:eth1", "b:eth1"]}, {"endpoints": ["b:eth2", "a:eth1"]}],
            "topology.links[1]: interface a:eth1 is already used by topology.links[0]",
        ),
        ([{"type": "macvlan", "endpoints": ["a:eth1", "b:eth1"]}], "link type 'macvlan' is not supported"),
        ([{"endpoints": ["a:eth1", "b:eth1"], "mtu": 10}], "topology.links[0].mtu: expected an integer"),
        ([{"endpoints": ["a:eth1", "b:eth1"], "ipv4": ["10.0.0.1"]}], "is not an IPv4 address/prefix"),
        ([{"endpoints": ["a:eth1", "b:eth1"], "ipv4": ["2001:db8::1/64"]}], "is not an IPv4 address/prefix"),
        (
            [{"type": "veth", "endpoints": [{"node": "a", "interface": "e1", "mac": "zz"}, {"node": "b"}]}],
            "mac: 'zz' is not a MAC address",
        ),
        ("not-a-list", "topology.links: expected a list"),
    ],
)
def test_bad_links(links: Any, expected: str) -> None:
    assert expected in error_of(doc(nodes_ab(), links))


# --------------------------------------------------------------------------- file-level errors


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"topology": {"nodes": {"a": {"kind": "linux"}}}}, "name: missing"),
        (
            {"name": "bad name", "topology": {"nodes": {"a": {"kind": "linux"}}}},
            "name: 'bad name' does not match",
        ),
        ({"name": "x"}, "topology.nodes: no nodes"),
        ({"name": "x", "topology": {"nodes": {"a": {}}}}, "topology.nodes.a: no kind"),
        (
            {"name": "x", "topology": {"nodes": {"a": {"kind": "nokia_srlinux"}}}},
            "topology.nodes.a: kind 'nokia_srlinux' is not supported (evpn-lab builds only kind: linux)",
        ),
        (
            {"name": "x", "topology": {"defaults": {"kind": "arista_ceos"}, "nodes": {"a": None}}},
            "kind 'arista_ceos' is not supported",
        ),
        (
            {"name": "x", "topology": {"nodes": {"a": {"kind": "linux", "exec": "ip a"}}}},
            "exec: expected a list",
        ),
        (
            {"name": "x", "topology": {"nodes": {"a": {"kind": "linux", "env": {"A": [1]}}}}},
            "env.A: expected",
        ),
        (
            {"name": "x", "topology": {"nodes": {"a": {"kind": 3}}}},
            "topology.nodes.a.kind: expected a string",
        ),
        ({"name": "x", "topology": {"nodes": {"-a": {"kind": "linux"}}}}, "node name '-a' is not valid"),
        (["a", "list"], "the file: expected a mapping"),
    ],
)
def test_bad_files(document: object, expected: str) -> None:
    assert expected in error_of(document)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"nope\.clab\.yml: topology file not found$"):
        load_topology(tmp_path / "nope.clab.yml")
    bad = tmp_path / "bad.clab.yml"
    bad.write_text("name: x\ntopology: [\n")
    with pytest.raises(TopologyError, match=r"bad\.clab\.yml: not valid YAML \(line \d+\)"):
        load_topology(bad)


# --------------------------------------------------------------------------- runtime pieces


def test_node_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("FROM_RUNNER", "yes")
    topo = parse(
        doc(
            {
                "a": {"kind": "linux", "env": {"FOO": "bar"}},
                "b": {"kind": "linux", "env": {"PATH": "/opt/x"}},
            },
            [{"endpoints": ["a:eth1", "b:eth1"]}, {"endpoints": ["a:eth2", "b:eth2"]}],
        )
    )
    lab = Lab(topo)
    pydir = os.path.dirname(os.path.abspath(sys.executable))
    env = lab.env("a", {"EXTRA": "1"})
    assert env["PATH"] == f"{pydir}:/usr/bin:/bin"
    assert (env["FOO"], env["FROM_RUNNER"], env["EXTRA"]) == ("bar", "yes", "1")
    assert (env["CLAB_NODE_NAME"], env["CLAB_LAB_NAME"], env["CLAB_INTFS"]) == ("a", "fab", "2")
    assert lab.env("b")["PATH"] == f"{pydir}:/opt/x"
    with pytest.raises(labmod.LabError, match="no node 'z'"):
        lab.env("z")


def test_private_path_tracking_in_the_keeper() -> None:
    fs = _NodeFs()
    fs.mounts = [("/run", True), ("/tmp", True), ("/etc", True), ("/etc/frr", False), ("/etc/frr/x", True)]
    assert fs._is_private("/run/frr")
    assert fs._is_private("/etc/labtest")
    assert not fs._is_private("/etc/frr")
    assert not fs._is_private("/etc/frr/sub")
    assert fs._is_private("/etc/frr/x/y")
    assert not fs._is_private("/runner")
    assert not fs._is_private("/var/lib")


def test_cli_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["bogus"]) == 2
    assert main(["status", "--", "x"]) == 2
    assert main(["status"]) == 1
    assert "no topology file given" in capsys.readouterr().err
    assert main(["status", "-t", str(tmp_path / "missing.clab.yml")]) == 1
    assert "topology file not found" in capsys.readouterr().err
    assert main(["-t", str(tmp_path / "other.clab.yml"), "status"]) == 1  # -t before the subcommand too
    assert "other.clab.yml: topology file not found" in capsys.readouterr().err
    assert main(["down"]) == 1  # neither a file nor --name
    capsys.readouterr()
    assert main(["status", str(tmp_path / "positional.clab.yml")]) == 1  # the file as last argument
    assert "positional.clab.yml: topology file not found" in capsys.readouterr().err
    assert main(["status", "-t", "x.clab.yml", "y.clab.yml"]) == 1
    assert "two topology files given" in capsys.readouterr().err


def test_cli_status_of_a_lab_that_is_not_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(labmod, "STATE_DIR", tmp_path / "state")
    topo = tmp_path / "t.clab.yml"
    topo.write_text(
        yaml.safe_dump(doc({"a": {"kind": "linux"}}) | {"name": "never-up-" + os.urandom(3).hex()})
    )
    monkeypatch.chdir(tmp_path)
    assert main(["status"]) == 3  # found as the only *.clab.yml here
    out = capsys.readouterr().out
    assert "a: DOWN" in out
    assert out.rstrip().endswith("not up (no state file)")
