"""Pure pieces the daemon relies on: the JSON log line, the store snapshot handed to the
replication thread, and holding deletes until BGP has converged."""

from __future__ import annotations

import contextlib
import json
import logging
from ipaddress import ip_address
from pathlib import Path

from agent.daemon import _JsonFormatter
from agent.store import RemoteImet, RemoteSmet, Store
from replication.model import StoreSnapshot

V2, V3 = ip_address("10.0.0.2"), ip_address("10.0.0.3")
G = ip_address("239.1.1.1")


def test_json_log_lines_are_one_json_object_each() -> None:
    record = logging.LogRecord(
        "evpn.agent", logging.WARNING, __file__, 1, 'peer %s said "%s"', ("x", "bye\n"), None
    )
    line = _JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert (
        data["level"] == "warning"
        and data["logger"] == "evpn.agent"
        and data["message"] == 'peer x said "bye\n"'
    )


def test_the_store_snapshot_answers_like_the_store_and_does_not_follow_it() -> None:
    store = Store()
    store.announce("p", b"1", RemoteImet(100, V2, True, True))
    store.announce("p", b"2", RemoteImet(100, V3, False, True))
    store.announce("p", b"3", RemoteSmet(100, V2, None, G))
    snap = StoreSnapshot.of(store, [100, 200])
    assert snap.flood_list(100) == store.flood_list(100) == {V2, V3}
    assert snap.all_multicast(100, 4) == {V3} and snap.all_multicast(100, 6) == frozenset()
    assert snap.remote_groups(100) == store.remote_groups(100)
    assert snap.receivers(100, None, G) == store.receivers(100, None, G) == {V2, V3}
    assert snap.flood_list(200) == frozenset()
    store.withdraw("p", b"1")
    assert snap.flood_list(100) == {V2, V3}  # frozen: the worker thread sees one consistent state


def test_convergence_is_latched_and_only_a_dead_exabgp_unlatches_it(tmp_path: Path) -> None:
    """Deletes are held at start-up until every neighbor sent End-of-RIB (or was up EOR_GRACE
    seconds); a session lost later is churn, whose deletes must not wait for startup_hold."""
    from agent.config import parse_config
    from agent.daemon import Agent
    from bgp.exabgp_json import EndOfRib, PeerState

    config = parse_config(
        {
            "router_id": "10.0.0.1",
            "local_vtep": "10.0.0.1",
            "asn": 65000,
            "neighbors": [{"address": "10.0.0.2", "asn": 65000}, {"address": "10.0.0.3", "asn": 65000}],
            "vnis": [{"vni": 100}],
            "workdir": str(tmp_path),
        }
    )
    agent = Agent(config)
    assert not agent._converged()
    agent._bgp_event(EndOfRib("10.0.0.2", "l2vpn evpn"))
    assert not agent._converged()  # 10.0.0.3 still owes its routes
    agent._bgp_event(EndOfRib("10.0.0.3", "l2vpn evpn"))
    assert agent._converged()
    agent.bgp.apply(PeerState("10.0.0.2", "down", "hold timer expired"))
    assert agent._converged()  # latched
    agent.bgp.peer_states["10.0.0.3"] = "up"
    agent.bgp.announced[("x",)] = None  # type: ignore[index,assignment]
    with contextlib.suppress(RuntimeError):  # no running loop here: the respawn task is not made
        agent._exabgp_exited(-9)
    assert not agent._converged()  # held again until the peers are back
    assert agent.bgp.peer_states["10.0.0.3"] == "down" and not agent.bgp.announced
