"""containerlab/fabric.clab.yml: a valid containerlab file whose pieces exist and fit together.

Static checks only (no namespaces, no root): containerlab's JSON schema, bind sources, the agent
configs, links, interface names, and the scripts the exec lines call.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import parse_config

ROOT = Path(__file__).parents[2]
CLAB = ROOT / "containerlab"
TOPOLOGY = CLAB / "fabric.clab.yml"
SCHEMA = Path("/work/shared/containerlab/clab.schema.json")
IFNAMSIZ = 15  # the kernel's limit on interface names (16 with the NUL)


NODES = {"spine", "leaf1", "leaf2", "leaf3", "leaf4", "h1", "h2", "h3", "h4", "src", "inj"}


@pytest.fixture(scope="module")
def topo() -> dict[str, Any]:
    data = yaml.safe_load(TOPOLOGY.read_text())
    assert isinstance(data, dict)
    return data


def nodes(topo: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: cfg or {} for name, cfg in topo["topology"]["nodes"].items()}


def binds(node: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host source, node destination) of every bind with a source."""
    out = []
    for spec in node.get("binds", []):
        parts = spec.split(":")
        if len(parts) >= 2:  # a bare DST is an anonymous volume
            src = Path(parts[0]).expanduser()
            out.append((src if src.is_absolute() else CLAB / src, parts[1]))
    return out


def endpoints(topo: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for link in topo["topology"]["links"]:
        for ep in link["endpoints"]:
            if isinstance(ep, str):
                node, _, iface = ep.partition(":")
            else:
                node, iface = ep["node"], ep["interface"]
            out.append((node, iface))
    return out


def host_path(node: dict[str, Any], path: str) -> Path | None:
    """The host file a path inside the node comes from, through the node's binds."""
    for src, dst in binds(node):
        if path == dst:
            return src
        if path.startswith(dst.rstrip("/") + "/"):
            return src / path[len(dst.rstrip("/")) + 1 :]
    return None


def test_the_file_validates_against_containerlabs_schema(topo: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip(
        "jsonschema", reason="jsonschema is not installed in the venv: containerlab's schema not checked"
    )
    if not SCHEMA.exists():
        pytest.skip(f"containerlab's schema is not at {SCHEMA}")
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(topo)]
    assert errors == []


def test_the_reference_scenario_is_all_there(topo: dict[str, Any]) -> None:
    assert topo["name"] == "evpn-ir-fabric"
    assert set(nodes(topo)) == NODES
    defaults = topo["topology"].get("defaults", {})
    for name, node in nodes(topo).items():
        assert node.get("kind", defaults.get("kind")) == "linux", name
        assert node.get("image", defaults.get("image")) == "evpn-ir-agent:latest", name
    links = {tuple(sorted(link["endpoints"])) for link in topo["topology"]["links"]}
    expected = {tuple(sorted([f"spine:eth{n}", f"leaf{n}:eth1"])) for n in range(1, 5)}
    expected |= {tuple(sorted([f"leaf{n}:eth2", f"h{n}:eth1"])) for n in range(1, 5)}
    expected |= {("leaf1:eth3", "src:eth1"), ("inj:eth1", "spine:eth5")}
    assert links == expected
    assert (CLAB / "Dockerfile").is_file()


def test_every_bind_source_exists(topo: dict[str, Any]) -> None:
    missing = [
        f"{name}: {src}" for name, node in nodes(topo).items() for src, _ in binds(node) if not src.exists()
    ]
    assert missing == []


def test_every_link_endpoint_names_a_defined_node_and_a_short_unique_interface(topo: dict[str, Any]) -> None:
    defined = set(nodes(topo))
    eps = endpoints(topo)
    assert [f"{n}:{i}" for n, i in eps if n not in defined] == []
    assert [f"{n}:{i}" for n, i in eps if not 0 < len(i) <= IFNAMSIZ] == []
    assert len(set(eps)) == len(eps), "an interface is used by two links"


def test_interfaces_created_by_the_setup_scripts_have_valid_names() -> None:
    names = set()
    for script in [*CLAB.glob("*/setup.sh"), *CLAB.glob("common/*.sh")]:
        names |= set(re.findall(r"ip link add (\S+)", script.read_text()))
    assert names == {"br100", "vxlan100"}
    assert all(len(name) <= IFNAMSIZ for name in names)


def test_every_agent_config_is_valid_and_matches_its_leaf(topo: dict[str, Any]) -> None:
    configs = sorted(CLAB.glob("*/agent.yaml"))
    assert [p.parent.name for p in configs] == ["leaf1", "leaf2", "leaf3"]
    for path in configs:
        n = int(path.parent.name.removeprefix("leaf"))
        cfg = parse_config(yaml.safe_load(path.read_text()), str(path))
        assert str(cfg.router_id) == str(cfg.local_vtep) == f"10.0.0.{n}"
        assert sorted(str(nb.address) for nb in cfg.neighbors) == [
            f"10.0.0.{m}"
            for m in range(1, 6)
            if m != n  # 10.0.0.5: the route injector
        ]
        assert all(nb.send_smet and nb.asn == cfg.asn == 65000 for nb in cfg.neighbors)
        assert [(v.vni, str(v.querier)) for v in cfg.vnis] == [(100, f"192.168.100.20{n}")]
        assert str(cfg.workdir) == "/run/evpn-agent"
        assert cfg.ipmr.enabled == (n == 1)
        if n == 1:
            assert cfg.ipmr.edge == ["eth3"] and cfg.ipmr.svis == [100]
        # The node mounts it where its exec line looks for it.
        assert host_path(nodes(topo)[path.parent.name], "/etc/evpn/agent.yaml") == path


def test_the_scripts_the_exec_lines_run_exist_in_the_node_and_parse(topo: dict[str, Any]) -> None:
    for name, node in nodes(topo).items():
        for line in node.get("exec", []):
            words = shlex.split(line)
            if words[0] == "sh" and len(words) == 2:
                script = host_path(node, words[1])
                assert script is not None and script.is_file(), f"{name}: {line}"
                subprocess.run(["sh", "-n", str(script)], check=True)
            if "evpn-agent run" in line:
                config = re.search(r"--config (\S+)", line)
                assert config and host_path(node, config.group(1)), f"{name}: {line}"


def test_frr_nodes_have_their_configs(topo: dict[str, Any]) -> None:
    needed = {
        "spine": ["zebra.conf", "staticd.conf", "vtysh.conf"],
        "leaf4": ["zebra.conf", "bgpd.conf", "vtysh.conf"],
    }
    for name, files in needed.items():
        for file in files:
            path = host_path(nodes(topo)[name], f"/etc/frr/{file}")
            assert path is not None and path.is_file(), f"{name}: /etc/frr/{file}"
    bgpd = (CLAB / "leaf4" / "bgpd.conf").read_text()
    assert "advertise-all-vni" in bgpd
    assert all(f"neighbor 10.0.0.{n} " in bgpd for n in (1, 2, 3))


def test_evpn_lab_reads_the_file_when_it_is_there() -> None:
    lab = pytest.importorskip("agent.lab", reason="agent/lab.py is not there yet")
    topology = lab.load_topology(TOPOLOGY)
    assert set(topology.nodes) == NODES
    assert len(topology.links) == 10
