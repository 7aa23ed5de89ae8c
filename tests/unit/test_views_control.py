"""Unit tests for agent.views (JSON views and tables), agent.control (socket) and `evpnctl show`.

Pure: a real Store behind the views, a control server on a Unix socket in tmp_path inside the
test's event loop, and the blocking client (``ask``, ``evpnctl``) in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from agent import cli
from agent.control import ControlError, ask, serve
from agent.store import RemoteImet, RemoteSmet, Store
from agent.views import VIEWS, Snapshot, render, view
from bgp.evpn import IPAddress

OWN = ip_address("10.0.0.1")
V2 = ip_address("10.0.0.2")  # IGMP and MLD proxy
V3 = ip_address("10.0.0.3")  # IGMP proxy only
V4 = ip_address("10.0.0.4")  # no proxy at all: gets all multicast
V6A = ip_address("2001:db8::2")  # SMET only, not in the flood list
V6B = ip_address("2001:db8::3")  # IGMP and MLD proxy
G1 = ip_address("239.1.1.1")
G2 = ip_address("239.1.1.2")
G6 = ip_address("ff0e::1")
S1 = ip_address("192.0.2.10")
RR1, RR2, RR3 = "192.0.2.1", "192.0.2.2", "192.0.2.3"

ALL_VIEWS = ("summary", "vnis", "flood", "groups", "peers", "mroutes", "vifs")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


# --------------------------------------------------------------------------- fixtures


def _key(fact: RemoteImet | RemoteSmet) -> bytes:
    return repr(fact).encode()


def _announce(store: Store, peer: str, fact: RemoteImet | RemoteSmet) -> None:
    store.announce(peer, _key(fact), fact)


def imet(vtep: IPAddress, igmp: bool, mld: bool, vni: int = 100) -> RemoteImet:
    return RemoteImet(vni=vni, vtep=vtep, igmp_proxy=igmp, mld_proxy=mld)


def smet(vtep: IPAddress, source: IPAddress | None, group: IPAddress, vni: int = 100) -> RemoteSmet:
    return RemoteSmet(vni=vni, vtep=vtep, source=source, group=group)


def fabric_store() -> Store:
    """VNI 100 with four flood-list VTEPs and four remote groups; VNI 200 local only.

    RR1 carries 8 paths, RR2 one copy of V2's IMET (the same route via a second reflector).
    Two inputs are refused: our own VTEP and a link-local local join.
    """
    store = Store(own_vteps=[OWN])
    for fact in (
        imet(V2, igmp=True, mld=True),
        imet(V3, igmp=True, mld=False),
        imet(V4, igmp=False, mld=False),
        imet(V6B, igmp=True, mld=True),
        smet(V2, None, G1),
        smet(V3, S1, G1),
        smet(V4, None, G2),
        smet(V6A, None, G6),
    ):
        _announce(store, RR1, fact)
    _announce(store, RR2, imet(V2, igmp=True, mld=True))
    assert store.announce(RR1, b"own", imet(OWN, igmp=True, mld=True)).rejected is not None
    store.local_join(100, S1, G1, "eth1")
    store.local_join(100, None, G2, "eth3")
    store.local_join(100, None, G2, "eth2")
    store.local_join(200, None, G1, "eth9")
    assert store.local_join(100, None, ip_address("224.0.0.251"), "eth1").rejected is not None
    return store


IPMR: dict[str, Any] = {
    "enabled": True,
    "budget": {"ipv4": {"tables": {"0": {"used": 3, "max": 32}}, "refused": {"eth7": "no room"}}},
    "errors": ["eth7: no VIF left"],
    "routes": [
        {
            "family": 4,
            "table": 253,
            "source": "192.0.2.10",
            "group": "239.1.1.1",
            "iif": "eth1",
            "oifs": ["br100"],
            "packets": 7,
            "bytes": 700,
            "wrong_if": 0,
            "unresolved": False,
        },
        {
            "family": 4,
            "table": 253,
            "source": "192.0.2.11",
            "group": "239.1.1.2",
            "iif": None,
            "oifs": [],
            "packets": 0,
            "bytes": 0,
            "wrong_if": 0,
            "unresolved": True,
        },
    ],
    "vifs": [
        {"family": 4, "table": 0, "vif": 0, "interface": "eth1", "packets_in": 5, "packets_out": 0},
        {"table": 0, "vif": 1, "interface": "vx100"},
    ],
}


def fabric_snapshot(store: Store | None = None) -> Snapshot:
    return Snapshot(
        router_id="10.0.0.1",
        local_vtep="10.0.0.1",
        asn=65000,
        uptime=12.345,
        store=fabric_store() if store is None else store,
        vnis=[
            {"vni": 100, "bridge": "br100", "device": "vx100"},
            {"vni": 300, "bridge": "br300", "device": "vx300"},
        ],
        peers={
            RR2: {"state": "up", "asn": 65000},
            RR1: {"state": "up", "asn": 65000},
            RR3: {"state": "idle", "asn": 65000, "reason": "connection refused"},
        },
        replication={"mode": "mdb", "added": 4, "removed": 1, "failed": 0, "deferred": 2},
        ipmr=IPMR,
        mqtt={"connected": True, "published": 7, "dropped": 1},
        errors=["something odd"],
    )


def empty_snapshot() -> Snapshot:
    return Snapshot(
        router_id="10.0.0.1", local_vtep="10.0.0.1", asn=65000, uptime=0.0, store=Store(), vnis=[], peers={}
    )


def roundtrip(data: Any) -> Any:
    """JSON and back: equal only if the view holds nothing but JSON types (no tuples, no addresses)."""
    return json.loads(json.dumps(data))


# --------------------------------------------------------------------------- views


def test_views_registry() -> None:
    assert set(VIEWS) == set(ALL_VIEWS)
    snap = fabric_snapshot()
    for name in ALL_VIEWS:
        assert view(name, snap) == VIEWS[name](snap)
    with pytest.raises(KeyError):
        view("nope", snap)


def test_groups_who_gets_a_copy() -> None:
    expected = [
        {
            "vni": 100,
            "source": "*",
            "group": "239.1.1.1",
            "receivers": [
                {"vtep": "10.0.0.2", "why": ["smet"]},
                {"vtep": "10.0.0.4", "why": ["no-igmp-proxy"]},
            ],
            "local_ports": [],
            "fanout": 2,
            "flood": 4,
        },
        {
            "vni": 100,
            "source": "192.0.2.10",
            "group": "239.1.1.1",
            "receivers": [
                {"vtep": "10.0.0.2", "why": ["smet-any-source"]},
                {"vtep": "10.0.0.3", "why": ["smet"]},
                {"vtep": "10.0.0.4", "why": ["no-igmp-proxy"]},
            ],
            "local_ports": ["eth1"],
            "fanout": 3,
            "flood": 4,
        },
        {
            "vni": 100,
            "source": "*",
            "group": "239.1.1.2",
            "receivers": [{"vtep": "10.0.0.4", "why": ["no-igmp-proxy", "smet"]}],
            "local_ports": ["eth2", "eth3"],
            "fanout": 1,
            "flood": 4,
        },
        {
            "vni": 100,
            "source": "*",
            "group": "ff0e::1",
            "receivers": [
                {"vtep": "10.0.0.3", "why": ["no-mld-proxy"]},
                {"vtep": "10.0.0.4", "why": ["no-mld-proxy"]},
                {"vtep": "2001:db8::2", "why": ["smet"]},
            ],
            "local_ports": [],
            "fanout": 3,
            "flood": 4,
        },
        {
            "vni": 200,
            "source": "*",
            "group": "239.1.1.1",
            "receivers": [],
            "local_ports": ["eth9"],
            "fanout": 0,
            "flood": 0,
        },
    ]
    got = view("groups", fabric_snapshot())
    assert got == expected
    assert roundtrip(got) == expected


def test_groups_proxyless_vtep_is_in_every_ipv4_group_and_no_ipv6_group() -> None:
    groups = view("groups", fabric_snapshot())
    for g in groups:
        whys = {r["vtep"]: r["why"] for r in g["receivers"]}
        if g["vni"] != 100:
            continue
        if ":" in g["group"]:
            assert "no-igmp-proxy" not in whys.get("10.0.0.4", [])
        else:
            assert "no-igmp-proxy" in whys["10.0.0.4"], g
            # The IGMP-proxy VTEPs are there only when they asked for it.
            assert all("no-igmp-proxy" not in whys.get(v, []) for v in ("10.0.0.2", "10.0.0.3"))
        assert g["fanout"] == len(g["receivers"]) <= g["flood"]


def test_groups_follow_the_store() -> None:
    """A withdraw shrinks the receivers; the view is computed at call time, never cached."""
    store = fabric_store()
    snap = fabric_snapshot(store)
    store.withdraw(RR1, _key(imet(V4, igmp=False, mld=False)))
    first = view("groups", snap)[0]
    assert first["receivers"] == [{"vtep": "10.0.0.2", "why": ["smet"]}]
    assert (first["fanout"], first["flood"]) == (1, 3)
    # V4's SMET for (*, G2) is still there: smet alone now.
    g2 = next(g for g in view("groups", snap) if g["group"] == "239.1.1.2")
    assert g2["receivers"] == [{"vtep": "10.0.0.4", "why": ["smet"]}]


def test_flood_lists_vteps_with_proxy_flags() -> None:
    expected = [
        {
            "vni": 100,
            "vteps": [
                {"vtep": "10.0.0.2", "igmp_proxy": True, "mld_proxy": True},
                {"vtep": "10.0.0.3", "igmp_proxy": True, "mld_proxy": False},
                {"vtep": "10.0.0.4", "igmp_proxy": False, "mld_proxy": False},
                {"vtep": "2001:db8::3", "igmp_proxy": True, "mld_proxy": True},
            ],
        },
        {"vni": 200, "vteps": []},
        {"vni": 300, "vteps": []},
    ]
    got = view("flood", fabric_snapshot())
    assert got == expected
    assert roundtrip(got) == expected


def test_summary_counts() -> None:
    expected = {
        "router_id": "10.0.0.1",
        "local_vtep": "10.0.0.1",
        "asn": 65000,
        "uptime": 12.3,
        "peers": {"up": 2, "total": 3},
        "paths": 9,
        "vnis": 2,
        "flood_entries": 4,
        "remote_groups": 4,
        "local_groups": 3,
        "rejected": {"own-vtep": 1, "link-local-group": 1},
        "replication": {"mode": "mdb", "added": 4, "removed": 1, "failed": 0, "deferred": 2},
        "ipmr": {"enabled": True, "budget": IPMR["budget"], "errors": IPMR["errors"]},
        "mqtt": {"connected": True, "published": 7, "dropped": 1},
        "errors": ["something odd"],
    }
    got = view("summary", fabric_snapshot())
    assert got == expected
    assert roundtrip(got) == expected


def test_summary_of_an_empty_agent() -> None:
    assert view("summary", empty_snapshot()) == {
        "router_id": "10.0.0.1",
        "local_vtep": "10.0.0.1",
        "asn": 65000,
        "uptime": 0.0,
        "peers": {"up": 0, "total": 0},
        "paths": 0,
        "vnis": 0,
        "flood_entries": 0,
        "remote_groups": 0,
        "local_groups": 0,
        "rejected": {},
        "replication": {},
        "ipmr": {},
        "mqtt": None,
        "errors": [],
    }


def test_vnis_view() -> None:
    expected = [
        {"vni": 100, "bridge": "br100", "device": "vx100", "flood": 4, "remote_groups": 4, "local_groups": 2},
        {"vni": 300, "bridge": "br300", "device": "vx300", "flood": 0, "remote_groups": 0, "local_groups": 0},
    ]
    got = view("vnis", fabric_snapshot())
    assert got == expected
    assert roundtrip(got) == expected


def test_peers_merges_store_path_counts() -> None:
    expected = [
        {"peer": RR1, "state": "up", "asn": 65000, "paths": 8},
        {"peer": RR2, "state": "up", "asn": 65000, "paths": 1},
        {"peer": RR3, "state": "idle", "asn": 65000, "reason": "connection refused", "paths": 0},
    ]
    got = view("peers", fabric_snapshot())
    assert got == expected
    assert roundtrip(got) == expected


def test_mroutes_and_vifs_pass_ipmr_through() -> None:
    snap = fabric_snapshot()
    assert view("mroutes", snap) == IPMR["routes"]
    assert view("vifs", snap) == {"budget": IPMR["budget"], "vifs": IPMR["vifs"]}
    empty = empty_snapshot()
    assert view("mroutes", empty) == []
    assert view("vifs", empty) == {"budget": {}, "vifs": []}


@pytest.mark.parametrize("name", ALL_VIEWS)
def test_every_view_is_json(name: str) -> None:
    for snap in (fabric_snapshot(), empty_snapshot()):
        data = view(name, snap)
        assert roundtrip(data) == data


def test_empty_store_views() -> None:
    snap = empty_snapshot()
    assert view("groups", snap) == []
    assert view("flood", snap) == []
    assert view("vnis", snap) == []
    assert view("peers", snap) == []


# --------------------------------------------------------------------------- tables


def _lines(text: str) -> list[str]:
    return text.splitlines()


def test_render_summary() -> None:
    text = render("summary", view("summary", fabric_snapshot()))
    lines = _lines(text)
    assert lines[0] == "router id 10.0.0.1  VTEP 10.0.0.1  AS 65000  up 12s"
    assert lines[1] == "peers 2/3 up, 9 paths"
    assert lines[2] == "VNIs 2, flood entries 4, remote groups 4, local groups 3"
    assert "replication mode mdb: last pass added 4, removed 1, failed 0, deferred 2" in lines
    assert "IPMR ipv4: VIFs table 0: 3/32; refused ['eth7']" in lines
    assert "MQTT connected, published 7, dropped 1" in lines
    assert "rejected: link-local-group 1, own-vtep 1" in lines
    assert lines[-1] == "error: something odd"


def test_render_summary_of_an_empty_agent() -> None:
    lines = _lines(render("summary", view("summary", empty_snapshot())))
    assert lines == [
        "router id 10.0.0.1  VTEP 10.0.0.1  AS 65000  up 0s",
        "peers 0/0 up, 0 paths",
        "VNIs 0, flood entries 0, remote groups 0, local groups 0",
    ]


def test_render_vnis() -> None:
    lines = _lines(render("vnis", view("vnis", fabric_snapshot())))
    assert lines[0].split() == ["VNI", "BRIDGE", "DEVICE", "FLOOD", "REMOTE", "GROUPS", "LOCAL", "GROUPS"]
    assert [line.split() for line in lines[1:]] == [
        ["100", "br100", "vx100", "4", "4", "2"],
        ["300", "br300", "vx300", "0", "0", "0"],
    ]


def test_render_flood() -> None:
    lines = _lines(render("flood", view("flood", fabric_snapshot())))
    assert lines[0].split() == ["VNI", "VTEP", "PROXY"]
    assert len(lines) == 1 + 4  # one row per VTEP; VNIs without VTEPs have no row
    rows = {line.split(None, 2)[1]: line.split(None, 2)[2] for line in lines[1:]}
    assert rows == {
        "10.0.0.2": "igmp+mld",
        "10.0.0.3": "igmp",
        "10.0.0.4": "none (gets all multicast)",
        "2001:db8::3": "igmp+mld",
    }


def test_render_groups() -> None:
    data = view("groups", fabric_snapshot())
    lines = _lines(render("groups", data))
    assert lines[0].split() == ["VNI", "GROUP", "FAN-OUT", "RECEIVERS", "(WHY)", "LOCAL", "PORTS"]
    assert len(lines) == 1 + len(data)
    assert "(*, 239.1.1.1)" in lines[1]
    assert "2/4" in lines[1]
    assert "10.0.0.2 (smet), 10.0.0.4 (no-igmp-proxy)" in lines[1]
    assert lines[1].rstrip().endswith("-")  # no local port
    assert "(192.0.2.10, 239.1.1.1)" in lines[2]
    assert lines[2].rstrip().endswith("eth1")
    assert "10.0.0.4 (no-igmp-proxy+smet)" in lines[3]
    assert lines[3].rstrip().endswith("eth2, eth3")
    assert "(*, ff0e::1)" in lines[4]
    assert lines[5].split() == ["200", "(*,", "239.1.1.1)", "0/0", "-", "eth9"]


def test_render_peers() -> None:
    lines = _lines(render("peers", view("peers", fabric_snapshot())))
    assert lines[0].split() == ["PEER", "STATE", "PATHS", "REASON"]
    assert [line.split(None, 3) for line in lines[1:]] == [
        [RR1, "up", "8"],
        [RR2, "up", "1"],
        [RR3, "idle", "0", "connection refused"],
    ]


def test_render_mroutes_and_vifs() -> None:
    snap = fabric_snapshot()
    mroutes = [line.split() for line in _lines(render("mroutes", view("mroutes", snap)))]
    assert mroutes[0] == ["FAMILY", "TABLE", "SOURCE", "GROUP", "IIF", "OIFS", "PACKETS", "WRONG-IF"]
    assert mroutes[1:] == [
        ["4", "253", "192.0.2.10", "239.1.1.1", "eth1", "br100", "7", "0"],
        ["4", "253", "192.0.2.11", "239.1.1.2", "-", "-", "0", "0"],
    ]
    lines = _lines(render("vifs", view("vifs", snap)))
    assert lines[0].split() == ["FAMILY", "TABLE", "VIF", "INTERFACE", "PKTS", "IN", "PKTS", "OUT"]
    assert [line.split() for line in lines[1:]] == [
        ["4", "0", "0", "eth1", "5", "0"],
        ["4", "0", "1", "vx100", "-", "-"],
    ]


@pytest.mark.parametrize("name", ALL_VIEWS)
def test_render_never_raises_on_empty_data(name: str) -> None:
    text = render(name, view(name, empty_snapshot()))
    assert isinstance(text, str)
    if name != "summary":
        assert len(_lines(text)) == 1  # the header alone
    # And through JSON, as evpnctl gets it.
    assert render(name, roundtrip(view(name, fabric_snapshot())))


def test_render_unknown_view() -> None:
    with pytest.raises(KeyError):
        render("nope", [])


# --------------------------------------------------------------------------- control socket


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    path = tmp_path / "c.sock"
    assert len(str(path).encode()) < 100, "AF_UNIX paths are limited to 107 bytes"
    return path


@asynccontextmanager
async def served(path: Path, handler: Handler, mode: int = 0o600) -> AsyncIterator[asyncio.AbstractServer]:
    server = await serve(path, handler, mode)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


async def echo(request: dict[str, Any]) -> Any:
    if "fail" in request:
        raise ValueError(request["fail"])
    if "key" in request:
        return {}[request["key"]]
    return {"echo": request}


async def test_ask_gets_the_handlers_result(sock: Path) -> None:
    async with served(sock, echo):
        assert await asyncio.to_thread(ask, sock, {"show": "groups"}) == {"echo": {"show": "groups"}}
        # One connection per ask: the server keeps answering.
        assert await asyncio.to_thread(ask, sock, {"n": 2}) == {"echo": {"n": 2}}


async def test_handler_errors_become_control_errors(sock: Path) -> None:
    async with served(sock, echo):
        with pytest.raises(ControlError) as info:
            await asyncio.to_thread(ask, sock, {"fail": "unknown view: bogus"})
        assert str(info.value) == "unknown view: bogus"
        with pytest.raises(ControlError) as info:
            await asyncio.to_thread(ask, sock, {"key": "bogus"})
        assert str(info.value) == "bogus"  # KeyError's quotes stripped
        assert await asyncio.to_thread(ask, sock, {"ok": 1}) == {"echo": {"ok": 1}}


async def _exchange(path: Path, lines: list[bytes]) -> list[dict[str, Any]]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    answers = []
    try:
        for line in lines:
            writer.write(line)
            await writer.drain()
            answers.append(json.loads(await asyncio.wait_for(reader.readline(), 2.0)))
    finally:
        writer.close()
        await writer.wait_closed()
    return answers


async def test_malformed_requests_get_error_answers(sock: Path) -> None:
    async with served(sock, echo):
        bad_json, not_object, bad_utf8, good = await _exchange(
            sock, [b"{not json\n", b"[1, 2]\n", b"\xff\xfe\n", b'{"show": "summary"}\n']
        )
        assert bad_json["ok"] is False
        assert isinstance(bad_json["error"], str)
        assert bad_json["error"]
        assert not_object == {"ok": False, "error": "a request is a JSON object"}
        assert bad_utf8["ok"] is False
        # The same connection still works, and so does the server.
        assert good == {"ok": True, "result": {"echo": {"show": "summary"}}}
        assert await asyncio.to_thread(ask, sock, {"a": 1}) == {"echo": {"a": 1}}


async def test_second_serve_on_a_live_socket_is_refused(sock: Path) -> None:
    async with served(sock, echo):
        with pytest.raises(ControlError) as info:
            await serve(sock, echo)
        assert str(info.value) == f"another agent is already answering on {sock}"
        # The first agent is undisturbed.
        assert await asyncio.to_thread(ask, sock, {"still": "here"}) == {"echo": {"still": "here"}}


async def test_stale_socket_is_replaced(sock: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(sock))  # bound, never listening, closed: what a killed agent leaves
    assert stat.S_ISSOCK(sock.stat().st_mode)
    with pytest.raises(ControlError) as info:
        await asyncio.to_thread(ask, sock, {})
    assert str(info.value) == f"the agent is not running (nobody answers on {sock})"
    async with served(sock, echo):
        assert await asyncio.to_thread(ask, sock, {"x": 1}) == {"echo": {"x": 1}}


async def test_socket_mode(sock: Path, tmp_path: Path) -> None:
    async with served(sock, echo):
        mode = sock.stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
    other = tmp_path / "sub" / "g.sock"  # the parent directory is created
    async with served(other, echo, mode=0o660):
        assert stat.S_IMODE(other.stat().st_mode) == 0o660


def test_ask_without_an_agent(sock: Path) -> None:
    with pytest.raises(ControlError) as info:
        ask(sock, {"show": "summary"})
    assert str(info.value) == f"the agent is not running (no control socket at {sock})"


async def test_ask_times_out(sock: Path) -> None:
    release = asyncio.Event()

    async def slow(request: dict[str, Any]) -> Any:
        await release.wait()
        return 1

    async with served(sock, slow):
        try:
            with pytest.raises(ControlError) as info:
                await asyncio.to_thread(ask, sock, {}, 0.2)
            assert str(info.value) == f"the agent at {sock} did not answer within 0.2s"
        finally:
            release.set()
            await asyncio.sleep(0)


# --------------------------------------------------------------------------- evpnctl show


def test_cli_show_without_an_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.sock"
    assert cli.main(["show", "summary", "--socket", str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"evpnctl: the agent is not running (no control socket at {missing})\n"


async def test_cli_show_groups_json(sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = view("groups", fabric_snapshot())
    seen: list[dict[str, Any]] = []

    async def agent(request: dict[str, Any]) -> Any:
        seen.append(request)
        return view(request["show"], fabric_snapshot())

    async with served(sock, agent):
        rc = await asyncio.to_thread(cli.main, ["show", "groups", "--json", "--socket", str(sock)])
        assert rc == 0
        out, err = capsys.readouterr()
        assert err == ""
        assert json.loads(out) == data
        assert seen == [{"show": "groups"}]

        # Without --json: the table of the same data.
        rc = await asyncio.to_thread(cli.main, ["show", "groups", "--socket", str(sock)])
        assert rc == 0
        out, _ = capsys.readouterr()
        assert out == render("groups", data) + "\n"


@pytest.mark.parametrize("name", ALL_VIEWS)
async def test_cli_show_every_view(name: str, sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def agent(request: dict[str, Any]) -> Any:
        return view(request["show"], fabric_snapshot())

    async with served(sock, agent):
        assert await asyncio.to_thread(cli.main, ["show", name, "--socket", str(sock)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == render(name, roundtrip(view(name, fabric_snapshot()))) + "\n"


async def test_cli_show_refused_by_the_agent(sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def agent(request: dict[str, Any]) -> Any:
        raise ValueError("IPMR is not enabled")

    async with served(sock, agent):
        assert await asyncio.to_thread(cli.main, ["show", "vifs", "--socket", str(sock)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "evpnctl: IPMR is not enabled\n"


@pytest.mark.parametrize("argv", [["show", "bogus"], ["show"], ["show", "groups", "--bogus"]])
def test_cli_show_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    _, err = capsys.readouterr()
    assert err.startswith("usage: evpnctl")
    assert err.count("\n") == 2  # usage line and one error line
    if argv[1:] == ["bogus"]:
        assert "invalid choice: 'bogus'" in err


# --------------------------------------------------------------------------- known bugs (strict xfail)


def test_render_mroutes_documented_shape_is_a_table() -> None:
    routes = [
        {
            "family": 4,
            "table": 253,
            "source": "192.0.2.10",
            "group": "239.1.1.1",
            "iif": "eth1",
            "oifs": ["vx100", "eth2"],
            "packets": 10,
            "bytes": 1000,
            "wrong_if": 0,
            "unresolved": False,
        }
    ]
    lines = _lines(render("mroutes", routes))
    assert len(lines) == 1 + len(routes)
    assert "GROUP" in lines[0]
    assert "{" not in lines[1]


async def test_serve_keeps_a_file_that_is_not_a_socket(tmp_path: Path) -> None:
    precious = tmp_path / "c.sock"
    precious.write_text("precious")
    try:
        server = await serve(precious, echo)
    except ControlError:
        pass
    else:
        server.close()
        await server.wait_closed()
    assert not stat.S_ISSOCK(precious.stat().st_mode)
    assert precious.read_text() == "precious"


async def test_unexpected_handler_error_is_reported(sock: Path) -> None:
    async def broken(request: dict[str, Any]) -> Any:
        raise RuntimeError("store exploded")

    async with served(sock, broken):
        with pytest.raises(ControlError) as info:
            await asyncio.to_thread(ask, sock, {"show": "groups"})
    assert "not JSON" not in str(info.value)


def test_ask_on_an_overlong_path_says_why(tmp_path: Path) -> None:
    with pytest.raises(ControlError) as info:
        ask(tmp_path / ("x" * 200), {})
    assert not str(info.value).endswith("None")
