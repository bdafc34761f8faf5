"""A host port published from inside a network namespace, as kind publishes
the API server port of its node container on the host's loopback (Docker's
userland proxy): connections accepted on the host are relayed, byte for byte
(TLS passes through), to a port on the namespace's loopback.

`kubeling up --node-netns` runs the API server inside the node's namespace,
where it reaches the node agents at their node addresses without any route
from the host into that namespace, and publishes it on `--listen` this way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket

from ..node.namespaces import CLONE_NEWNET, setns

_CHUNK = 1 << 16


def _enter(netns_path: str) -> None:
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, CLONE_NEWNET)
    finally:
        os.close(fd)


class PortMapping:
    def __init__(self, netns_path: str, target_port: int) -> None:
        self.netns_path = netns_path
        self.target_port = target_port
        # One thread living in the namespace makes the outgoing sockets: a socket
        # belongs to the namespace of the thread that created it, and keeps it.
        self._dialer = concurrent.futures.ThreadPoolExecutor(1, "portmap-dialer", _enter, (netns_path,))
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (OSError when that is taken)."""
        self._server = await asyncio.start_server(self._accepted, host, port, reuse_address=True, backlog=1024)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for t in list(self._relays):
            t.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)
        self._dialer.shutdown(wait=True)

    async def _dial(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(self._dialer, socket.socket, socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, ("127.0.0.1", self.target_port))
        except BaseException:
            sock.close()
            raise
        return sock

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        try:
            try:
                sock = await self._dial()
            except OSError:
                return  # the client sees the connection close, as with nothing listening
            up_reader, up_writer = await asyncio.open_connection(sock=sock, limit=_CHUNK)
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
        finally:
            writer.close()
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
