"""``evpn-lab``: a containerlab topology built on Linux network namespaces and veth pairs.

When Docker (and so containerlab) is absent, this runner reads the same ``*.clab.yml`` file and
builds it on the host's kernel. Tests, CI and ``make demo`` use it. Run it as root::

    evpn-lab [-t FILE] up [--exec-timeout SECONDS] [FILE]
    evpn-lab [-t FILE] down [--name LAB] [FILE]
    evpn-lab [-t FILE] status [FILE]
    evpn-lab [-t FILE] exec NODE [-- CMD [ARG...]]

The topology file is given with ``-t`` (before or after the subcommand) or, for up/down/status,
as the last argument; without one, the one ``*.clab.yml``/``*.clab.yaml`` file in the current
directory is used (as containerlab does). ``down --name LAB`` works without the file.

Exit codes: 0 success; 1 error (bad topology file, a step of ``up`` failed, ...: one line on stderr
starting with ``evpn-lab:``, for a failed exec line followed by its stderr tail); 2 usage error;
3 ``status``: the lab is not (fully) up. ``exec`` returns the command's exit code (128+N when it
died of signal N), or 125 when the runner itself could not run it (lab not up, unknown node).

What a node is
--------------
Every node (only ``kind: linux``) gets a network namespace ``evl-<lab>-<node>`` and a *keeper*
process, ``ip netns exec NS python -m agent.lab _keeper SPEC``, which gives the node its own mount
namespace (``ip netns exec`` mounts a sysfs of the node's network namespace on /sys; the keeper
unshares once more and makes every mount private, so nothing propagates either way) and its own UTS
namespace with the node's name as hostname. It then sleeps; the node lives as long as it does. In
that mount namespace:

- /run and /tmp are fresh private tmpfs mounts (``/var/run`` is the host's symlink to /run), so
  daemons writing /run/frr, /run/evpn-agent or /tmp files do not collide between nodes or with the
  host. Everything else is the host's filesystem, shared and writable, as with ``ip netns exec``.
- ``binds`` entries ``SRC:DST[:ro]`` are bind-mounted on DST (recursive binds; ``ro`` makes the
  mount read-only; ``rw``, ``z``, ``Z`` are accepted; a bare ``DST`` is an anonymous volume: an
  empty private tmpfs). SRC is taken relative to the topology file's directory when relative,
  ``~`` is expanded, and it must exist. Binds are mounted shallowest DST first. When DST is missing
  its file or directory is created: directly if the nearest existing ancestor is node-private
  (under /run, /tmp, an anonymous volume or a directory made private before); otherwise that
  ancestor is made private first: a tmpfs is mounted on it *inside the node* and each of its
  entries is bind-mounted back (symlinks re-created), so the node still sees its contents while new
  entries stay in the node. The host's filesystem is never modified. A DST whose nearest existing
  ancestor is ``/`` itself is refused (pick a directory under an existing top-level one).
- The interfaces of ``links`` are veth pairs created directly in the two namespaces with the names
  from the file (15 characters at most), MTU 9500 unless the link sets ``mtu`` (containerlab's
  default), MAC and IPv4/IPv6 addresses when the link gives them, all up. ``lo`` is up.

Commands in a node run as ``nsenter --target KEEPER --mount --net --uts -- ...`` with cwd ``/``
and this environment: the runner's own environment, overridden by the node's ``env`` from the file,
then ``PATH`` = the directory of the running Python interpreter (not symlink-resolved, e.g. the
project's ``.venv/bin`` so ``evpn-agent`` and ``evpnctl`` are found) + ``:`` + the node's ``PATH``
(from its ``env``, else the runner's), and ``CLAB_NODE_NAME``, ``CLAB_LAB_NAME``, ``CLAB_INTFS``
(number of the node's link interfaces).

``exec`` lines (node order as in the file, each node's lines in order) run one at a time as
``sh -c LINE`` in a new session, stdin from /dev/null; each must exit 0 within the exec timeout
(120 s by default), else ``up`` stops, reports node, line, exit code and the tail of its stderr,
and removes everything it built. The runner waits for the *shell* of each line to exit, not for
its output to close: a long-running daemon must be started in the background by the line itself
(``daemon &``, ``setsid daemon &``, or a daemon that forks) and should redirect its output to a
log file (``> /run/x.log 2>&1``; the node's /run and /tmp vanish with it, a bound directory
keeps logs after ``down``), else it writes into the runner's discarded capture file. Every
process left in a node is killed by ``down``. (containerlab splits an exec line into words without
a shell; lines meant for both should avoid shell syntax or be written ``sh -c '...'``.)

Inheritance follows containerlab: ``kind`` from the node, else its group, else the defaults'
group, else ``defaults``; ``image`` (recorded, not used) node > group > kind > defaults; ``env``
merged defaults < kind < group < node; ``binds`` merged by destination, the more specific level
winning; ``exec`` lines concatenated defaults, kind, group, node. Node-config keys other than
``kind``, ``group``, ``image``, ``binds``, ``exec`` and ``env`` are ignored, and so are
``mgmt``/``prefix``. Link forms: brief (``endpoints: ["a:eth1", "b:eth1"]``, optional ``mtu``,
``ipv4``/``ipv6`` lists) and ``type: veth`` with endpoint objects (``node``, ``interface``,
``mac``, ``ipv4``, ``ipv6``); other link types and special endpoints (``host:``, ``mgmt-net:``,
``macvlan:``) are errors.

State and cleanup
-----------------
``/run/evpn-lab/<lab>.json`` records the topology path, namespaces and keepers (pid and start
time). ``up`` first removes leftovers of the same lab (that state file, or namespaces named
``evl-<lab>-*`` not claimed by another lab's state file), saying so, then builds; if any step
fails it removes what it built. ``down`` sends SIGTERM (SIGKILL to what is left after 3 s) to every
process in the lab's network namespaces or the keepers' mount namespaces, deletes the namespaces (and so
the veth pairs) and the state file; without a state file it works from the name prefix. ``status``
prints one line per node (up/DOWN, namespace present, keeper alive, interfaces present/expected,
processes besides the keeper) and a summary line. Per lab, ``up`` and ``down`` are serialized by a
lock file that is removed on release.

Library use (tests, ``make demo``)::

    lab = Lab("containerlab/fabric.clab.yml")
    lab.up()
    try:
        print(lab.exec("leaf1", "ip -br addr").stdout)
    finally:
        lab.down()
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import ipaddress
import json
import os
import posixpath
import re
import select
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

PROG = "evpn-lab"
STATE_DIR = Path("/run/evpn-lab")
NETNS_DIR = Path("/run/netns")
NS_PREFIX = "evl-"
IFNAMSIZ = 15  # longest Linux interface name
DEFAULT_MTU = 9500  # containerlab's default veth MTU
DEFAULT_EXEC_TIMEOUT = 120.0
KEEPER_TIMEOUT = 30.0
TERM_GRACE = 3.0
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_UP, EXIT_EXEC_RUNNER = 0, 1, 2, 3, 125
STDERR_TAIL_LINES = 15

_LAB_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")  # clab.schema.json: name
_NODE_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._|-]*$")  # clab.schema.json: topology.nodes
_ENDPOINT_RE = re.compile(r"^\S+:\S+$")
_SPECIAL_ENDPOINT_NODES = ("host", "mgmt-net", "macvlan")
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")


class LabError(Exception):
    """A one-line, user-facing failure of the runner."""


class TopologyError(LabError):
    """The topology file is missing, unreadable or not something this runner can build."""


class ExecLineError(LabError):
    """An ``exec`` line of the topology failed during ``up``."""

    def __init__(self, node: str, index: int, command: str, returncode: int, stderr: str) -> None:
        self.node, self.index, self.command = node, index, command
        self.returncode, self.stderr = returncode, stderr
        message = f"node {node}: exec line {index + 1} exited with code {returncode}: {command}"
        tail = _tail(stderr)
        super().__init__(message + (f"\n  stderr:\n{_indent(tail)}" if tail else "\n  (stderr empty)"))


class NodeCommandError(subprocess.CalledProcessError):
    """``Lab.exec(..., check=True)`` of a command that exited non-zero."""

    def __init__(self, node: str, returncode: int, cmd: list[str], output: str | None, stderr: str | None):
        super().__init__(returncode, cmd, output, stderr)
        self.node = node

    def __str__(self) -> str:
        shown = shlex.join(self.cmd[self.cmd.index("--") + 1 :] if "--" in self.cmd else self.cmd)
        text = f"node {self.node}: {shown} exited with code {self.returncode}"
        tail = _tail(self.stderr or "")
        return text + (f"\n  stderr:\n{_indent(tail)}" if tail else "")


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


# --------------------------------------------------------------------------- topology model


@dataclass(frozen=True)
class Bind:
    """One ``binds`` entry: ``src`` (absolute host path; None for an anonymous volume) on ``dst``."""

    src: str | None
    dst: str
    readonly: bool
    spec: str

    @classmethod
    def parse(cls, spec: str, base_dir: Path, where: str) -> Bind:
        parts = spec.split(":")
        if len(parts) > 3 or not all(parts[:2]):
            raise TopologyError(f"{where}: cannot parse bind {spec!r} (expected SRC:DST[:ro] or DST)")
        if len(parts) == 1:
            src, dst, mode = None, parts[0], ""
        else:
            src, dst, mode = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
        options = [o for o in mode.split(",") if o]
        unknown = [o for o in options if o not in ("ro", "rw", "z", "Z")]
        if unknown:
            raise TopologyError(f"{where}: bind {spec!r}: unsupported option {unknown[0]!r} (use ro or rw)")
        if not dst.startswith("/"):
            raise TopologyError(f"{where}: bind {spec!r}: destination must be an absolute path")
        dst = posixpath.normpath(dst)
        if dst == "/":
            raise TopologyError(f"{where}: bind {spec!r}: cannot bind on /")
        if src is not None:
            if "__clabNodeDir__" in src or "__clabDir__" in src:
                raise TopologyError(f"{where}: bind {spec!r}: __clabNodeDir__/__clabDir__ are not supported")
            src = os.path.abspath(base_dir / os.path.expanduser(src))
        return cls(src, dst, "ro" in options, spec)


@dataclass(frozen=True)
class Endpoint:
    node: str
    interface: str
    mac: str | None = None
    addresses: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.node}:{self.interface}"


@dataclass(frozen=True)
class Link:
    a: Endpoint
    b: Endpoint
    mtu: int = DEFAULT_MTU


@dataclass(frozen=True)
class Node:
    name: str
    kind: str
    image: str
    group: str
    binds: tuple[Bind, ...]
    exec: tuple[str, ...]
    env: Mapping[str, str]


@dataclass(frozen=True)
class Topology:
    name: str
    path: Path
    nodes: Mapping[str, Node]  # in file order
    links: tuple[Link, ...]

    def netns(self, node: str) -> str:
        return f"{NS_PREFIX}{self.name}-{node}"

    @property
    def prefix(self) -> str:
        return f"{NS_PREFIX}{self.name}-"

    def interfaces(self, node: str) -> list[str]:
        return [ep.interface for link in self.links for ep in (link.a, link.b) if ep.node == node]


@dataclass(frozen=True)
class _Level:
    """One node-config level: ``topology.defaults``, a kind, a group or a node."""

    kind: str = ""
    group: str = ""
    image: str = ""
    binds: tuple[str, ...] = ()
    exec: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


def _mapping(value: object, where: str) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise TopologyError(f"{where}: expected a mapping")
    return value


def _string(value: object, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TopologyError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _strings(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TopologyError(f"{where}: expected a list of strings")
    return tuple(value)


def _scalar_text(value: object) -> str:
    if isinstance(value, bool):  # YAML true/false, as containerlab's Go strings see them
        return "true" if value else "false"
    return str(value)


def _level(raw: object, where: str) -> _Level:
    data = _mapping(raw, where)
    env_raw = _mapping(data.get("env"), f"{where}.env")
    env: dict[str, str] = {}
    for key, value in env_raw.items():
        if not isinstance(value, str | int | float | bool):
            raise TopologyError(f"{where}.env.{key}: expected a string, number or boolean")
        env[key] = _scalar_text(value)
    return _Level(
        kind=_string(data.get("kind"), f"{where}.kind"),
        group=_string(data.get("group"), f"{where}.group"),
        image=_string(data.get("image"), f"{where}.image"),
        binds=_strings(data.get("binds"), f"{where}.binds"),
        exec=_strings(data.get("exec"), f"{where}.exec"),
        env=env,
    )


def _check_ifname(name: str, where: str) -> None:
    if len(name) > IFNAMSIZ:
        raise TopologyError(f"{where}: interface name {name!r} is longer than {IFNAMSIZ} characters")
    if name in (".", "..", "lo") or any(c in name for c in "/:") or any(c.isspace() for c in name):
        raise TopologyError(f"{where}: {name!r} is not a usable interface name")


def _addresses(raw: object, version: int, where: str) -> list[str]:
    values = _strings(raw, where)
    for value in values:
        if value == "":
            continue
        try:
            iface = ipaddress.ip_interface(value)
        except ValueError:
            raise TopologyError(f"{where}: {value!r} is not an address/prefix") from None
        if iface.version != version or "/" not in value:
            raise TopologyError(f"{where}: {value!r} is not an IPv{version} address/prefix")
    return list(values)


def _endpoint(node: str, iface: str, nodes: Mapping[str, object], where: str) -> tuple[str, str]:
    if node not in nodes:
        if node in _SPECIAL_ENDPOINT_NODES:
            raise TopologyError(f"{where}: special endpoint {node}:{iface} is not supported")
        raise TopologyError(f"{where}: unknown node {node!r} in endpoint {node}:{iface}")
    _check_ifname(iface, where)
    return node, iface


def _parse_link(raw: object, nodes: Mapping[str, object], where: str) -> Link:
    data = _mapping(raw, where)
    kind = data.get("type")
    endpoints = data.get("endpoints")
    if not isinstance(endpoints, list) or len(endpoints) != 2:
        raise TopologyError(f"{where}: a link needs exactly two endpoints")
    mtu_raw = data.get("mtu", DEFAULT_MTU)
    if not isinstance(mtu_raw, int) or isinstance(mtu_raw, bool) or not 68 <= mtu_raw <= 65535:
        raise TopologyError(f"{where}.mtu: expected an integer between 68 and 65535")
    ends: list[Endpoint] = []
    if kind is None:
        v4 = _addresses(data.get("ipv4"), 4, f"{where}.ipv4")
        v6 = _addresses(data.get("ipv6"), 6, f"{where}.ipv6")
        for i, text in enumerate(endpoints):
            if not isinstance(text, str) or not _ENDPOINT_RE.match(text):
                raise TopologyError(f"{where}: endpoint {text!r} is not of the form NODE:INTERFACE")
            node_name, iface_name = text.split(":", 1)
            node, iface = _endpoint(node_name, iface_name, nodes, where)
            addrs = [a for a in (v4[i : i + 1] + v6[i : i + 1]) if a]
            ends.append(Endpoint(node, iface, None, tuple(addrs)))
    elif kind == "veth":
        for i, item in enumerate(endpoints):
            ep_where = f"{where}.endpoints[{i}]"
            ep = _mapping(item, ep_where)
            node, iface = _endpoint(
                _string(ep.get("node"), f"{ep_where}.node"),
                _string(ep.get("interface"), f"{ep_where}.interface"),
                nodes,
                ep_where,
            )
            mac = _string(ep.get("mac"), f"{ep_where}.mac") or None
            if mac is not None and not _MAC_RE.match(mac):
                raise TopologyError(f"{ep_where}.mac: {mac!r} is not a MAC address")
            addrs = _addresses([ep["ipv4"]] if ep.get("ipv4") else [], 4, f"{ep_where}.ipv4")
            addrs += _addresses([ep["ipv6"]] if ep.get("ipv6") else [], 6, f"{ep_where}.ipv6")
            ends.append(Endpoint(node, iface, mac, tuple(addrs)))
    else:
        raise TopologyError(f"{where}: link type {kind!r} is not supported (only veth links between nodes)")
    if (ends[0].node, ends[0].interface) == (ends[1].node, ends[1].interface):
        raise TopologyError(f"{where}: both endpoints are {ends[0]}")
    return Link(ends[0], ends[1], mtu_raw)


def parse_topology(data: object, path: Path) -> Topology:
    """Build a Topology from the loaded YAML of the file at ``path`` (binds resolve against its
    directory). Raises TopologyError with a one-line message naming the file and the key."""
    path = Path(os.path.abspath(path))

    def fail(message: str) -> TopologyError:
        return TopologyError(f"{path}: {message}")

    try:
        doc = _mapping(data, "the file")
        name = _string(doc.get("name"), "name")
        if not name:
            raise TopologyError("name: missing (every lab needs a name)")
        if not _LAB_NAME_RE.match(name):
            raise TopologyError(f"name: {name!r} does not match {_LAB_NAME_RE.pattern}")
        topo = _mapping(doc.get("topology"), "topology")
        nodes_raw = _mapping(topo.get("nodes"), "topology.nodes")
        if not nodes_raw:
            raise TopologyError("topology.nodes: no nodes")
        defaults = _level(topo.get("defaults"), "topology.defaults")
        kinds_raw = _mapping(topo.get("kinds"), "topology.kinds")
        kinds = {k: _level(v, f"topology.kinds.{k}") for k, v in kinds_raw.items()}
        groups_raw = _mapping(topo.get("groups"), "topology.groups")
        groups = {g: _level(v, f"topology.groups.{g}") for g, v in groups_raw.items()}
        nodes: dict[str, Node] = {}
        for node_name, raw in nodes_raw.items():
            if not _NODE_NAME_RE.match(node_name):
                raise TopologyError(f"topology.nodes: node name {node_name!r} is not valid")
            nodes[node_name] = _resolve_node(
                node_name, _level(raw, f"topology.nodes.{node_name}"), defaults, kinds, groups, path.parent
            )
        links_raw = topo.get("links")
        if links_raw is None:
            links_raw = []
        if not isinstance(links_raw, list):
            raise TopologyError("topology.links: expected a list")
        links = tuple(_parse_link(raw, nodes, f"topology.links[{i}]") for i, raw in enumerate(links_raw))
        seen: dict[tuple[str, str], int] = {}
        for i, link in enumerate(links):
            for ep in (link.a, link.b):
                key = (ep.node, ep.interface)
                if key in seen:
                    raise TopologyError(
                        f"topology.links[{i}]: interface {ep} is already used by topology.links[{seen[key]}]"
                    )
                seen[key] = i
    except TopologyError as exc:
        raise fail(str(exc)) from None
    return Topology(name, path, nodes, links)


def _resolve_node(
    name: str,
    node: _Level,
    defaults: _Level,
    kinds: Mapping[str, _Level],
    groups: Mapping[str, _Level],
    base_dir: Path,
) -> Node:
    empty = _Level()
    kind = (
        node.kind
        or groups.get(node.group, empty).kind
        or groups.get(defaults.group, empty).kind
        or defaults.kind
    )
    where = f"topology.nodes.{name}"
    if not kind:
        raise TopologyError(f"{where}: no kind (set kind on the node, its group or topology.defaults)")
    if kind != "linux":
        raise TopologyError(f"{where}: kind {kind!r} is not supported (evpn-lab builds only kind: linux)")
    kind_level = kinds.get(kind, empty)
    group = node.group or kind_level.group or defaults.group
    group_level = groups.get(group, empty)
    levels = (defaults, kind_level, group_level, node)  # least to most specific
    image = node.image or group_level.image or kind_level.image or defaults.image
    env: dict[str, str] = {}
    binds: dict[str, Bind] = {}
    for level in levels:
        env.update(level.env)
        for spec in level.binds:
            bind = Bind.parse(spec, base_dir, f"{where}.binds")
            binds[bind.dst] = bind
    exec_lines = tuple(line for level in levels for line in level.exec)
    return Node(name, kind, image, group, tuple(binds.values()), exec_lines, env)


def load_topology(path: str | Path) -> Topology:
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise TopologyError(f"{path}: topology file not found") from None
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise TopologyError(f"{path}: not valid YAML{where}: {first}") from None
    return parse_topology(data, path)


# --------------------------------------------------------------------------- process helpers


def _run(argv: list[str], what: str = "") -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = _tail(proc.stderr or proc.stdout, 3).replace("\n", "; ") or f"exit code {proc.returncode}"
        raise LabError(f"{what or shlex.join(argv)}: {detail}")
    return proc


def _list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _ns_inode(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _proc_ns(pid: int, kind: str) -> int | None:
    try:
        link = os.readlink(f"/proc/{pid}/ns/{kind}")  # e.g. "net:[4026532281]"
    except OSError:
        return None
    return int(link[link.index("[") + 1 : -1])


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of a process, None when gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _alive(pid: int, start: int | None = None) -> bool:
    st = _proc_stat(pid)
    return st is not None and st[0] not in "ZX" and (start is None or st[1] == start)


def _pids_in(net_inodes: set[int], mnt_inodes: set[int]) -> list[int]:
    """Live processes in one of these network or mount namespaces."""
    if not net_inodes and not mnt_inodes:
        return []
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        if _proc_ns(pid, "net") in net_inodes or (mnt_inodes and _proc_ns(pid, "mnt") in mnt_inodes):
            found.append(pid)
    return found


def _signal_all(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _read_line(stream: IO[bytes], timeout: float) -> str | None:
    """One line from a pipe within ``timeout`` seconds; None on timeout, what came before EOF."""
    fd = stream.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").split("\n", 1)[0].strip()


def _python_bin_dir() -> str:
    return os.path.dirname(os.path.abspath(sys.executable))


def _returncode(code: int) -> int:
    return 128 - code if code < 0 else code


# --------------------------------------------------------------------------- state


@dataclass
class _NodeState:
    netns: str
    keeper: int | None = None
    keeper_start: int | None = None


@dataclass
class _State:
    lab: str
    topology: str
    nodes: dict[str, _NodeState]

    def to_json(self) -> str:
        nodes = {
            n: {"netns": s.netns, "keeper": s.keeper, "keeper_start": s.keeper_start}
            for n, s in self.nodes.items()
        }
        body = {"version": 1, "lab": self.lab, "topology": self.topology, "nodes": nodes}
        return json.dumps(body, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> _State:
        raw = json.loads(text)
        nodes: dict[str, _NodeState] = {}
        for name, item in raw.get("nodes", {}).items():
            keeper, start = item.get("keeper"), item.get("keeper_start")
            nodes[str(name)] = _NodeState(
                str(item["netns"]),
                keeper if isinstance(keeper, int) else None,
                start if isinstance(start, int) else None,
            )
        return cls(str(raw.get("lab", "")), str(raw.get("topology", "")), nodes)


def _read_state(path: Path) -> _State | None:
    try:
        return _State.from_json(path.read_text())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class NodeStatus:
    node: str
    netns: str
    netns_present: bool
    keeper: int | None
    keeper_alive: bool
    interfaces: int
    interfaces_expected: int
    processes: int  # besides the keeper

    @property
    def up(self) -> bool:
        return self.netns_present and self.keeper_alive and self.interfaces == self.interfaces_expected

    def line(self) -> str:
        keeper = (
            f"keeper {self.keeper} {'alive' if self.keeper_alive else 'gone'}" if self.keeper else "no keeper"
        )
        return (
            f"{self.node}: {'up' if self.up else 'DOWN'}, netns {self.netns} "
            f"{'present' if self.netns_present else 'absent'}, {keeper}, "
            f"interfaces {self.interfaces}/{self.interfaces_expected}, processes {self.processes}"
        )


@dataclass(frozen=True)
class LabStatus:
    lab: str
    state_file: bool
    nodes: tuple[NodeStatus, ...]

    @property
    def up(self) -> bool:
        return self.state_file and all(n.up for n in self.nodes)


@dataclass
class Removed:
    """What a cleanup found and removed."""

    state_file: bool = False
    namespaces: list[str] = field(default_factory=list)
    processes: int = 0

    def __bool__(self) -> bool:
        return self.state_file or bool(self.namespaces) or self.processes > 0

    def describe(self) -> str:
        parts = []
        if self.namespaces:
            parts.append(f"namespaces {', '.join(self.namespaces)}")
        if self.processes:
            parts.append(f"{self.processes} processes")
        if self.state_file:
            parts.append("state file")
        return "; ".join(parts) or "nothing"


# --------------------------------------------------------------------------- the lab


def _stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Lab:
    """A containerlab topology built on network namespaces: ``up``, ``down``, ``status``, commands
    in nodes. Every method reads the state file, so several Lab objects (or the CLI) can act on
    the same lab."""

    def __init__(
        self,
        topology: str | Path | Topology,
        *,
        state_dir: Path | None = None,
        log: Callable[[str], None] = _stderr_log,
        exec_timeout: float = DEFAULT_EXEC_TIMEOUT,
    ) -> None:
        self.topology = topology if isinstance(topology, Topology) else load_topology(topology)
        self.name = self.topology.name
        self.state_dir = STATE_DIR if state_dir is None else state_dir
        self.log = log
        self.exec_timeout = exec_timeout
        self._keepers: list[subprocess.Popen[bytes]] = []

    # -- names and paths

    @property
    def state_path(self) -> Path:
        return self.state_dir / f"{self.name}.json"

    def netns(self, node: str) -> str:
        self._node(node)
        return self.topology.netns(node)

    def _node(self, node: str) -> Node:
        try:
            return self.topology.nodes[node]
        except KeyError:
            known = ", ".join(self.topology.nodes)
            raise LabError(f"lab {self.name}: no node {node!r} (nodes: {known})") from None

    # -- up / down

    def up(self) -> None:
        """Remove leftovers of this lab, build it, run the exec lines. On any failure, what was
        built is removed and the error (LabError, ExecLineError, KeyboardInterrupt...) re-raised."""
        self._preflight()
        with self._locked():
            removed = self._cleanup()
            if removed:
                self.log(f"lab {self.name}: removed leftovers of a previous run: {removed.describe()}")
            try:
                self._build()
            except BaseException:
                try:
                    self._cleanup()
                    self.log(f"lab {self.name}: up failed; removed everything it had built")
                except Exception as exc:  # keep the original error; say what is left
                    self.log(f"lab {self.name}: up failed and cleanup failed too: {exc}")
                raise
        links = len(self.topology.links)
        self.log(f"lab {self.name} up: {len(self.topology.nodes)} nodes, {links} links")

    def down(self) -> Removed:
        """Kill every process of the lab, delete its namespaces and state file (idempotent)."""
        with self._locked():
            removed = self._cleanup()
        self.log(f"lab {self.name} down: removed {removed.describe()}")
        return removed

    def _preflight(self) -> None:
        if os.geteuid() != 0:
            raise LabError("needs root (network and mount namespaces)")
        for tool in ("ip", "nsenter"):
            if shutil.which(tool) is None:
                raise LabError(f"{tool} not found in PATH")
        for node in self.topology.nodes.values():
            for bind in node.binds:
                if bind.src is not None and not os.path.exists(bind.src):
                    raise LabError(f"node {node.name}: bind {bind.spec!r}: source {bind.src} does not exist")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive per-lab lock; the lock file is unlinked on release (waiters then retry)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / f"{self.name}.lock"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            os.close(fd)

    def _other_labs_namespaces(self) -> set[str]:
        claimed: set[str] = set()
        with contextlib.suppress(FileNotFoundError):
            for path in self.state_dir.glob("*.json"):
                if path.name == self.state_path.name:
                    continue
                state = _read_state(path)
                if state is not None:
                    claimed.update(s.netns for s in state.nodes.values())
        return claimed

    def _cleanup(self) -> Removed:
        removed = Removed()
        state = _read_state(self.state_path)
        removed.state_file = self.state_path.exists()
        claimed = self._other_labs_namespaces()
        existing = _list_netns()
        names = {n for n in existing if n.startswith(self.topology.prefix) and n not in claimed}
        if state is not None:
            names.update(s.netns for s in state.nodes.values() if s.netns in existing)
        removed.namespaces = sorted(names)
        keepers = [
            (s.keeper, s.keeper_start)
            for s in (state.nodes.values() if state else ())
            if s.keeper is not None and _alive(s.keeper, s.keeper_start)
        ]
        mnt_inodes = {ino for pid, _ in keepers if (ino := _proc_ns(pid, "mnt")) is not None}
        net_inodes = {ino for n in names if (ino := _ns_inode(NETNS_DIR / n)) is not None}

        def victims() -> list[int]:
            found = set(_pids_in(net_inodes, mnt_inodes))
            found.update(pid for pid, start in keepers if _alive(pid, start))
            return sorted(found)

        first = victims()
        removed.processes = len(first)
        if first:
            _signal_all(first, signal.SIGTERM)
            self._wait_gone(victims, TERM_GRACE)
            deadline = time.monotonic() + 10.0
            while left := victims():
                if time.monotonic() > deadline:
                    raise LabError(f"lab {self.name}: processes {left} survive SIGKILL")
                _signal_all(left, signal.SIGKILL)
                time.sleep(0.02)
        for proc in self._keepers:
            if proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=1.0)
        self._keepers = [p for p in self._keepers if p.returncode is None]
        for name in removed.namespaces:
            deleted = subprocess.run(
                ["ip", "netns", "del", name], capture_output=True, text=True, check=False
            )
            if deleted.returncode != 0 and (NETNS_DIR / name).exists():
                raise LabError(f"ip netns del {name}: {deleted.stderr.strip()}")
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()
        return removed

    @staticmethod
    def _wait_gone(victims: Callable[[], list[int]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while victims() and time.monotonic() < deadline:
            time.sleep(0.02)

    def _write_state(self, state: _State) -> None:
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(state.to_json())
        os.replace(tmp, self.state_path)

    def _build(self) -> None:
        topo = self.topology
        state = _State(self.name, str(topo.path), {n: _NodeState(topo.netns(n)) for n in topo.nodes})
        self._write_state(state)  # first, so that a crash from here on leaves a record
        for node in topo.nodes.values():
            ns = topo.netns(node.name)
            _run(["ip", "netns", "add", ns])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            pid, start = self._start_keeper(node)
            state.nodes[node.name] = _NodeState(ns, pid, start)
            self._write_state(state)
        for link in topo.links:
            self._add_link(link)
        for node in topo.nodes.values():
            for index, line in enumerate(node.exec):
                self._run_exec_line(node, index, line)

    def _start_keeper(self, node: Node) -> tuple[int, int]:
        root = str(Path(__file__).resolve().parent.parent)
        binds: list[tuple[str | None, str, bool]] = [(b.src, b.dst, b.readonly) for b in node.binds]
        # The project and its interpreter must stay visible in the node even when they live
        # under /tmp or /run (a CI clone in /tmp), which become private tmpfs mounts there.
        for keep in sorted({root, sys.prefix, os.path.dirname(os.path.abspath(sys.executable))}):
            if any(keep == p or keep.startswith(p + "/") for p in ("/tmp", "/run")) and not any(
                keep == d or keep.startswith(d + "/") for _s, d, _r in binds
            ):
                binds.insert(0, (keep, keep, True))
        spec = {"hostname": node.name[:64], "binds": [list(b) for b in binds]}
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        argv = ["ip", "netns", "exec", self.topology.netns(node.name), sys.executable, "-m", "agent.lab"]
        proc = subprocess.Popen(
            [*argv, "_keeper", json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
            env=env,
            start_new_session=True,  # not in the terminal's process group: Ctrl-C later spares it
        )
        self._keepers.append(proc)
        assert proc.stdout is not None and proc.stderr is not None
        with proc.stdout, proc.stderr:
            line = _read_line(proc.stdout, KEEPER_TIMEOUT)
            if line != "ready":
                proc.kill()
                proc.wait()
                stderr = _tail(proc.stderr.read().decode(errors="replace"), 3).replace("\n", "; ")
                if line is None:
                    reason = f"not ready within {KEEPER_TIMEOUT:.0f} s"
                else:
                    reason = line.removeprefix("error: ") or stderr or f"exit code {proc.returncode}"
                raise LabError(f"node {node.name}: cannot set up the node: {reason}")
        st = _proc_stat(proc.pid)
        if st is None:
            raise LabError(f"node {node.name}: keeper {proc.pid} died right after starting")
        return proc.pid, st[1]

    def _add_link(self, link: Link) -> None:
        a, b = link.a, link.b
        ns_a, ns_b = self.topology.netns(a.node), self.topology.netns(b.node)
        argv = ["ip", "link", "add", a.interface, "netns", ns_a, "mtu", str(link.mtu)]
        argv += ["address", a.mac] if a.mac else []
        argv += ["type", "veth", "peer", "name", b.interface, "netns", ns_b, "mtu", str(link.mtu)]
        argv += ["address", b.mac] if b.mac else []
        _run(argv, f"link {a} - {b}")
        for ns, ep in ((ns_a, a), (ns_b, b)):
            for address in ep.addresses:
                _run(
                    ["ip", "-n", ns, "addr", "add", address, "dev", ep.interface],
                    f"address {address} on {ep}",
                )
            _run(["ip", "-n", ns, "link", "set", ep.interface, "up"], f"link {ep} up")

    def _run_exec_line(self, node: Node, index: int, line: str) -> None:
        argv = self.command(node.name, line)
        env = self.env(node.name)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                cwd="/",
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=self.exec_timeout)
            except BaseException as exc:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                if isinstance(exc, subprocess.TimeoutExpired):
                    raise LabError(
                        f"node {node.name}: exec line {index + 1} did not exit within "
                        f"{self.exec_timeout:g} s: {line} (start long-running daemons in the "
                        "background: '... &')"
                    ) from None
                raise
            if code != 0:
                err.seek(0)
                raise ExecLineError(
                    node.name, index, line, _returncode(code), err.read().decode(errors="replace")
                )

    # -- commands in nodes

    def _keeper_of(self, node: str) -> int:
        self._node(node)
        state = _read_state(self.state_path)
        if state is None:
            raise LabError(f"lab {self.name} is not up (no state file {self.state_path})")
        entry = state.nodes.get(node)
        if entry is None or entry.keeper is None:
            raise LabError(f"lab {self.name}: node {node} is not up")
        ns_inode = _ns_inode(NETNS_DIR / entry.netns)
        if not _alive(entry.keeper, entry.keeper_start) or _proc_ns(entry.keeper, "net") != ns_inode:
            raise LabError(f"lab {self.name}: node {node} is not running (keeper {entry.keeper} gone)")
        return entry.keeper

    def command(self, node: str, cmd: Sequence[str] | str) -> list[str]:
        """The host argv running ``cmd`` in ``node`` (a string runs through ``sh -c``)."""
        keeper = self._keeper_of(node)
        inner = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        return ["nsenter", f"--target={keeper}", "--mount", "--net", "--uts", "--", *inner]

    def env(self, node: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of commands in ``node`` (module docstring), plus ``extra``."""
        spec = self._node(node)
        env = dict(os.environ)
        env.update(spec.env)
        base = (
            spec.env.get("PATH")
            or os.environ.get("PATH")
            or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        )
        env["PATH"] = f"{_python_bin_dir()}:{base}"
        env["CLAB_NODE_NAME"] = node
        env["CLAB_LAB_NAME"] = self.name
        env["CLAB_INTFS"] = str(len(self.topology.interfaces(node)))
        env.update(extra or {})
        return env

    def exec(
        self,
        node: str,
        cmd: Sequence[str] | str,
        *,
        check: bool = True,
        capture: bool = True,
        timeout: float | None = None,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in ``node`` and wait. ``capture``: stdout/stderr as text, else inherited.
        ``check``: raise NodeCommandError on a non-zero exit."""
        argv = self.command(node, cmd)
        proc = subprocess.run(
            argv,
            env=self.env(node, env),
            cwd="/",
            capture_output=capture,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        if check and proc.returncode != 0:
            raise NodeCommandError(node, proc.returncode, argv, proc.stdout, proc.stderr)
        return proc

    def popen(
        self, node: str, cmd: Sequence[str] | str, *, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start ``cmd`` in ``node`` without waiting; ``kwargs`` go to subprocess.Popen."""
        kwargs.setdefault("cwd", "/")
        return subprocess.Popen(self.command(node, cmd), env=self.env(node, env), **kwargs)

    # -- status

    def status(self) -> LabStatus:
        state = _read_state(self.state_path)
        existing = set(_list_netns())
        nodes = []
        for name in self.topology.nodes:
            ns = self.topology.netns(name)
            present = ns in existing
            entry = state.nodes.get(name) if state else None
            keeper = entry.keeper if entry else None
            ns_inode = _ns_inode(NETNS_DIR / ns) if present else None
            alive = (
                entry is not None
                and keeper is not None
                and _alive(keeper, entry.keeper_start)
                and _proc_ns(keeper, "net") == ns_inode
            )
            expected = self.topology.interfaces(name)
            have = 0
            processes = 0
            if present and ns_inode is not None:
                links = subprocess.run(
                    ["ip", "-n", ns, "-o", "link", "show"], capture_output=True, text=True, check=False
                ).stdout
                names = {
                    line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if ":" in line
                }
                have = sum(1 for i in expected if i in names)
                processes = len([p for p in _pids_in({ns_inode}, set()) if p != keeper])
            nodes.append(NodeStatus(name, ns, present, keeper, alive, have, len(expected), processes))
        return LabStatus(self.name, state is not None, tuple(nodes))


# --------------------------------------------------------------------------- the keeper

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
_CLONE_NEWNS, _CLONE_NEWUTS = 0x00020000, 0x04000000


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    libc = _libc()
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mount on {target}: {os.strerror(code)}")


def _unshare(flags: int) -> None:
    if _libc().unshare(ctypes.c_int(flags)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"unshare: {os.strerror(code)}")


class _NodeFs:
    """Mounts inside the keeper's mount namespace, remembering which mount points are private to
    the node (tmpfs) and which show the host's files (binds)."""

    def __init__(self) -> None:
        self.mounts: list[tuple[str, bool]] = []  # (mount point, node-private), in mount order

    def _is_private(self, path: str) -> bool:
        best: tuple[str, bool] | None = None
        for point, private in self.mounts:
            inside = path == point or path.startswith(point.rstrip("/") + "/")
            if inside and (best is None or len(point) >= len(best[0])):
                best = (point, private)
        return best is not None and best[1]

    def tmpfs(self, path: str, mode: int, uid: int = 0, gid: int = 0) -> None:
        _mount("tmpfs", path, "tmpfs", _MS_NOSUID | _MS_NODEV, f"mode={mode:o},uid={uid},gid={gid}")
        self.mounts.append((path, True))

    def _privatize(self, directory: str) -> None:
        """Mount a tmpfs on ``directory`` and bind each of its entries back into it."""
        st = os.stat(directory)
        entries: list[tuple[str, str, int | str]] = []
        try:
            for name in sorted(os.listdir(directory)):
                path = os.path.join(directory, name)
                if os.path.islink(path):
                    entries.append((name, "link", os.readlink(path)))
                else:
                    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
                    entries.append((name, "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file", fd))
            self.tmpfs(directory, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            for name, kind, ref in entries:
                path = os.path.join(directory, name)
                if isinstance(ref, str):
                    os.symlink(ref, path)
                    continue
                if kind == "dir":
                    os.mkdir(path)
                else:
                    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644))
                _mount(f"/proc/self/fd/{ref}", path, None, _MS_BIND | _MS_REC)
                self.mounts.append((path, False))
        finally:
            for _, _, ref in entries:
                if isinstance(ref, int):
                    os.close(ref)

    def mountpoint(self, dst: str, is_dir: bool) -> str:
        """Make ``dst`` exist (as a directory or file) without touching the host; its real path."""
        target = os.path.realpath(dst)
        if os.path.exists(target):
            if os.path.isdir(target) != is_dir:
                what = "directory" if is_dir else "file"
                raise LabError(f"bind destination {dst}: cannot mount a {what} on it")
            return target
        ancestor = os.path.dirname(target)
        while not os.path.exists(ancestor):
            ancestor = os.path.dirname(ancestor)
        if not os.path.isdir(ancestor):
            raise LabError(f"bind destination {dst}: {ancestor} is not a directory")
        if not self._is_private(ancestor):
            if ancestor == "/":
                raise LabError(
                    f"bind destination {dst}: its top-level directory does not exist; "
                    "use a path under an existing directory (e.g. /etc, /opt, /srv, /run, /tmp)"
                )
            self._privatize(ancestor)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if is_dir:
            os.mkdir(target)
        else:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        return target

    def bind(self, fd: int, dst: str, readonly: bool) -> None:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        target = self.mountpoint(dst, is_dir)
        _mount(f"/proc/self/fd/{fd}", target, None, _MS_BIND | _MS_REC)
        if readonly:
            kept = os.statvfs(target).f_flag & (_MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
            _mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | kept)
        self.mounts.append((target, False))

    def volume(self, dst: str) -> None:
        self.tmpfs(self.mountpoint(dst, True), 0o755)


def _keeper_setup(spec: dict[str, Any]) -> None:
    _unshare(_CLONE_NEWNS | _CLONE_NEWUTS)
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    socket.sethostname(str(spec["hostname"]))
    binds: list[tuple[int | None, str, bool]] = []
    try:
        for src, dst, readonly in spec["binds"]:
            # Opened before /run and /tmp are covered: sources there stay reachable.
            binds.append(
                (None if src is None else os.open(src, os.O_PATH | os.O_CLOEXEC), dst, bool(readonly))
            )
        fs = _NodeFs()
        fs.tmpfs("/run", 0o755)
        fs.tmpfs("/tmp", 0o1777)
        for fd, dst, readonly in sorted(binds, key=lambda b: b[1].rstrip("/").count("/")):
            if fd is None:
                fs.volume(dst)
            else:
                fs.bind(fd, dst, readonly)
    finally:
        for fd, _, _ in binds:
            if fd is not None:
                os.close(fd)


def _keeper_main(args: list[str]) -> int:
    """The node's keeper (started by ``Lab.up`` inside ``ip netns exec``): set up the mount and UTS
    namespaces, print ``ready`` (or ``error: ...``), then sleep until killed."""
    try:
        _keeper_setup(json.loads(args[0]))
    except (OSError, LabError, ValueError, KeyError, IndexError) as exc:
        print(f"error: {exc}", flush=True)
        return 1
    print("ready", flush=True)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        signal.pause()


# --------------------------------------------------------------------------- command line


def _find_topology(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    found = sorted(p for pattern in ("*.clab.yml", "*.clab.yaml") for p in Path.cwd().glob(pattern))
    if len(found) != 1:
        what = "none" if not found else ", ".join(p.name for p in found)
        raise TopologyError(f"no topology file given (-t FILE) and not exactly one *.clab.yml here ({what})")
    return found[0]


def _print(message: str) -> None:
    print(message, flush=True)


def _build_parser() -> argparse.ArgumentParser:
    topo = argparse.ArgumentParser(add_help=False)
    topo.add_argument("-t", "--topo", default=argparse.SUPPRESS, help="containerlab topology file")
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Build a containerlab topology (kind: linux nodes) on network namespaces and veth pairs.",
    )
    parser.add_argument("-t", "--topo", default=None, help="containerlab topology file")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", parents=[topo], help="build the lab (removing leftovers first)")
    up.add_argument("--exec-timeout", type=float, default=DEFAULT_EXEC_TIMEOUT, metavar="SECONDS")
    down = sub.add_parser("down", parents=[topo], help="remove everything of the lab")
    down.add_argument("--name", help="lab name, when the topology file is gone")
    status = sub.add_parser("status", parents=[topo], help="one line per node; exit 3 unless fully up")
    for command in (up, down, status):
        command.add_argument("file", nargs="?", help="topology file (instead of -t)")
    ex = sub.add_parser("exec", parents=[topo], help="run a command in a node: exec NODE -- CMD...")
    ex.add_argument("node")
    ex.add_argument("cmd", nargs="*", help="command (after --); one word runs through sh -c")
    inj = sub.add_parser(
        "inject",
        parents=[topo],
        help="make an injector node announce/withdraw EVPN routes: inject NODE announce|withdraw evpn ...",
    )
    inj.add_argument("node")
    inj.add_argument("words", nargs=argparse.REMAINDER, help="one launcher command (docs/exabgp-api.md)")
    return parser


def inject(lab: Lab, node: str, words: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Have ``node`` (running ``python -m bgp.injector serve``) send one EVPN route command."""
    return lab.exec(node, [sys.executable, "-m", "bgp.injector", "send", *words], check=False)


def _down_by_name(name: str) -> int:
    if not _LAB_NAME_RE.match(name):
        raise LabError(f"{name!r} is not a lab name")
    topo = Topology(name, Path("/nonexistent"), {}, ())
    Lab(topo, log=_print).down()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["_keeper"]:
        return _keeper_main(args_list[1:])
    command: list[str] | None = None
    if "--" in args_list:
        cut = args_list.index("--")
        args_list, command = args_list[:cut], args_list[cut + 1 :]
    parser = _build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, or a usage error argparse already reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if command is not None and args.command != "exec":
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: '--' is only for exec", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "down" and args.name:
            return _down_by_name(args.name)
        file = getattr(args, "file", None)
        if file and args.topo and Path(file) != Path(args.topo):
            raise LabError(f"two topology files given: {args.topo} and {file}")
        lab = Lab(
            _find_topology(args.topo or file), log=_print, exec_timeout=getattr(args, "exec_timeout", 120.0)
        )
        if args.command == "up":
            lab.up()
            return EXIT_OK
        if args.command == "down":
            lab.down()
            return EXIT_OK
        if args.command == "status":
            st = lab.status()
            for node in st.nodes:
                print(node.line())
            print(
                f"lab {st.lab}: {'up' if st.up else 'not up'}" + ("" if st.state_file else " (no state file)")
            )
            return EXIT_OK if st.up else EXIT_NOT_UP
        if args.command == "inject":
            words = list(args.words)
            if words[:1] == ["--"]:
                words = words[1:]
            if len(words) < 2 or (words[0] not in ("announce", "withdraw") and "announce" not in words):
                raise LabError("inject NODE announce|withdraw evpn imet|smet ... (docs/exabgp-api.md)")
            out = inject(lab, args.node, words)
            print((out.stdout or out.stderr).strip(), file=sys.stdout if out.returncode == 0 else sys.stderr)
            return out.returncode
        return _exec(lab, args.node, command if command is not None else args.cmd)
    except LabError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_EXEC_RUNNER if args.command == "exec" else EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _exec(lab: Lab, node: str, cmd: list[str]) -> int:
    if not cmd:
        cmd = ["bash" if shutil.which("bash") else "sh"]
    target: list[str] | str = cmd[0] if len(cmd) == 1 else cmd
    proc = lab.popen(node, target)
    while True:
        try:
            return _returncode(proc.wait())
        except KeyboardInterrupt:  # the child got the terminal's SIGINT too; wait for its verdict
            continue


if __name__ == "__main__":
    sys.exit(main())
