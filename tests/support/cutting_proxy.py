"""A TCP proxy that cuts one Redis connection in the middle of a batch's apply-once scripts.

Modes:
- ``"mid_request"``: of the first request that holds an ``EVALSHA``, only the bytes up to the
  middle of that first command reach Redis; then both sides are closed (Redis sees an incomplete
  command and applies nothing of it).
- ``"after_apply"``: the request holding ``EVALSHA`` reaches Redis whole, but Redis's reply is
  dropped and the client's connection closed (Redis applied it; the client cannot know).
- ``"mid_pipeline"``: of any request holding at least two commands (``*`` array headers), the
  first half reaches Redis: the scripts wholly in it apply, the rest do not.

Each mode cuts once per arming; later connections pass through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Literal

Mode = Literal["mid_request", "after_apply", "mid_pipeline"]


class CuttingProxy:
    def __init__(self, target_host: str, target_port: int, mode: Mode) -> None:
        self._target = (target_host, target_port)
        self._mode = mode
        self.armed = True
        self.cuts = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    def _cut_point(self, chunk: bytes) -> int | None:
        """Where to cut this client chunk (bytes before it are forwarded), or None to pass it."""
        if not self.armed:
            return None
        if self._mode == "mid_request":
            start = chunk.find(b"EVALSHA")
            if start < 0:
                return None
            end = chunk.find(b"\r\n*", start)
            end = len(chunk) if end < 0 else end
            return start + (end - start) // 2
        commands = chunk.count(b"\r\n*") + chunk.startswith(b"*")
        if self._mode == "mid_pipeline" and commands >= 2:
            return len(chunk) // 2
        return None

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        drop_replies = asyncio.Event()

        async def upstream() -> None:
            while chunk := await client_reader.read(1 << 20):
                cut = self._cut_point(chunk)
                if cut is not None:
                    self.armed = False
                    self.cuts += 1
                    server_writer.write(chunk[:cut])
                    await server_writer.drain()
                    return  # closing both sides below is the cut
                if self.armed and self._mode == "after_apply" and b"EVALSHA" in chunk:
                    self.armed = False
                    self.cuts += 1
                    drop_replies.set()
                server_writer.write(chunk)
                await server_writer.drain()

        async def downstream() -> None:
            while chunk := await server_reader.read(1 << 20):
                if drop_replies.is_set():
                    return  # Redis applied the request; its reply never arrives
                client_writer.write(chunk)
                await client_writer.drain()

        pumps = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            for writer in (client_writer, server_writer):
                writer.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await writer.wait_closed()
            self._tasks.discard(task)


@contextlib.asynccontextmanager
async def cutting_proxy(host: str, port: int, mode: Mode) -> AsyncIterator[CuttingProxy]:
    proxy = CuttingProxy(host, port, mode)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
