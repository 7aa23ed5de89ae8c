"""SMCRoute (Debian package ``smcroute``, 2.5.6 in Debian 12) as a reference and a rival multicast
router inside a test namespace: one ``smcrouted`` per namespace in the foreground, with a private
config file, control socket, PID file and log, so that several instances coexist (one per
namespace, or one per multicast routing table with ``table=``). Facts behind the choices are in
docs/smcroute-notes.md."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.netns.netlab import Lab

SMCROUTED = "/usr/sbin/smcrouted"
SMCROUTECTL = "/usr/sbin/smcroutectl"

# Lines smcrouted logs but survives: it keeps running, and writes its PID file, even when another
# router owns the table or a config line names an interface without a VIF.
_FATAL_LOG = re.compile(
    r"already in use|Parse error|not a known phyint|no valid phyint|[Ff]ailed|Cannot|does not (even )?support"
)


def smcroute_available() -> bool:
    return Path(SMCROUTED).exists() and Path(SMCROUTECTL).exists()


@dataclass
class Smcroute:
    """``smcrouted -n`` in ``netns``; files live in ``workdir`` (one workdir per instance).

    ``table``: the multicast routing table (``-t``; 0 = default, both IPv4 and IPv6).
    ``all_vifs``: False starts with ``-N`` so only ``phyint IFNAME enable`` interfaces get VIFs/MIFs.
    ``cache_flush``: ``-c SEC``, how often unused dynamic (*,G)-learnt routes are flushed (0 = never).
    ``extra``: more smcrouted options, e.g. ``("-e", "/path/script")``.
    """

    lab: Lab
    netns: str
    workdir: Path
    table: int = 0
    all_vifs: bool = False
    loglevel: str = "info"
    cache_flush: int = 0
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def conf(self) -> Path:
        return self.workdir / "smcroute.conf"

    @property
    def sock(self) -> Path:
        return self.workdir / "smcroute.sock"

    @property
    def pidfile(self) -> Path:
        return self.workdir / "smcroute.pid"

    @property
    def logfile(self) -> Path:
        return self.workdir / "smcrouted.log"

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def start(self, config: str, timeout: float = 20.0, strict: bool = True) -> None:
        """Write the config, start smcrouted and return once it has installed every route of the
        config (it writes its PID file only then). ``strict`` fails on logged errors that smcrouted
        itself shrugs off (table in use, unknown interface, parse error)."""
        if self.proc is not None:
            raise RuntimeError(f"smcrouted already running in {self.netns}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(config)
        for stale in (self.pidfile, self.sock):
            stale.unlink(missing_ok=True)
        cmd = ["ip", "netns", "exec", self.netns, SMCROUTED, "-n", "-f", str(self.conf), "-u", str(self.sock)]
        cmd += ["-P", str(self.pidfile), "-l", self.loglevel, "-c", str(self.cache_flush)]
        if self.table:
            cmd += ["-t", str(self.table)]
        if not self.all_vifs:
            cmd.append("-N")
        cmd += self.extra
        with self.logfile.open("wb") as log:
            # `ip netns exec` execs smcrouted in place: the Popen pid is the daemon's pid.
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.lab.pids.append(self.proc.pid)
        deadline = time.monotonic() + timeout
        while not self._pidfile_written():
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self._forget()
                raise RuntimeError(f"smcrouted in {self.netns} exited with {code}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"smcrouted in {self.netns} not ready after {timeout}s:\n{self.log()}")
            time.sleep(0.02)
        if strict:
            bad = [line for line in self.log().splitlines() if _FATAL_LOG.search(line)]
            if bad:
                self.stop()
                raise RuntimeError(f"smcrouted in {self.netns} logged errors:\n" + "\n".join(bad))

    def _pidfile_written(self) -> bool:
        assert self.proc is not None
        try:
            return self.pidfile.read_text().strip() == str(self.proc.pid)
        except FileNotFoundError:
            return False

    def ctl(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        """``smcroutectl -p -u SOCK ARGS`` (``-p``: plain headings, no terminal probing); stdout.
        Daemon-side errors come back on stderr with exit status 1; unknown OIFs are not errors."""
        cmd = ["ip", "netns", "exec", self.netns, SMCROUTECTL, "-p", "-u", str(self.sock), *args]
        res = subprocess.run(cmd, input=stdin, text=True, capture_output=True, check=False)
        if check and res.returncode != 0:
            raise RuntimeError(
                f"smcroutectl {' '.join(args)} in {self.netns}: rc={res.returncode} {res.stderr}"
            )
        return res.stdout

    def batch(self, commands: list[str], check: bool = True) -> str:
        """``smcroutectl -b``: one command a line (``add IIF [SRC] GROUP OIF...``), at most 9 words."""
        return self.ctl("-b", check=check, stdin="".join(f"{c}\n" for c in commands))

    def reload(self, config: str | None = None) -> None:
        """Rewrite the config (if given) and reload it; returns once the reload is done.
        ``smcroutectl reload`` only sets a flag; the daemon is single-threaded and handles the
        reload before the next IPC request, so the ``show`` that follows waits for it.
        Beware (2.5.6): a reload that drops an OIF from an (S,G) that stays leaves the OIF in the
        kernel MFC; stop() and start() to get exactly the new config. Reload cost is quadratic."""
        if config is not None:
            self.conf.write_text(config)
        self.ctl("reload")
        self.ctl("-t", "show")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (smcrouted runs MRT_DONE: its VIFs and MFC entries go) and wait for the exit."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
        self._forget()

    def _forget(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ValueError):
                self.lab.pids.remove(self.proc.pid)
        self.proc = None


def mroute_show(netns: str, ipv6: bool = False, table: int | str | None = None) -> list[str]:
    """The kernel MFC of ``netns`` (``ip -j [-6] mroute show [table T]``), one sorted line per entry
    in the shape of ``ip mroute show``: ``(S,G) Iif: IIF Oifs: OIF1 OIF2(ttl 3)``, OIFs sorted, no
    ``Oifs:`` for a stop filter, ``Iif: unresolved`` for a pending upcall. State, counters and
    table are dropped, so the MFCs two routers built compare equal when they forward alike."""
    cmd = ["ip", "-n", netns, "-j"]
    if ipv6:
        cmd.append("-6")
    cmd += ["mroute", "show"]
    if table is not None:
        cmd += ["table", str(table)]
    out = subprocess.run(cmd, text=True, capture_output=True, check=True).stdout.strip()
    lines = []
    for entry in json.loads(out) if out else []:
        oifs = sorted(
            hop["oif"] if hop.get("ttl", 1) <= 1 else f"{hop['oif']}(ttl {hop['ttl']})"
            for hop in entry.get("multipath", [])
        )
        sg = f"({entry.get('src', 'unknown')},{entry.get('dst', 'unknown')})"
        line = f"{sg} Iif: {entry.get('iif', 'unresolved')}"
        lines.append(f"{line} Oifs: {' '.join(oifs)}" if oifs else line)
    return sorted(lines)


def mroute_count(netns: str, ipv6: bool = False) -> int:
    """Entries in the default table's MFC of ``netns`` (/proc/net/ip{,6}_mr_cache, resolved and
    unresolved): cheaper than ``mroute_show`` when polling for thousands of routes."""
    name = "ip6_mr_cache" if ipv6 else "ip_mr_cache"
    res = subprocess.run(
        ["ip", "netns", "exec", netns, "cat", f"/proc/net/{name}"], text=True, capture_output=True, check=True
    )
    return max(0, len(res.stdout.splitlines()) - 1)


__all__ = ["SMCROUTECTL", "SMCROUTED", "Smcroute", "mroute_count", "mroute_show", "smcroute_available"]
