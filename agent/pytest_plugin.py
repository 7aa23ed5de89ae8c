"""A pytest plugin for route-injection tests against a containerlab fabric run by evpn-lab.

    pytest -p agent.pytest_plugin --evpn-lab-topology containerlab/fabric.clab.yml

gives the fixtures ``evpn_lab`` (the lab, brought up once per session under a unique name so
it never touches a fabric a person is running, and torn down afterwards) and ``inject``
(``inject("announce evpn imet rd ... ")`` makes the topology's injector node send one route
command; it returns ExaBGP's answer and fails the test on an error). Write tests such as:

    def test_a_new_vtep_joins_the_flood_list(evpn_lab, inject):
        inject("announce evpn imet rd 10.0.0.77:100 etag 0 originator 10.0.0.77 "
               "next-hop 10.0.0.5 pmsi ingress-replication 100 10.0.0.77 rt 65000:100")
        ...evpn_lab.exec("leaf1", ["evpnctl", "show", "flood", "--json"])...
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from agent.lab import Lab, parse_topology
from agent.lab import inject as lab_inject


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("evpn-lab")
    group.addoption("--evpn-lab-topology", default="containerlab/fabric.clab.yml", help="the fabric to run")
    group.addoption("--evpn-lab-injector", default="inj", help="the injector node of the topology")


@pytest.fixture(scope="session")
def evpn_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    path = Path(str(request.config.getoption("--evpn-lab-topology"))).resolve()
    data = yaml.safe_load(path.read_text())
    data["name"] = f"{data.get('name', 'lab')[:12]}-t{secrets.token_hex(3)}"  # never the person's lab
    lab = Lab(parse_topology(data, path))
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def inject(evpn_lab: Lab, request: pytest.FixtureRequest) -> Callable[[str], str]:
    node = str(request.config.getoption("--evpn-lab-injector"))

    def send(command: str) -> str:
        out = lab_inject(evpn_lab, node, command.split())
        answer = (out.stdout or out.stderr).strip()
        if out.returncode != 0:
            pytest.fail(f"injector {node}: {answer}")
        return answer

    return send
