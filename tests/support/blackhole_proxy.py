"""A TCP proxy whose path can be black-holed: bytes vanish in both directions, nothing is closed.

That is what a dropped network path (a lost NAT entry, a partitioned link, a firewall that drops)
looks like to a client: no RST, no FIN, no reply. A client without socket timeouts waits on such a
connection forever; only a timeout gets it out. Unlike SIGSTOP on the server, the requests sent
during the outage are lost for good, so waiting for the path to come back does not help either.

``blackhole()`` marks every open connection, and every one opened until ``restore()``, as holed for
the rest of its life; connections opened after ``restore()`` pass through. It runs on its own
event loop in a thread, so synchronous tests can drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class _Connection:
    holed: bool


class BlackholeProxy:
    def __init__(self, target_host: str, target_port: int, listen_port: int) -> None:
        self._target = (target_host, target_port)
        self.port = listen_port
        self._dropping = False
        self._connections: list[_Connection] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.dropped_bytes = 0

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    def blackhole(self) -> None:
        self._dropping = True
        for connection in self._connections:
            connection.holed = True

    def restore(self) -> None:
        """New connections pass again; the holed ones stay holed (their requests are gone)."""
        self._dropping = False

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        connection = _Connection(holed=self._dropping)
        self._connections.append(connection)
        server_reader, server_writer = await asyncio.open_connection(*self._target)

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while chunk := await reader.read(1 << 20):
                if connection.holed:
                    self.dropped_bytes += len(chunk)
                    continue
                writer.write(chunk)
                await writer.drain()

        pumps = [
            asyncio.create_task(pump(client_reader, server_writer)),
            asyncio.create_task(pump(server_reader, client_writer)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for writer in (client_writer, server_writer):
                writer.close()
                with contextlib.suppress(OSError, ConnectionError, asyncio.CancelledError):
                    await writer.wait_closed()
            self._connections.remove(connection)


@contextlib.contextmanager
def blackhole_proxy(target_host: str, target_port: int, listen_port: int) -> Iterator[BlackholeProxy]:
    proxy = BlackholeProxy(target_host, target_port, listen_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
