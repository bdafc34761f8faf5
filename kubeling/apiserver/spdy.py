"""SPDY/3.1, the server side: what kubectl speaks for exec, attach and
port-forward (through moby/spdystream, the library client-go uses), either
right after an HTTP/1.1 upgrade or tunnelled through a WebSocket.

A session multiplexes streams over one byte channel. The client opens every
stream (SYN_STREAM, odd ids) and the server answers each with SYN_REPLY; DATA
frames carry the bytes, a FIN flag half-closes a stream, RST_STREAM aborts it,
GOAWAY ends the session. Header blocks are zlib streams primed with the
draft's dictionary, one compression context per direction for the whole
session, so every block must be decompressed, even one we refuse.

Flow control (draft 3.1): the receive side advertises the default 64 KiB
windows and sends WINDOW_UPDATEs for the stream and the session as consumers
read. spdystream neither sends nor honours WINDOW_UPDATE, so waiting for one
would stall every transfer from us past 64 KiB: send windows are enforced only
once the peer shows that it does flow control (a WINDOW_UPDATE, or SETTINGS
with INITIAL_WINDOW_SIZE). Because kubectl may overrun our windows, the read
loop also stops taking frames while consumers hold more than `HIGH_WATER`
unread bytes, which pushes back on the connection itself.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

VERSION = 3

SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
CANCEL = 5
INTERNAL_ERROR = 6
FLOW_CONTROL_ERROR = 7

# GOAWAY status codes
GOAWAY_OK = 0
GOAWAY_PROTOCOL_ERROR = 1

SETTINGS_INITIAL_WINDOW_SIZE = 7

DEFAULT_WINDOW = 65536
#: DATA payloads we send are cut to this size (client-go copies with 32 KiB buffers)
MAX_DATA = 32768
#: largest frame we accept; the length field allows 16 MiB, nobody sends that much at once
MAX_FRAME = 1 << 20
#: largest decompressed header block
MAX_HEADER_BLOCK = 256 * 1024
#: unread bytes at which the session stops reading frames, and where it resumes
HIGH_WATER = 1 << 20
LOW_WATER = HIGH_WATER // 2

_DICTIONARY_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location",
    "content-md5", "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host",
    "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified",
    "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via",
    "warning", "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
    "public", "set-cookie", "keep-alive", "origin",
)
_DICTIONARY_TAIL = (
    b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    b"203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    b"403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    b"Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    b"chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    b"text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
#: the header compression dictionary of SPDY draft 3, section 2.6.10.1 (1,423 bytes)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICTIONARY_WORDS) + _DICTIONARY_TAIL


class ProtocolError(Exception):
    """The peer broke the framing; the session ends with GOAWAY(PROTOCOL_ERROR)."""


class StreamClosed(Exception):
    """A write on a stream that we closed or the peer reset."""


class ByteChannel(Protocol):
    """The transport under a session: an upgraded connection or a WebSocket tunnel."""

    async def read(self) -> bytes:
        """The next bytes, b"" once the peer is gone."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


# ---------------------------------------------------------------- frames


@dataclass(frozen=True)
class Frame:
    control: bool
    #: control frame type, 0 for DATA
    type: int
    flags: int
    #: DATA's stream; 0 for control frames (their stream ids live in the payload)
    stream_id: int
    payload: bytes


def control_frame(ftype: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, flags: int, data: bytes) -> bytes:
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + data


def encode_header_block(headers: Iterable[tuple[str, str]]) -> bytes:
    """Name/value pairs; repeated names become one NUL-joined value, names are lower-case."""
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        merged.setdefault(name.lower(), []).append(value)
    out = [struct.pack(">I", len(merged))]
    for name, values in merged.items():
        n, v = name.encode(), "\0".join(values).encode()
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


def decode_header_block(block: bytes) -> dict[str, list[str]]:
    try:
        (count,) = struct.unpack_from(">I", block)
        pos = 4
        out: dict[str, list[str]] = {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", block, pos)
            name = block[pos + 4:pos + 4 + n].decode().lower()
            pos += 4 + n
            (n,) = struct.unpack_from(">I", block, pos)
            value = block[pos + 4:pos + 4 + n].decode()
            pos += 4 + n
            out.setdefault(name, []).extend(value.split("\0"))
    except (struct.error, UnicodeDecodeError) as e:
        raise ProtocolError(f"malformed header block: {e}") from None
    if pos != len(block):
        raise ProtocolError("malformed header block: trailing bytes")
    return out


class HeaderCompressor:
    def __init__(self) -> None:
        self._z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                   DICTIONARY)

    def compress(self, block: bytes) -> bytes:
        return self._z.compress(block) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(zdict=DICTIONARY)

    def decompress(self, data: bytes) -> bytes:
        try:
            out = self._z.decompress(data, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise ProtocolError(f"header block does not decompress: {e}") from None
        if self._z.unconsumed_tail:
            raise ProtocolError("header block too large")
        return out


class FrameReader:
    """Cuts frames out of a byte channel, whatever the read boundaries (a
    WebSocket tunnel splits frames arbitrarily)."""

    def __init__(self, channel: ByteChannel) -> None:
        self._channel = channel
        self._buf = bytearray()

    async def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = await self._channel.read()
            if not chunk:
                return False
            self._buf += chunk
        return True

    async def next(self) -> Frame | None:
        """The next frame, None at a clean end of the channel."""
        if not await self._fill(8):
            if self._buf:
                raise ProtocolError("connection ended inside a frame")
            return None
        first, second = struct.unpack_from(">II", self._buf)
        flags, length = second >> 24, second & 0xFFFFFF
        if length > MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes is too large")
        if not await self._fill(8 + length):
            raise ProtocolError("connection ended inside a frame")
        payload = bytes(self._buf[8:8 + length])
        del self._buf[:8 + length]
        if first & 0x80000000:
            version = (first >> 16) & 0x7FFF
            if version != VERSION:
                raise ProtocolError(f"unsupported SPDY version {version}")
            return Frame(True, first & 0xFFFF, flags, 0, payload)
        return Frame(False, 0, flags, first & 0x7FFFFFFF, payload)


# ---------------------------------------------------------------- streams


class Stream:
    """One client-initiated stream. Reads return b"" once the peer finished
    (FIN) or reset the stream."""

    def __init__(self, session: Session, stream_id: int, headers: dict[str, list[str]], fin: bool,
                 unidirectional: bool) -> None:
        self.id = stream_id
        self.headers = headers
        self._session = session
        self._chunks: deque[bytes] = deque()
        self._readable = asyncio.Event()
        self.remote_closed = fin
        self.local_closed = unidirectional
        self.was_reset = False
        self.send_window = session.initial_send_window
        self._unacked = 0
        if fin:
            self._readable.set()

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    # ------------------------------------------------------------------ reading

    def _deliver(self, data: bytes, fin: bool) -> None:
        if data and not self.remote_closed:
            self._chunks.append(data)
            self._session.buffered(len(data))
        if fin:
            self.remote_closed = True
        self._readable.set()

    def _abort(self) -> None:
        self.was_reset = True
        self.remote_closed = self.local_closed = True
        self._session.buffered(-sum(len(c) for c in self._chunks))
        self._chunks.clear()
        self._readable.set()

    async def read(self) -> bytes:
        while not self._chunks:
            if self.remote_closed:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = self._chunks.popleft()
        self._session.buffered(-len(data))
        self._unacked += len(data)
        if self._unacked >= DEFAULT_WINDOW // 2 and not self.remote_closed:
            delta, self._unacked = self._unacked, 0
            await self._session.window_update(self.id, delta)
        await self._session.consumed(len(data))
        return data

    # ------------------------------------------------------------------ writing

    async def reply(self, headers: Iterable[tuple[str, str]] = ()) -> None:
        await self._session.send_headers(SYN_REPLY, self.id, headers)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.local_closed:
                raise StreamClosed(f"stream {self.id} is closed")
            n = await self._session.reserve(self, min(len(view), MAX_DATA))
            if self.local_closed:
                raise StreamClosed(f"stream {self.id} is closed")
            await self._session.send(data_frame(self.id, 0, bytes(view[:n])))
            view = view[n:]

    async def close(self) -> None:
        """Half-close: FIN, no more data from us."""
        if self.local_closed:
            return
        self.local_closed = True
        self._session._forget_if_done(self)
        await self._session.send(data_frame(self.id, FLAG_FIN, b""))

    async def reset(self, status: int = CANCEL) -> None:
        if self.was_reset:
            return
        self._abort()
        self._session.forget(self)
        await self._session.send(control_frame(RST_STREAM, 0, struct.pack(">II", self.id, status)))


# ---------------------------------------------------------------- session


class Session:
    """The server end of a SPDY/3.1 session. After `start()` a task reads
    frames until the peer leaves; `accept()` hands out the streams it opens."""

    def __init__(self, channel: ByteChannel) -> None:
        self._channel = channel
        self._frames = FrameReader(channel)
        self._deflate = HeaderCompressor()
        self._inflate = HeaderDecompressor()
        self._write_lock = asyncio.Lock()
        self._streams: dict[int, Stream] = {}
        self._incoming: asyncio.Queue[Stream | None] = asyncio.Queue()
        self._last_peer_stream = 0
        self._goaway_sent = False
        self.initial_send_window = DEFAULT_WINDOW
        self._send_window = DEFAULT_WINDOW
        self._window_open = asyncio.Event()
        self._peer_flow_control = False
        self._unacked = 0
        self._buffered = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._ended = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.create_task(self._serve(), name="spdy-session")

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def wait_ended(self) -> None:
        await self._ended.wait()

    async def accept(self) -> Stream | None:
        """The next stream the peer opened, None once the session ended."""
        stream = await self._incoming.get()
        if stream is None:
            self._incoming.put_nowait(None)
        return stream

    async def close(self, linger: float = 2.0) -> None:
        """GOAWAY, then wait (up to `linger` s) for the peer to hang up before
        closing: closing a socket with unread input makes the kernel send RST,
        and an RST can destroy replies the peer has not read yet."""
        try:
            await self.goaway(GOAWAY_OK)
        except (ConnectionError, RuntimeError):
            pass
        try:
            await asyncio.wait_for(self._ended.wait(), linger)
        except TimeoutError:
            pass
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._end()
        await self._channel.close()

    async def goaway(self, status: int) -> None:
        if self._goaway_sent:
            return
        self._goaway_sent = True
        await self.send(control_frame(GOAWAY, 0, struct.pack(">II", self._last_peer_stream, status)))

    def _end(self) -> None:
        if self._ended.is_set():
            return
        self._ended.set()
        for s in list(self._streams.values()):
            s._abort()
        self._streams.clear()
        self._incoming.put_nowait(None)
        self._window_open.set()
        self._drained.set()

    async def _serve(self) -> None:
        try:
            while True:
                await self._drained.wait()
                frame = await self._frames.next()
                if frame is None:
                    break
                await self._dispatch(frame)
        except ProtocolError as e:
            log.info("SPDY protocol error: %s", e)
            try:
                await self.goaway(GOAWAY_PROTOCOL_ERROR)
            except (ConnectionError, RuntimeError):
                pass
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self._end()

    # ------------------------------------------------------------------ sending

    async def send(self, frame: bytes) -> None:
        async with self._write_lock:
            await self._channel.write(frame)

    async def send_headers(self, ftype: int, stream_id: int, headers: Iterable[tuple[str, str]]) -> None:
        block = encode_header_block(headers)
        # compress under the lock: the peer decompresses blocks in the order they arrive
        async with self._write_lock:
            payload = struct.pack(">I", stream_id) + self._deflate.compress(block)
            await self._channel.write(control_frame(ftype, 0, payload))

    async def window_update(self, stream_id: int, delta: int) -> None:
        await self.send(control_frame(WINDOW_UPDATE, 0, struct.pack(">II", stream_id, delta)))

    async def reserve(self, stream: Stream, want: int) -> int:
        """How many of `want` bytes `stream` may send now, waiting for window
        if the peer does flow control."""
        while self._peer_flow_control and not stream.local_closed and not self._ended.is_set() \
                and (stream.send_window <= 0 or self._send_window <= 0):
            self._window_open.clear()
            await self._window_open.wait()
        n = want
        if self._peer_flow_control:
            n = max(1, min(want, stream.send_window, self._send_window))
        stream.send_window -= n
        self._send_window -= n
        return n

    # ------------------------------------------------------------------ receive accounting

    def buffered(self, delta: int) -> None:
        self._buffered += delta
        if self._buffered >= HIGH_WATER:
            self._drained.clear()
        elif self._buffered <= LOW_WATER:
            self._drained.set()

    async def consumed(self, n: int) -> None:
        self._unacked += n
        if self._unacked >= DEFAULT_WINDOW // 2 and not self._ended.is_set():
            delta, self._unacked = self._unacked, 0
            await self.window_update(0, delta)

    # ------------------------------------------------------------------ dispatch

    async def _dispatch(self, f: Frame) -> None:
        if not f.control:
            stream = self._streams.get(f.stream_id)
            if stream is not None:
                stream._deliver(f.payload, bool(f.flags & FLAG_FIN))
                self._forget_if_done(stream)
            return
        p = f.payload
        if f.type == SYN_STREAM:
            await self._syn_stream(f)
        elif f.type in (SYN_REPLY, HEADERS):
            if len(p) < 4:
                raise ProtocolError("short header frame")
            self._inflate.decompress(p[4:])  # keeps the shared zlib context in step
            stream = self._streams.get(struct.unpack_from(">I", p)[0] & 0x7FFFFFFF)
            if stream is not None and f.flags & FLAG_FIN:
                stream._deliver(b"", True)
                self._forget_if_done(stream)
        elif f.type == RST_STREAM:
            if len(p) != 8:
                raise ProtocolError("RST_STREAM of the wrong size")
            stream = self._streams.pop(struct.unpack_from(">I", p)[0] & 0x7FFFFFFF, None)
            if stream is not None:
                stream._abort()
                self._window_open.set()
        elif f.type == SETTINGS:
            self._settings(p)
        elif f.type == PING:
            if len(p) != 4:
                raise ProtocolError("PING of the wrong size")
            if struct.unpack_from(">I", p)[0] % 2 == 1:  # the client's pings are odd; ours would be even
                await self.send(control_frame(PING, 0, p))
        elif f.type == WINDOW_UPDATE:
            if len(p) != 8:
                raise ProtocolError("WINDOW_UPDATE of the wrong size")
            sid, delta = struct.unpack_from(">II", p)
            sid, delta = sid & 0x7FFFFFFF, delta & 0x7FFFFFFF
            self._peer_flow_control = True
            if sid == 0:
                self._send_window += delta
            elif sid in self._streams:
                self._streams[sid].send_window += delta
            self._window_open.set()
        # GOAWAY only promises no new streams from the peer; it and unknown types need nothing

    async def _syn_stream(self, f: Frame) -> None:
        p = f.payload
        if len(p) < 10:
            raise ProtocolError("short SYN_STREAM")
        sid = struct.unpack_from(">I", p)[0] & 0x7FFFFFFF
        headers = decode_header_block(self._inflate.decompress(p[10:]))
        if sid % 2 == 0 or sid <= self._last_peer_stream:
            await self.send(control_frame(RST_STREAM, 0, struct.pack(">II", sid, PROTOCOL_ERROR)))
            return
        self._last_peer_stream = sid
        if self._goaway_sent:
            await self.send(control_frame(RST_STREAM, 0, struct.pack(">II", sid, REFUSED_STREAM)))
            return
        stream = Stream(self, sid, headers, bool(f.flags & FLAG_FIN), bool(f.flags & FLAG_UNIDIRECTIONAL))
        self._streams[sid] = stream
        self._incoming.put_nowait(stream)

    def _settings(self, p: bytes) -> None:
        if len(p) < 4:
            raise ProtocolError("short SETTINGS")
        (count,) = struct.unpack_from(">I", p)
        if len(p) != 4 + 8 * count:
            raise ProtocolError("SETTINGS of the wrong size")
        for i in range(count):
            ident, value = struct.unpack_from(">II", p, 4 + 8 * i)
            if ident & 0xFFFFFF == SETTINGS_INITIAL_WINDOW_SIZE:
                delta = value - self.initial_send_window
                self.initial_send_window = value
                for s in self._streams.values():
                    s.send_window += delta
                self._peer_flow_control = True
                self._window_open.set()

    def _forget_if_done(self, stream: Stream) -> None:
        if stream.remote_closed and stream.local_closed:
            self._streams.pop(stream.id, None)

    def forget(self, stream: Stream) -> None:
        """Drop a stream both sides finished with (late frames for it are ignored)."""
        self._streams.pop(stream.id, None)
