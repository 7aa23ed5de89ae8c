"""The agent never runs a shell (issue 7), statically: an AST walk over the runtime packages.

Scanned: every module of agent/, bgp/, replication/ and ipmr/ except agent/lab.py. ``evpn-lab``
(agent/lab.py) is a separate operator tool, never imported by the agent: it runs the ``exec:``
lines of a containerlab topology, which containerlab itself hands to a shell, so running them
through ``sh -c`` there is the documented contract, not something the leaf agent does.

Refused anywhere in scanned code: ``os.system``, ``os.popen``, ``subprocess.getoutput`` /
``getstatusoutput`` (always a shell), ``asyncio.create_subprocess_shell``, ``pty.spawn``, and any
call with ``shell=`` other than a literal False. Every other way of starting a program is listed
with its argv and must be in ``EXPECTED_SPAWNS``, so a new one gets reviewed.

The run-time half (no shell in the running agent's process tree, ExaBGP's ``process ... run``)
is tests/netns/test_security.py; ExaBGP's own call is pinned below.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGES = ("agent", "bgp", "replication", "ipmr")
EXCLUDED = {"agent/lab.py": "evpn-lab, the lab runner: a separate tool that runs topology exec lines"}

SHELL_CALLS = {
    "os.system",
    "os.popen",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
    "asyncio.create_subprocess_shell",
    "asyncio.subprocess.create_subprocess_shell",
    "pty.spawn",
}
SPAWN_CALLS = {
    "subprocess.run",
    "subprocess.Popen",
    "subprocess.call",
    "subprocess.check_call",
    "subprocess.check_output",
    "asyncio.create_subprocess_exec",
    "asyncio.subprocess.create_subprocess_exec",
    "os.posix_spawn",
    "os.posix_spawnp",
    "os.fork",
    "os.forkpty",
} | {
    f"os.{name}" for name in ("execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe")
}
SPAWN_CALLS |= {f"os.spawn{s}" for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")}

# (module, call, argv as written): the only processes the runtime code starts.
EXPECTED_SPAWNS = {
    # ExaBGP through the project's launcher: [python, "-m", "bgp.launcher", CONFIG], prefixed with
    # ["ip", "netns", "exec", NS] when a namespace is given (bgp.speaker.ExabgpProcess.start).
    ("bgp/speaker.py", "asyncio.create_subprocess_exec", "*argv"),
}


@dataclass(frozen=True)
class Finding:
    module: str
    line: int
    call: str
    detail: str


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted origin, from the module's imports (``import subprocess as sp``,
    ``from os import system``, ``from asyncio import subprocess``)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    head = aliases.get(node.id, node.id)
    return ".".join([head, *reversed(parts)])


def scan(source: str, module: str) -> tuple[list[Finding], list[Finding]]:
    """(shell uses, other process starts) in one module's source."""
    tree = ast.parse(source, module)
    aliases = _aliases(tree)
    shells: list[Finding] = []
    spawns: list[Finding] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases) or ast.unparse(node.func)
        argv = ", ".join(ast.unparse(a) for a in node.args[:1]) or "(no argv)"
        for kw in node.keywords:
            if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                shells.append(Finding(module, node.lineno, name, f"shell={ast.unparse(kw.value)}"))
        if name in SHELL_CALLS:
            shells.append(Finding(module, node.lineno, name, argv))
        elif name in SPAWN_CALLS:
            spawns.append(Finding(module, node.lineno, name, argv))
    return shells, spawns


def runtime_modules() -> list[Path]:
    files = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    return [p for p in files if p.relative_to(ROOT).as_posix() not in EXCLUDED]


def test_the_scan_covers_every_runtime_package_and_skips_only_the_lab_runner() -> None:
    """The walk sees the agent's real modules (daemon, speaker, netlink, IPMR driver) and leaves
    out agent/lab.py alone."""
    scanned = {p.relative_to(ROOT).as_posix() for p in runtime_modules()}
    assert {"agent/daemon.py", "agent/control.py", "bgp/speaker.py", "bgp/relay.py"} <= scanned
    assert {"replication/netlink.py", "ipmr/driver.py"} <= scanned
    assert not scanned & set(EXCLUDED)
    assert (ROOT / "agent" / "lab.py").exists()


def test_no_runtime_module_can_run_a_shell() -> None:
    """No os.system/os.popen/getoutput/create_subprocess_shell/pty.spawn and no shell=True in
    agent/, bgp/, replication/, ipmr/ (agent/lab.py excepted)."""
    found = []
    for path in runtime_modules():
        shells, _spawns = scan(path.read_text(), path.relative_to(ROOT).as_posix())
        found += shells
    assert not found, "\n".join(f"{f.module}:{f.line}: {f.call}({f.detail})" for f in found)


def test_the_only_process_the_runtime_starts_is_exabgp_by_argv() -> None:
    """Every process start in the runtime packages, with its argv: today one,
    asyncio.create_subprocess_exec(*argv) for ExaBGP in bgp/speaker.py."""
    spawns = []
    for path in runtime_modules():
        _shells, found = scan(path.read_text(), path.relative_to(ROOT).as_posix())
        spawns += found
    assert {(f.module, f.call, f.detail) for f in spawns} == EXPECTED_SPAWNS, spawns


@pytest.mark.parametrize(
    "snippet",
    [
        "import os\nos.system('ls')",
        "import os\nos.popen('ls')",
        "from os import system\nsystem('ls')",
        "import subprocess as sp\nsp.run('ls', shell=True)",
        "import subprocess\nsubprocess.Popen(['ls'], shell=1)",
        "from subprocess import check_output\ncheck_output('ls', shell=flag)",
        "import subprocess\nsubprocess.getoutput('ls')",
        "import asyncio\nasyncio.create_subprocess_shell('ls')",
        "from asyncio import create_subprocess_shell as css\ncss('ls')",
        "import pty\npty.spawn('/bin/sh')",
    ],
)
def test_the_scanner_catches_each_way_of_running_a_shell(snippet: str) -> None:
    """The detector is not vacuous: each forbidden form, aliased or not, is reported."""
    shells, _spawns = scan(snippet, "snippet.py")
    assert shells, snippet


def test_the_scanner_accepts_argv_lists_and_shell_false() -> None:
    shells, spawns = scan(
        "import subprocess\nsubprocess.run(['ip', 'link'], shell=False)\nsubprocess.run(['ls'])", "ok.py"
    )
    assert not shells and [f.detail for f in spawns] == ["['ip', 'link']", "['ls']"]


def test_exabgp_starts_api_processes_with_popen_argv_and_no_shell() -> None:
    """ExaBGP 5.0.15 (pinned) runs ``process NAME { run ...; }`` as subprocess.Popen(run, ...)
    with no shell= argument, where ``run`` is the argv list its config parser built: so the
    agent's relay starts without a shell. A future ExaBGP that adds shell=True fails here."""
    exabgp = pytest.importorskip("exabgp")
    processes = Path(exabgp.__file__).parent / "reactor" / "api" / "processes.py"
    shells, spawns = scan(processes.read_text(), "exabgp/reactor/api/processes.py")
    assert not shells, shells
    assert [(f.call, f.detail) for f in spawns] == [("subprocess.Popen", "run")], spawns
    parser = Path(exabgp.__file__).parent / "configuration" / "process" / "parser.py"
    assert "return [prg] + [_ for _ in tokeniser.generator]" in parser.read_text()  # run is a list
