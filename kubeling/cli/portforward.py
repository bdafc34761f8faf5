"""The API server on the node: ports in the node's network namespace whose
connections are relayed, byte for byte (TLS passes through), to the API
server where it listens, as a kind node reaches its control plane.

`kubeling up` needs it twice. On the node's loopback (with --node-netns) for
what runs inside the node's namespace and talks to the API server: the
cluster DNS server, whose sockets all belong to the node. On the node's
address for pods: it is the `kubernetes` Service's endpoint, which cannot
be the loopback address the API server listens on.
"""

from __future__ import annotations

import asyncio
import socket

from ..node.namespaces import in_netns_thread

_CHUNK = 1 << 16


def _listener(address: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        s.listen(128)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


class APIServerForward:
    def __init__(self, netns_path: str | None, target_host: str, target_port: int) -> None:
        self.netns_path = netns_path
        self.target = (target_host, target_port)
        self._servers: list[asyncio.Server] = []
        self._relays: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, addresses: list[str], port: int) -> None:
        """Listen on each address:`port` in the node's namespace (OSError when one is taken)."""
        for address in addresses:
            def listen(address: str = address) -> socket.socket:
                return _listener(address, port)
            # A socket stays in the namespace it was made in, whichever thread uses it.
            sock = await asyncio.to_thread(in_netns_thread, self.netns_path, listen) if self.netns_path \
                else await asyncio.to_thread(listen)
            self._servers.append(await asyncio.start_server(self._accepted, sock=sock))

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()
        # Closed connections end their relays (a cancelled connection handler
        # is an error to asyncio's stream server).
        for w in list(self._writers):
            w.close()
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        self._writers.add(writer)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target, limit=_CHUNK)
            except OSError:
                return  # the client sees the connection close, as when nothing listens
            self._writers.add(up_writer)
            pipes = {asyncio.create_task(_pipe(reader, up_writer)), asyncio.create_task(_pipe(up_reader, writer))}
            try:
                done, pending = await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
                # After a clean EOF the other direction goes on (a half-closed
                # request still gets its answer); after a reset both end.
                if pending and all(t.result() for t in done):
                    await asyncio.wait(pending)
            finally:
                for t in pipes:
                    t.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
                up_writer.close()
                self._writers.discard(up_writer)
        finally:
            writer.close()
            self._writers.discard(writer)
            self._relays.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Copy until EOF, then half-close; False when either side failed."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:  # ConnectionResetError, BrokenPipeError, ...
        return False
    return True
