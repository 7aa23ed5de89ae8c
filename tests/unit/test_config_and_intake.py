"""Config validation, the ExaBGP configuration generated from it, origination settings, and the
route-target import rules of the intake."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config, parse_config
from agent.intake import AUTO, ImportPolicy, Intake
from agent.store import Store
from bgp.attributes import PmsiTunnel, RouteTarget
from bgp.evpn import InclusiveMulticast, RouteDistinguisher, SelectiveMulticast, SmetFlags
from bgp.exabgp_config import exabgp_environment, render_config
from bgp.exabgp_json import PathAttributes, PeerOpen, PeerState, RouteAnnounce
from bgp.originate import desired_routes, route_commands

BASE = {
    "router_id": "10.0.0.1",
    "local_vtep": "10.0.0.1",
    "asn": 65000,
    "graceful_restart": 120,
    "neighbors": [
        {"address": "10.0.0.2", "asn": 65000, "md5": 'pa"ss'},
        {"address": "10.0.0.3", "asn": 65001, "send_smet": False, "passive": True},
    ],
    "vnis": [
        {"vni": 100},
        {"vni": 200, "route_targets": {"import": ["65000:2000"], "export": ["65000:2000"]}},
    ],
}


def test_exabgp_config_carries_every_setting() -> None:
    cfg = parse_config(BASE)
    text = render_config(cfg.speaker(), ["/usr/bin/python3", "-m", "bgp.relay", "/run/x sock"])
    assert "run /usr/bin/python3 -m bgp.relay '/run/x sock';" in text
    assert "neighbor 10.0.0.2 {" in text and "neighbor 10.0.0.3 {" in text
    assert 'md5-password "pa\\"ss";' in text
    assert text.count("graceful-restart 120;") == 2
    assert "peer-as 65001;" in text and "local-as 65000;" in text and "router-id 10.0.0.1;" in text
    assert "passive true;" in text and "l2vpn evpn;" in text and "neighbor-changes;" in text
    env = exabgp_environment(cfg.speaker())
    assert env["exabgp_daemon_user"] == "root" and env["exabgp_api_ack"] == "true"
    assert env["exabgp_tcp_bind"] == "10.0.0.1"


def test_a_peer_without_smet_turns_proxy_claims_off_and_gets_no_smet() -> None:
    origin = parse_config(BASE).origin()
    assert origin.proxy is False
    assert origin.smet_neighbors == (ip_address("10.0.0.2"),)
    routes = desired_routes(origin, {100: [(None, ip_address("239.1.1.1"))]})
    lines = [line for _, _, line in route_commands({}, routes)]
    imets = [line for line in lines if " imet " in line]
    assert len(imets) == 2 and all("mcast-flags none" in line for line in imets)
    assert [line for line in lines if " smet " in line] == []  # no proxy claimed: no SMET either

    all_smet = parse_config({**BASE, "neighbors": BASE["neighbors"][:1]}).origin()  # type: ignore[index]
    routes = desired_routes(all_smet, {100: [(None, ip_address("239.1.1.1"))]})
    lines = [line for _, _, line in route_commands({}, routes)]
    assert any("mcast-flags igmp-proxy+mld-proxy" in line for line in lines)
    assert any(line.startswith("announce evpn smet") and "rt 65000:100" in line for line in lines)
    assert any("rt 65000:2000" in line and "rd 10.0.0.1:200" in line for line in lines)


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"asn": 0}, "config: asn: Input should be greater than or equal to 1"),
        ({"router_id": "nope"}, "config: router_id: not an IP address: 'nope'"),
        ({"vnis": [{"vni": 100}, {"vni": 100}]}, "config: vnis: VNI 100 configured twice"),
        ({"vnis": [{"vni": 1, "rd": "x"}]}, "config: vnis[0].rd: route distinguisher 'x'"),
        (
            {"neighbors": [{"address": "10.0.0.2", "asn": 1, "colour": "red"}]},
            "config: neighbors[0].colour: unknown key",
        ),
        (
            {"replication": {"mode": "fast"}},
            "config: replication.mode: Input should be 'auto', 'mdb' or 'mac'",
        ),
        (
            {"replication": {"protocol": 3}},
            "config: replication.protocol: Input should be greater than or equal to 4",
        ),
        ({"vnis": [{"vni": 1, "querier": "x"}]}, "config: vnis[0].querier: not an IP address: 'x'"),
    ],
)
def test_config_errors_are_one_line_with_their_path(patch: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, **patch})
    assert str(err.value).startswith(expected)
    assert "\n" not in str(err.value)


def test_replication_settings_and_device_names_come_from_the_config(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            **BASE,
            "workdir": str(tmp_path),
            "replication": {"mode": "mac", "protocol": 77, "retry_max": 5},
            "vnis": [{"vni": 100, "querier": "10.100.0.1"}, {"vni": 200, "bridge": "brX", "device": "vxX"}],
        }
    )
    settings = cfg.replication_settings()
    assert (settings.mode, settings.protocol, settings.retry_initial, settings.retry_max) == (
        "mac",
        77,
        1.0,
        5.0,
    )
    assert settings.journal == tmp_path / "replication-journal.json"
    ports = cfg.vni_ports()
    assert [(p.vni, p.bridge, p.vxlan, p.querier) for p in ports] == [
        (100, "br100", "vxlan100", ip_address("10.100.0.1")),
        (200, "brX", "vxX", None),
    ]
    default = parse_config(BASE).replication_settings()
    assert (default.mode, default.protocol) == ("auto", 232)


def test_load_config_reports_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("router_id: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


RD = RouteDistinguisher.from_str("10.0.0.9:1")
V9 = ip_address("10.0.0.9")
G = ip_address("239.1.1.1")


def imet(vni: int, rts: list[str], vtep=V9) -> RouteAnnounce:  # type: ignore[no-untyped-def]
    attrs = PathAttributes(frozenset(RouteTarget.from_str(r) for r in rts), PmsiTunnel(6, vni, vtep))
    rd = RouteDistinguisher.from_str(f"10.0.0.9:{vni}")  # one route per VNI, as a leaf sends them
    return RouteAnnounce("p1", InclusiveMulticast(rd, 0, vtep), vtep, attrs)


def smet(rts: list[str], etag: int = 0) -> RouteAnnounce:
    attrs = PathAttributes(frozenset(RouteTarget.from_str(r) for r in rts))
    return RouteAnnounce("p1", SelectiveMulticast(RD, etag, None, G, V9, SmetFlags(2)), V9, attrs)


def test_import_by_route_target() -> None:
    policy = ImportPolicy({100: AUTO, 200: frozenset({RouteTarget.from_str("65000:2000")})})
    intake = Intake(Store(), policy)
    assert intake.apply(imet(100, ["65099:100"]), 0).flood == {100}  # auto RT: any AS
    assert not intake.apply(imet(300, ["65000:300"]), 0)  # VNI not configured
    assert not intake.apply(imet(200, ["65000:200"]), 0)  # explicit RT required
    assert intake.apply(imet(200, ["65000:2000"]), 0).flood == {200}
    assert intake.counters["vni-not-configured"] == 1 and intake.counters["route-target-mismatch"] == 1
    assert intake.apply(smet(["65000:100"]), 0).groups == {(100, None, G)}
    assert intake.apply(smet(["65000:100"], etag=200), 0).rejected is None
    assert intake.counters["route-target-mismatch"] == 2  # tag names VNI 200, RT does not match


def test_imet_without_ingress_replication_is_ignored_and_a_changed_path_stops_counting() -> None:
    intake = Intake(Store(), ImportPolicy({100: AUTO}))
    assert intake.apply(imet(100, ["65000:100"]), 0).flood == {100}
    assert intake.store.flood_list(100) == {V9}
    # The same route re-announced with an RT that no longer imports: the old path goes.
    assert intake.apply(imet(100, ["65000:999"]), 0).flood == {100}
    assert intake.store.flood_list(100) == frozenset()
    no_pmsi = RouteAnnounce("p1", InclusiveMulticast(RD, 0, V9), V9, PathAttributes())
    assert not intake.apply(no_pmsi, 0)
    assert intake.counters["imet-not-ingress-replication"] == 1


def test_peer_down_flushes_or_keeps_stale_for_graceful_restart() -> None:
    intake = Intake(Store(), ImportPolicy({100: AUTO}), graceful_restart={"p2": 60.0})
    intake.apply(imet(100, ["65000:100"]), 0)
    assert intake.apply(PeerState("p1", "down", "hold timer expired"), 5.0).flood == {100}
    gr = Intake(Store(), ImportPolicy({100: AUTO}), graceful_restart={"p1": 60.0})
    gr.apply(imet(100, ["65000:100"]), 0)
    assert not gr.apply(PeerState("p1", "down"), 5.0)
    assert gr.store.flood_list(100) == {V9} and gr.store.next_deadline() == 65.0


def test_graceful_restart_only_for_a_peer_that_offered_it_for_evpn_and_never_after_a_notification() -> None:
    def lost(open_event: PeerOpen | None, reason: str) -> tuple[bool, float | None]:
        """(paths kept, their deadline) after the peer's OPEN and a session loss at t=5."""
        intake = Intake(Store(), ImportPolicy({100: AUTO}), graceful_restart={"p1": 60.0})
        if open_event is not None:
            intake.apply(open_event, 0)
        intake.apply(imet(100, ["65000:100"]), 0)
        intake.apply(PeerState("p1", "down", reason), 5.0)
        return intake.store.flood_list(100) == {V9}, intake.store.next_deadline()

    evpn = frozenset({"l2vpn evpn"})
    assert lost(PeerOpen("p1", 30, evpn), "closing connection") == (True, 35.0)  # its own time
    assert lost(PeerOpen("p1", 120, evpn), "closing connection") == (True, 65.0)  # at most ours
    assert lost(PeerOpen("p1", 120, frozenset({"ipv4 unicast"})), "closing connection") == (False, None)
    assert lost(PeerOpen("p1", None, frozenset()), "closing connection") == (False, None)
    reason = "peer reset, message [notification received (6,2)] error[...]"
    assert lost(PeerOpen("p1", 30, evpn), reason) == (False, None)
    assert lost(None, "closing connection") == (True, 65.0)  # no OPEN seen: the configured time


def test_ipmr_settings_come_from_the_config() -> None:
    cfg = parse_config(
        {
            **BASE,
            "ipmr": {
                "enabled": True,
                "families": [4, 6],
                "tables": [253, 100],
                "edge": ["eth1", "eth2"],
                "svis": [100],
                "querier": ["eth1"],
                "routes": [{"group": "239.1.1.1", "iif": "eth1", "oifs": ["eth2"]}],
            },
        }
    )
    s = cfg.ipmr_settings()
    assert s.edge == ("eth1", "eth2") and s.tables == (253, 100) and s.families == (4, 6)
    assert dict(s.svis) == {"br100": 100} and s.querier == frozenset({"eth1"})
    assert (
        s.routes[0].source is None and str(s.routes[0].group) == "239.1.1.1" and s.routes[0].oifs == ("eth2",)
    )
    assert s.gmi == 260.0


@pytest.mark.parametrize(
    ("ipmr", "expected"),
    [
        ({"querier": ["eth9"], "edge": ["eth1"]}, "config: ipmr: querier interfaces ['eth9'] are not edge"),
        ({"query_response": 200}, "config: ipmr.query_response: Input should be less than or equal to 25.5"),
        ({"routes": [{"group": "10.0.0.1", "iif": "a"}]}, "config: ipmr.routes[0].group: 10.0.0.1 is not a"),
        ({"families": [5]}, "config: ipmr.families[0]: Input should be 4 or 6"),
    ],
)
def test_ipmr_config_errors_are_one_line(ipmr: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "ipmr": ipmr})
    assert str(err.value).startswith(expected), str(err.value)
