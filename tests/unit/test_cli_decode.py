"""``evpnctl decode`` (agent.cli)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path

import pytest

from agent.cli import describe, main
from bgp.evpn import (
    ZERO_ESI,
    EthernetAutoDiscovery,
    EthernetSegment,
    EthernetSegmentId,
    EvpnRoute,
    InclusiveMulticast,
    IpPrefix,
    JoinSynch,
    LeaveSynch,
    MacIpAdvertisement,
    RouteDistinguisher,
    SelectiveMulticast,
    SmetFlags,
)

ROOT = Path(__file__).resolve().parents[2]
RD = RouteDistinguisher.from_str("10.0.0.1:100")
ESI = EthernetSegmentId(bytes(range(1, 11)))
ESI_TEXT = "01:02:03:04:05:06:07:08:09:0a"
V4 = IPv4Address("10.0.0.1")
G4 = IPv4Address("239.1.1.1")
GOLDEN_IMET = "031100010A000001006400000000200A000001"
GOLDEN_SMET = "061800010A0000010064000000000020EF010101200A00000102"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["decode", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _human(capsys: pytest.CaptureFixture[str], hex_text: str) -> dict[str, str]:
    code, out, err = _run(capsys, hex_text)
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    fields = dict(line.split(": ", 1) for line in lines)
    assert len(fields) == len(lines)  # one "name: value" per line, no repeated names
    return fields


def _json(capsys: pytest.CaptureFixture[str], hex_text: str) -> dict[str, object]:
    code, out, err = _run(capsys, "--json", hex_text)
    assert code == 0
    assert err == ""
    assert out.count("\n") == 1
    doc = json.loads(out)
    assert isinstance(doc, dict)
    return doc


# --------------------------------------------------------------------------- per route type

CASES: list[tuple[EvpnRoute, dict[str, str], dict[str, object]]] = [
    (
        EthernetAutoDiscovery(RD, ESI, 0xFFFFFFFF, 10100),
        {
            "type": "1 (ethernet-auto-discovery)",
            "esi": ESI_TEXT,
            "ethernet-tag": "4294967295",
            "label": "10100",
        },
        {
            "type": 1,
            "name": "ethernet-auto-discovery",
            "esi": ESI_TEXT,
            "ethernet_tag": 4294967295,
            "label": 10100,
        },
    ),
    (
        MacIpAdvertisement(RD, ZERO_ESI, 100, "aa:bb:cc:00:11:22", V4, 10100, 50000),
        {
            "type": "2 (mac-ip-advertisement)",
            "mac": "aa:bb:cc:00:11:22",
            "ip": "10.0.0.1",
            "labels": "10100, 50000",
        },
        {
            "type": 2,
            "mac": "aa:bb:cc:00:11:22",
            "ip": "10.0.0.1",
            "labels": [10100, 50000],
            "ethernet_tag": 100,
        },
    ),
    (
        MacIpAdvertisement(RD, ZERO_ESI, 0, "02:00:00:00:00:01", None, 7, None),
        {"ip": "none", "labels": "7", "esi": "00:00:00:00:00:00:00:00:00:00"},
        {"ip": None, "labels": [7]},
    ),
    (
        InclusiveMulticast(RD, 0, V4),
        {
            "type": "3 (inclusive-multicast)",
            "rd": "10.0.0.1:100",
            "ethernet-tag": "0",
            "originator": "10.0.0.1",
        },
        {
            "type": 3,
            "name": "inclusive-multicast",
            "rd": "10.0.0.1:100",
            "ethernet_tag": 0,
            "originator": "10.0.0.1",
        },
    ),
    (
        InclusiveMulticast(RouteDistinguisher.from_str("65000:7"), 5, IPv6Address("2001:db8::1")),
        {"rd": "65000:7", "ethernet-tag": "5", "originator": "2001:db8::1"},
        {"rd": "65000:7", "originator": "2001:db8::1"},
    ),
    (
        EthernetSegment(RD, ESI, V4),
        {"type": "4 (ethernet-segment)", "esi": ESI_TEXT, "originator": "10.0.0.1"},
        {"type": 4, "esi": ESI_TEXT, "originator": "10.0.0.1"},
    ),
    (
        IpPrefix(RD, ZERO_ESI, 0, IPv4Network("10.1.0.0/16"), IPv4Address("10.0.0.254"), 10100),
        {"type": "5 (ip-prefix)", "prefix": "10.1.0.0/16", "gateway": "10.0.0.254", "label": "10100"},
        {"type": 5, "prefix": "10.1.0.0/16", "gateway": "10.0.0.254", "label": 10100},
    ),
    (
        SelectiveMulticast(RD, 0, None, G4, V4, SmetFlags(SmetFlags.IGMP_V2)),
        {
            "type": "6 (selective-multicast)",
            "source": "*",
            "group": "239.1.1.1",
            "originator": "10.0.0.1",
            "flags": "v2 include (0x02)",
            "key": GOLDEN_SMET.lower()[:-2],
        },
        {
            "type": 6,
            "source": None,
            "group": "239.1.1.1",
            "flags": {"raw": 2, "v1": False, "v2": True, "v3": False, "exclude": False},
            "key": GOLDEN_SMET.lower()[:-2],
        },
    ),
    (
        SelectiveMulticast(
            RD, 3, IPv6Address("2001:db8::9"), IPv6Address("ff0e::1"), V4, SmetFlags(SmetFlags.IGMP_V3 | 8)
        ),
        {"source": "2001:db8::9", "group": "ff0e::1", "flags": "v3 exclude (0x0c)", "ethernet-tag": "3"},
        {
            "source": "2001:db8::9",
            "flags": {"raw": 12, "v1": False, "v2": False, "v3": True, "exclude": True},
        },
    ),
    (
        JoinSynch(RD, ESI, 0, IPv4Address("10.1.1.1"), G4, V4, SmetFlags(SmetFlags.IGMP_V3)),
        {"type": "7 (join-synch)", "esi": ESI_TEXT, "source": "10.1.1.1", "flags": "v3 include (0x04)"},
        {"type": 7, "name": "join-synch", "esi": ESI_TEXT, "source": "10.1.1.1"},
    ),
    (
        LeaveSynch(RD, ESI, 0, None, G4, V4, 77, 10, SmetFlags(SmetFlags.IGMP_V1 | SmetFlags.IGMP_V2)),
        {
            "type": "8 (leave-synch)",
            "source": "*",
            "sequence": "77",
            "max-response-time": "10",
            "flags": "v1 v2 include (0x03)",
        },
        {"type": 8, "source": None, "sequence": 77, "max_response_time": 10, "esi": ESI_TEXT},
    ),
]


@pytest.mark.parametrize(
    ("route", "human", "as_json"), CASES, ids=[f"{c[0].NAME}-{i}" for i, c in enumerate(CASES)]
)
def test_decode_each_type(
    capsys: pytest.CaptureFixture[str], route: EvpnRoute, human: dict[str, str], as_json: dict[str, object]
) -> None:
    hex_text = route.pack().hex()
    fields = _human(capsys, hex_text)
    for name, value in human.items():
        assert fields[name] == value, name
    assert fields["rd"] == str(route.rd)
    assert next(iter(fields)) == "type"

    doc = _json(capsys, hex_text)
    for name, value in as_json.items():
        assert doc[name] == value, name
    assert doc == describe(route)
    assert doc["type"] == route.CODE
    assert doc["name"] == route.NAME
    # both outputs show the same fields
    assert {k.replace("_", "-") for k in doc} - {"name"} == set(fields)


EXPECTED_KEYS = {
    1: ["type", "name", "rd", "esi", "ethernet_tag", "label"],
    2: ["type", "name", "rd", "esi", "ethernet_tag", "mac", "ip", "labels"],
    3: ["type", "name", "rd", "ethernet_tag", "originator"],
    4: ["type", "name", "rd", "esi", "originator"],
    5: ["type", "name", "rd", "esi", "ethernet_tag", "prefix", "gateway", "label"],
    6: ["type", "name", "rd", "ethernet_tag", "source", "group", "originator", "flags", "key"],
    7: ["type", "name", "rd", "esi", "ethernet_tag", "source", "group", "originator", "flags"],
    8: [
        "type", "name", "rd", "esi", "ethernet_tag", "source", "group", "originator",
        "sequence", "max_response_time", "flags",
    ],
}  # fmt: skip


@pytest.mark.parametrize("route", [c[0] for c in CASES], ids=lambda r: r.NAME)
def test_json_keys_are_stable(route: EvpnRoute) -> None:
    assert list(describe(route)) == EXPECTED_KEYS[route.CODE]


def test_json_keys_documented() -> None:
    import agent.cli

    doc = agent.cli.__doc__ or ""
    for key in {k for keys in EXPECTED_KEYS.values() for k in keys}:
        assert f"``{key}``" in doc, key
    for key in ("raw", "v1", "v2", "v3", "exclude"):
        assert f'"{key}"' in doc, key


def test_golden_imet(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, GOLDEN_IMET)
    assert code == 0
    assert out == "type: 3 (inclusive-multicast)\nrd: 10.0.0.1:100\nethernet-tag: 0\noriginator: 10.0.0.1\n"


def test_golden_smet_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert _json(capsys, "0x" + GOLDEN_SMET) == {
        "type": 6,
        "name": "selective-multicast",
        "rd": "10.0.0.1:100",
        "ethernet_tag": 0,
        "source": None,
        "group": "239.1.1.1",
        "originator": "10.0.0.1",
        "flags": {"raw": 2, "v1": False, "v2": True, "v3": False, "exclude": False},
        "key": "061800010a0000010064000000000020ef010101200a000001",
    }


@pytest.mark.parametrize(
    "text", [GOLDEN_SMET.lower(), "0x" + GOLDEN_SMET, "0X" + GOLDEN_SMET, f" {GOLDEN_SMET} "]
)
def test_hex_forms(capsys: pytest.CaptureFixture[str], text: str) -> None:
    assert _human(capsys, text)["group"] == "239.1.1.1"


def test_json_option_after_hex(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", GOLDEN_IMET, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["type"] == 3


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("zz", "not hexadecimal"),
        ("0311", "length octet says 17"),
        ("0900", "route type 9 is not known"),
        ("0618" + "00" * 24, "group length 0 bits"),
        ("", "no type and length"),
        ("03\n11", "length octet"),
        ("0x" + "ab" * 200, "length octet"),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_bad_input(capsys: pytest.CaptureFixture[str], text: str, reason: str, as_json: bool) -> None:
    code, out, err = _run(capsys, *(["--json"] if as_json else []), text)
    assert code == 1
    assert out == ""
    assert err.endswith("\n")
    assert err.count("\n") == 1
    assert err.startswith("evpnctl: cannot decode ")
    assert reason in err
    assert len(err) < 300


def test_bad_input_names_the_hex(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = _run(capsys, "0900")
    assert err == "evpnctl: cannot decode 0900: EVPN route type 9 is not known\n"


def test_usage_errors_return_two(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["decode"]) == 2
    assert main(["frobnicate"]) == 2
    assert "usage: evpnctl" in capsys.readouterr().err


def test_help_returns_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "decode" in out


# --------------------------------------------------------------------------- as a program


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _evpnctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_subprocess_env(),
        timeout=60,
        check=False,
    )


def test_module_entry_point() -> None:
    done = _evpnctl("decode", "--json", GOLDEN_SMET)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["group"] == "239.1.1.1"

    bad = _evpnctl("decode", "nothex")
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert bad.stderr.splitlines() == ["evpnctl: cannot decode nothex: not hexadecimal: 'nothex'"]
