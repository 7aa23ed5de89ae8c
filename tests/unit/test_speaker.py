"""bgp.speaker's side of the relay socket: lines split from whatever chunks arrive, answers
matched to commands in order, an over-long line reported instead of growing without bound."""

from __future__ import annotations

import asyncio
import itertools
from ipaddress import ip_address
from pathlib import Path

from bgp.exabgp_config import Speaker
from bgp.exabgp_json import ParseError, parse_line
from bgp.speaker import MAX_LINE, ExabgpProcess


async def test_lines_are_split_from_any_chunking_and_answers_match_commands(tmp_path: Path) -> None:
    me = ip_address("10.0.0.1")
    process = ExabgpProcess(Speaker(me, 65000, me, ()), tmp_path)
    server = await asyncio.start_unix_server(process._on_relay, path=str(tmp_path / "s"))
    try:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "s"))
        await asyncio.wait_for(process._connected.wait(), 5)
        first, second = process.send("announce one"), process.send("announce two")
        assert await reader.readline() == b"announce one\n"
        lines = [f'{{"n": {i}, "pad": "{"x" * (i % 7)}"}}' for i in range(300)]
        stream = "".join(f"{line}\n" for line in lines[:150]) + "done\n"
        stream += "".join(f"{line}\n" for line in lines[150:]) + "error\n"
        data = stream.encode()
        cuts = [0, 1, 2, 3, 50, 51, 4000, 4001, 9000, len(data)]  # inside lines, at newlines, ...
        for start, end in itertools.pairwise(cuts):
            writer.write(data[start:end])
            await writer.drain()
            await asyncio.sleep(0)  # let the reader take this chunk on its own
        got = [await process.next_line(5) for _ in lines]
        assert got == lines
        assert await first is True and await second is False
        assert process.backlog == 0

        writer.write(b"y" * (MAX_LINE + 10))
        await writer.drain()
        line = await process.next_line(5)
        assert line is not None and line.startswith("over-long line dropped")
        [error] = parse_line(line)
        assert isinstance(error, ParseError)
        writer.close()
    finally:
        server.close()
