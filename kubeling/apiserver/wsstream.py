"""WebSocket streaming on aiohttp: the channel protocol of exec, attach and
the node agent hop (v5.channel.k8s.io, v4.channel.k8s.io), and the tunnel in
which kubectl 1.31+ carries SPDY port-forwarding (SPDY/3.1+portforward.k8s.io).

Channel protocol: every message starts with its channel number, the rest is
payload. 0 stdin (to the server), 1 stdout, 2 stderr, 3 the error channel
(one metav1.Status when the command ends), 4 resize (to the server, JSON
`{"Width":80,"Height":24}`). v5 adds channel 255, a close signal: `[255, n]`
means "no more data on channel n" (the client's stdin EOF). Clients write
binary messages; the Python client writes text ones (`chr(channel) + text`)
when given str, so both are read. The same sockets work on both ends
(aiohttp's server and client WebSocket classes share the interface used here).
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
#: the channel protocols served, best first
CHANNEL_PROTOCOLS = (V5, V4)
TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE_SIGNAL = 255

WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse

_END = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


async def _payload(ws: WebSocket) -> bytes | None:
    """The next data message's bytes, None once the socket is closing."""
    while True:
        msg = await ws.receive()
        if msg.type == aiohttp.WSMsgType.BINARY:
            return bytes(msg.data)
        if msg.type == aiohttp.WSMsgType.TEXT:
            return str(msg.data).encode()
        if msg.type in _END:
            return None


class ChannelSocket:
    """A WebSocket speaking the channel protocol. One task may receive while
    others send."""

    def __init__(self, ws: WebSocket, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.close_signals = protocol == V5

    async def receive(self) -> tuple[int, bytes] | None:
        """(channel, data), with data b"" when the peer closed that channel;
        None once the socket is closing."""
        while True:
            data = await _payload(self.ws)
            if data is None:
                return None
            if len(data) < 2:
                continue  # a bare channel number carries nothing
            if data[0] == CLOSE_SIGNAL and self.close_signals:
                return data[1], b""
            return data[0], data[1:]

    async def send(self, channel: int, data: bytes) -> None:
        await self.ws.send_bytes(bytes((channel,)) + data)

    async def close_channel(self, channel: int) -> None:
        """Tell the peer no more data follows on `channel` (v5 only: v4 has no way to say it)."""
        if self.close_signals:
            await self.ws.send_bytes(bytes((CLOSE_SIGNAL, channel)))

    async def close(self) -> None:
        await self.ws.close()


class TunnelChannel:
    """A spdy.ByteChannel over a WebSocket: binary messages are slices of one
    byte stream, cut anywhere."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def read(self) -> bytes:
        while True:
            data = await _payload(self.ws)
            if data is None:
                return b""
            if data:
                return data

    async def write(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def close(self) -> None:
        await self.ws.close()
