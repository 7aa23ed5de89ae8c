"""The leaf's YAML configuration, validated by pydantic v2 (unknown keys are errors), and the
settings derived from it for ExaBGP, origination and route-target import.

Every validation error is reported as one line with its path, e.g.
``neighbors[0].address: not an IP address``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from agent.intake import AUTO, ImportPolicy
from agent.store import Limits
from bgp.attributes import RouteTarget
from bgp.evpn import CodecError, IPAddress, RouteDistinguisher, parse_ip
from bgp.exabgp_config import Neighbor, Speaker
from bgp.originate import OriginSettings, VniOrigin, auto_rd, auto_rt
from ipmr.driver import IpmrSettings
from ipmr.mfc import StaticRoute
from replication.reconciler import DEFAULT_PROTOCOL, Settings, VniPorts

if TYPE_CHECKING:
    from agent.mqtt import MqttSettings


def _ip(value: object) -> IPAddress:
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    try:
        return parse_ip(str(value))
    except CodecError:
        raise ValueError(f"not an IP address: {value!r}") from None


IP = Annotated[IPAddress, PlainValidator(_ip), PlainSerializer(str)]


def _codec_check(parse: Callable[[str], object], value: str) -> None:
    """Let the codec judge a value; pydantic reports ValueError text with the field's path."""
    try:
        parse(value)
    except CodecError as exc:
        raise ValueError(str(exc)) from None


class ConfigError(ValueError):
    """A configuration that cannot be used; the message is one line per problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NeighborConfig(_Model):
    address: IP
    asn: Annotated[int, Field(ge=1, le=4294967295)]
    local_address: IP | None = None
    md5: str | None = None
    passive: bool = False
    hold_time: Annotated[int, Field(ge=3, le=65535)] = 90
    # Never send SMET to a peer that drops (FRR) or resets on (GoBGP) route type 6.
    send_smet: bool = True
    description: str = ""


class RouteTargets(_Model):
    import_: list[str] = Field(default_factory=list, alias="import")
    export: list[str] = Field(default_factory=list)

    @field_validator("import_", "export")
    @classmethod
    def _valid(cls, values: list[str]) -> list[str]:
        for value in values:
            _codec_check(RouteTarget.from_str, value)
        return values


class VniConfig(_Model):
    vni: Annotated[int, Field(ge=1, le=16777215)]
    bridge: str | None = None  # default brN
    device: str | None = None  # the VXLAN device, default vxlanN
    querier: IP | None = None  # make brN an IGMP/MLD querier with this source address
    rd: str | Literal["auto"] = "auto"
    route_targets: RouteTargets | None = None  # None (or "auto" in YAML): ASN:VNI, import *:VNI

    @field_validator("route_targets", mode="before")
    @classmethod
    def _auto_rts(cls, value: object) -> object:
        return None if value == "auto" else value

    @field_validator("rd")
    @classmethod
    def _valid_rd(cls, value: str) -> str:
        if value != "auto":
            _codec_check(RouteDistinguisher.from_str, value)
        return value


class ReplicationConfig(_Model):
    """Head-end replication: which per-group mechanism, and how the agent marks its entries."""

    mode: Literal["auto", "mdb", "mac"] = "auto"
    on_exit: Literal["keep", "remove"] = "keep"  # the agent's FDB/MDB entries when it stops
    startup_hold: Annotated[float, Field(ge=0)] = 60.0  # max wait for End-of-RIB before deleting
    protocol: Annotated[int, Field(ge=4, le=255)] = DEFAULT_PROTOCOL
    retry_initial: Annotated[float, Field(gt=0)] = 1.0
    retry_max: Annotated[float, Field(gt=0)] = 60.0


class StaticRouteConfig(_Model):
    """smcroute-like static route: ``from IIF [source S] group G to OIF...``."""

    source: IP | Literal["*"] = "*"
    group: IP
    iif: str
    oifs: list[str] = Field(default_factory=list)

    @field_validator("group")
    @classmethod
    def _multicast(cls, value: IPAddress) -> IPAddress:
        if not value.is_multicast:
            raise ValueError(f"{value} is not a multicast group")
        return value


def _ipv4_only() -> list[Literal[4, 6]]:
    return [4]


class IpmrConfig(_Model):
    """Edge multicast through the kernel's IPMR engine (docs/ipmr.md)."""

    enabled: bool = False
    families: list[Literal[4, 6]] = Field(default_factory=_ipv4_only)
    tables: list[Annotated[int, Field(ge=1, le=4294967295)]] = Field(
        default_factory=lambda: [253], min_length=1
    )
    edge: list[str] = Field(default_factory=list)
    svis: Literal["all"] | list[int] = "all"  # VNIs whose bridge (SVI) gets a VIF
    querier: list[str] = Field(default_factory=list)
    query_interval: Annotated[float, Field(ge=2, le=3174)] = 125.0
    query_response: Annotated[float, Field(ge=0.1, le=25.5)] = 10.0
    robustness: Annotated[int, Field(ge=1, le=7)] = 2
    routes: list[StaticRouteConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> IpmrConfig:
        if self.query_response >= self.query_interval:
            raise ValueError("query_response must be shorter than query_interval")
        stray = [name for name in self.querier if name not in self.edge]
        if stray:
            raise ValueError(f"querier interfaces {stray} are not edge interfaces")
        if len(set(self.tables)) != len(self.tables):
            raise ValueError("tables: a table is listed twice")
        return self


class MqttConfig(_Model):
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    prefix: str = "evpn"
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    client_id: str | None = None
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30
    queue_size: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    retry_initial: Annotated[float, Field(gt=0)] = 1.0
    retry_max: Annotated[float, Field(gt=0)] = 30.0

    @model_validator(mode="after")
    def _consistent(self) -> MqttConfig:
        if not self.prefix or any(c in self.prefix for c in "+#\0"):
            raise ValueError(f"prefix {self.prefix!r} must be non-empty, without '+', '#' or NUL")
        if (self.ca_file or self.cert_file or self.key_file) and not self.tls:
            raise ValueError("ca_file, cert_file and key_file need tls: true")
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max must be at least retry_initial")
        return self


class LimitsConfig(_Model):
    max_vteps_per_vni: Annotated[int, Field(ge=0)] = 4096
    max_groups_per_vni: Annotated[int, Field(ge=0)] = 8192


class AgentConfig(_Model):
    router_id: IP
    local_vtep: IP
    asn: Annotated[int, Field(ge=1, le=4294967295)]
    graceful_restart: Annotated[int, Field(ge=0, le=4095)] = 0
    neighbors: list[NeighborConfig] = Field(default_factory=list)
    vnis: list[VniConfig] = Field(default_factory=list)
    limits: LimitsConfig = LimitsConfig()
    replication: ReplicationConfig = ReplicationConfig()
    ipmr: IpmrConfig = IpmrConfig()
    mqtt: MqttConfig | None = None
    control_socket: Path | None = None  # default <workdir>/control.sock
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = False
    workdir: Path = Path("/run/evpn-agent")

    @field_validator("router_id")
    @classmethod
    def _ipv4_router_id(cls, value: IPAddress) -> IPAddress:
        if value.version != 4:
            raise ValueError(f"BGP router id must be a 32-bit (IPv4-style) address, not {value}")
        return value

    @field_validator("vnis")
    @classmethod
    def _unique_vnis(cls, vnis: list[VniConfig]) -> list[VniConfig]:
        seen: set[int] = set()
        for vni in vnis:
            if vni.vni in seen:
                raise ValueError(f"VNI {vni.vni} configured twice")
            seen.add(vni.vni)
        return vnis

    # ---------------------------------------------------------------- derived settings

    def speaker(self) -> Speaker:
        return Speaker(
            router_id=self.router_id,
            local_as=self.asn,
            local_address=self.local_vtep,
            neighbors=tuple(
                Neighbor(
                    address=n.address,
                    peer_as=n.asn,
                    local_address=n.local_address,
                    md5_password=n.md5,
                    passive=n.passive,
                    hold_time=n.hold_time,
                    send_smet=n.send_smet,
                    description=n.description,
                )
                for n in self.neighbors
            ),
            graceful_restart=self.graceful_restart,
        )

    def origin(self) -> OriginSettings:
        vnis: dict[int, VniOrigin] = {}
        for index, v in enumerate(self.vnis, start=1):
            rd = (
                auto_rd(self.router_id, v.vni, index) if v.rd == "auto" else RouteDistinguisher.from_str(v.rd)
            )
            if v.route_targets is None or not v.route_targets.export:
                export: tuple[RouteTarget, ...] = (auto_rt(self.asn, v.vni),)
            else:
                export = tuple(RouteTarget.from_str(rt) for rt in v.route_targets.export)
            vnis[v.vni] = VniOrigin(v.vni, rd, export)
        smet_peers = tuple(n.address for n in self.neighbors if n.send_smet)
        all_smet = len(smet_peers) == len(self.neighbors)
        return OriginSettings(
            vtep=self.local_vtep,
            vnis=vnis,
            # Claim IGMP/MLD proxy only if every peer hears our SMETs (RFC 9251 §4).
            proxy=all_smet,
            smet_neighbors=None if all_smet else smet_peers,
        )

    def import_policy(self) -> ImportPolicy:
        table: dict[int, frozenset[RouteTarget] | None] = {}
        for v in self.vnis:
            if v.route_targets is None or not v.route_targets.import_:
                table[v.vni] = AUTO
            else:
                table[v.vni] = frozenset(RouteTarget.from_str(rt) for rt in v.route_targets.import_)
        return ImportPolicy(table)

    def vni_ports(self) -> list[VniPorts]:
        return [
            VniPorts(v.vni, v.bridge or f"br{v.vni}", v.device or f"vxlan{v.vni}", v.querier)
            for v in self.vnis
        ]

    def replication_settings(self) -> Settings:
        r = self.replication
        journal = self.workdir / "replication-journal.json"
        return Settings(r.mode, r.protocol, journal, r.retry_initial, r.retry_max)

    def ipmr_settings(self) -> IpmrSettings:
        m = self.ipmr
        wanted = None if m.svis == "all" else set(m.svis)
        svis = {p.bridge: p.vni for p in self.vni_ports() if wanted is None or p.vni in wanted}
        routes = tuple(
            StaticRoute(None if r.source == "*" else r.source, r.group, r.iif, tuple(r.oifs))
            for r in m.routes
        )
        return IpmrSettings(
            edge=tuple(m.edge),
            svis=svis,
            tables=tuple(m.tables),
            families=tuple(m.families),
            routes=routes,
            querier=frozenset(m.querier),
            query_interval=m.query_interval,
            query_response=m.query_response,
            robustness=m.robustness,
        )

    def control_path(self) -> Path:
        return self.control_socket or self.workdir / "control.sock"

    def mqtt_settings(self) -> MqttSettings | None:
        from agent.mqtt import MqttSettings  # aiomqtt only loads when MQTT is configured

        m = self.mqtt
        if m is None:
            return None
        return MqttSettings(
            host=m.host,
            port=m.port,
            prefix=m.prefix,
            router_id=str(self.router_id),
            username=m.username,
            password=m.password,
            tls=m.tls,
            ca_file=m.ca_file,
            cert_file=m.cert_file,
            key_file=m.key_file,
            client_id=m.client_id,
            keepalive=m.keepalive,
            queue_size=m.queue_size,
            retry_initial=m.retry_initial,
            retry_max=m.retry_max,
        )

    def device_problems(self) -> list[str]:
        """Interfaces the config names that do not exist here, one line each with its path."""
        problems = []
        for index, port in enumerate(self.vni_ports()):
            for key, name in (("bridge", port.bridge), ("device", port.vxlan)):
                if not _interface_exists(name):
                    problems.append(f"vnis[{index}].{key}: interface {name!r} does not exist")
        if self.ipmr.enabled:
            for index, name in enumerate(self.ipmr.edge):
                if not _interface_exists(name):
                    problems.append(f"ipmr.edge[{index}]: interface {name!r} does not exist")
        return problems

    def store_limits(self) -> Limits:
        return Limits(self.limits.max_vteps_per_vni, self.limits.max_groups_per_vni)

    def graceful_restart_times(self) -> dict[str, float]:
        """Peers whose paths are kept (stale) for the restart time when their session drops."""
        if not self.graceful_restart:
            return {}
        return {str(n.address): float(self.graceful_restart) for n in self.neighbors}


def _interface_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part).rstrip("_")
    return out or "(top level)"


def parse_config(data: object, source: str = "config") -> AgentConfig:
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown key"
            problems.append(f"{source}: {_location(tuple(err['loc']))}: {message}")
        raise ConfigError("\n".join(problems)) from None


def load_config(path: Path) -> AgentConfig:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_config(data, str(path))
