"""A shorter way in for SRTP packets: from the socket straight to aiortc's handlers.

How aiortc 1.16 / aioice 0.13 receive a media packet: the socket's
``StunProtocol.datagram_received`` first tries to parse it as STUN (an RTP packet
fails with ``ValueError``), then ``Connection.data_received`` puts it on an
``asyncio.Queue``; the DTLS transport's receive task, woken on the *next* turn of
the event loop, gets it through four awaits (``RTCDtlsTransport._recv_next``,
``RTCIceTransport._recv``, ``Connection.recv``, ``recvfrom``), counts it,
decrypts it (SRTP) and awaits ``_handle_rtp_data`` / ``_handle_rtcp_data``, which
do all the rest (the receiver's statistics, REMB, NACK; the relay's forwarding;
senders' NACK and keyframe handling) without ever waiting on anything.

:func:`install` shortens that for one peer connection, on the instances only:

- each of the ICE connection's sockets hands anything whose first byte is not a
  STUN one (RFC 7983: 0-3) to the connection at once, without the exception;
- the connection hands SRTP and SRTCP (first byte 128-191) to :func:`receive_srtp`
  on the spot, once DTLS has set up the keys: the same counting, decryption and
  handlers as ``_recv_next``, in the same order, run to completion inline by
  :func:`run_inline` (no queue, no task wake-up, one turn of the event loop per
  packet instead of two). Anything else (STUN checks, DTLS, SCTP data channels,
  and SRTP before the keys exist) takes aiortc's own way, unchanged.

The way out is shortened the same way: :func:`rtp_sender` gives a subscriber's
forwarding (``EncodedTrack.forward``) a plain function doing what
``RTCDtlsTransport._send_rtp`` and aioice's ``Connection.sendto`` do for an RTP
packet (SRTP, then the selected pair's socket, or its TURN allocation) without
their three awaits.

And the publisher's bandwidth estimate (REMB, ``aiortc.rate``), which aiortc
updates for every video packet, keeps its algorithm with two of its parts
reworked (:func:`speed_up_estimator`): the incoming-bitrate window forgets old
packets one by one instead of one millisecond bucket at a time (about a
thousand Python iterations a second), and the shortest frame period of the
last 60 comes from ``min`` instead of a loop. A test feeds both the stock and
the reworked estimator the same packets and compares every estimate.

Where a handler does wait on something (not in aiortc 1.16's media paths),
:func:`run_inline` finishes it as a task would, so it is never lost; packets after
it are not held back for it (RTP tolerates reordering). An error in a handler is
logged and the packet dropped, where aiortc would have stopped the transport's
receive task, and with it the whole connection.

Measured with ``bench/relay_bench.py`` (figures in the README): the relay's CPU
for one 480p publisher forwarded to one subscriber.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging
import struct
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import pylibsrtp
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.rate import (
    MIN_FRAME_PERIOD_HISTORY_LENGTH,
    OveruseEstimator,
    RateCounter,
    RemoteBitrateEstimator,
)
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, is_rtcp, pack_header_extensions
from pylibsrtp import _srtp_assert
from pylibsrtp._binding import ffi as _ffi
from pylibsrtp._binding import lib as _srtp_lib

logger = logging.getLogger(__name__)

_RX_BYTES = "_RTCDtlsTransport__rx_bytes"
_RX_PACKETS = "_RTCDtlsTransport__rx_packets"
_TX_BYTES = "_RTCDtlsTransport__tx_bytes"
_TX_PACKETS = "_RTCDtlsTransport__tx_packets"
_ESTIMATOR = "_RTCRtpReceiver__remote_bitrate_estimator"
#: Seconds from the NTP epoch (1900) to the Unix epoch: aiortc's ``clock.current_ms``
#: counts milliseconds since 1900, from ``datetime.now``; this is the same clock.
_NTP_UNIX_OFFSET = 2208988800
#: An attribute a receiver may carry (see :func:`set_rtp_handler`).
RTP_HANDLER = "_relay_rtp_handler"
#: Log a handler's error once, then once per this many more.
_ERROR_LOG_EVERY = 1000


class FastPathError(RuntimeError):
    """aiortc's or aioice's internals are not what this module was written for."""


def ntp_ms() -> int:
    """aiortc's ``clock.current_ms()`` (ms since 1900) without building datetimes."""
    return int((time.time() + _NTP_UNIX_OFFSET) * 1000)


def ntp_time() -> int:
    """aiortc's ``clock.current_ntp_time()`` (64-bit NTP: seconds since 1900 and a
    32-bit fraction), to the microsecond as aiortc's, without building datetimes."""
    micros = time.time_ns() // 1000 + _NTP_UNIX_OFFSET * 1_000_000
    seconds, micro = divmod(micros, 1_000_000)
    return (seconds << 32) | (micro << 32) // 1_000_000


def run_inline(coro: Coroutine[Any, Any, Any]) -> None:
    """Run ``coro`` now, on this call's stack; if it waits on a future, finish it
    from that future's callback (as ``asyncio.Task`` would, without cancellation)."""
    try:
        awaited = coro.send(None)
    except StopIteration:
        return
    _Continuation(coro, awaited)


class _Continuation:
    """Drives a coroutine that :func:`run_inline` could not finish on the spot."""

    __slots__ = ("coro",)

    def __init__(self, coro: Coroutine[Any, Any, Any], awaited: Any) -> None:
        self.coro = coro
        self._wait(awaited)

    def _wait(self, awaited: Any) -> None:
        if awaited is None:  # a bare yield (asyncio.sleep(0)): go round the loop once
            asyncio.get_running_loop().call_soon(self._step)
        elif getattr(awaited, "_asyncio_future_blocking", False):
            awaited._asyncio_future_blocking = False
            awaited.add_done_callback(self._step)
        else:  # not an asyncio future: nothing would ever wake it
            self.coro.close()
            logger.error("relay receive handler waited on %r; dropped", awaited)

    def _step(self, _future: Any = None) -> None:
        try:
            awaited = self.coro.send(None)
        except StopIteration:
            return
        except Exception:
            logger.exception("relay receive handler failed")
            return
        self._wait(awaited)


class SrtpReceiver:
    """The inline half of ``RTCDtlsTransport._recv_next`` for one DTLS transport.

    It holds the transport and its connection weakly: aioice frees a closed
    connection by reference counting alone (``close()`` breaks its one cycle),
    and the hooks installed on it must not make it wait for the collector."""

    __slots__ = ("_connection", "_dtls", "_srtp", "errors", "packets")

    def __init__(self, dtls: RTCDtlsTransport, connection: Any) -> None:
        self._dtls = weakref.ref(dtls)
        self._connection = weakref.ref(connection)
        self._srtp: SrtpSession | None = None
        self.packets = 0
        self.errors = 0

    def data_received(self, data: bytes, component: int) -> None:
        """Stands in for ``Connection.data_received`` (set on the instance)."""
        connection = self._connection()
        if connection is None:
            return
        dtls = self._dtls()
        if (
            data
            and 127 < data[0] < 192
            and dtls is not None
            and dtls._rx_srtp is not None
            and dtls._state is State.CONNECTED
            and dtls._task is not None  # its receive task runs: not stopped
            and connection._nominated  # aioice's recvfrom would refuse it otherwise
        ):
            self.receive(dtls, data)
        else:
            type(connection).data_received(connection, data, component)

    def receive(self, dtls: RTCDtlsTransport, data: bytes) -> None:
        counts = dtls.__dict__
        counts[_RX_BYTES] += len(data)
        counts[_RX_PACKETS] += 1
        self.packets += 1
        try:
            if is_rtcp(data):
                coro = dtls._handle_rtcp_data(dtls._rx_srtp.unprotect_rtcp(data))
            else:
                arrival = ntp_ms()
                srtp = self._srtp
                if srtp is None or srtp.session is not dtls._rx_srtp:
                    srtp = self._srtp = srtp_session(dtls._rx_srtp)
                plain = srtp.unprotect(data)
                # a receiver that forwards its packets may take them itself
                receiver = dtls._rtp_router.ssrc_table.get(int.from_bytes(plain[8:12], "big"))
                handler = getattr(receiver, RTP_HANDLER, None)
                if handler is not None and handler(plain, arrival):
                    return
                coro = dtls._handle_rtp_data(plain, arrival_time_ms=arrival)
            run_inline(coro)
        except pylibsrtp.Error:  # replayed, forged or damaged: aiortc drops it too
            return
        except Exception:
            self.errors += 1
            if self.errors % _ERROR_LOG_EVERY == 1:
                logger.exception("relay receive handler failed (%d so far)", self.errors)


class _StunSkip:
    """``StunProtocol.datagram_received`` for one socket (set on the instance): only
    packets that can be STUN (first byte 0-3) go through aioice's parser."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any) -> None:
        self._protocol = weakref.ref(protocol)

    def __call__(self, data: bytes, addr: tuple[Any, ...]) -> None:
        protocol = self._protocol()
        if protocol is None:
            return
        if data and data[0] > 3:
            protocol.receiver.data_received(data, protocol.local_candidate.component)
        else:
            type(protocol).datagram_received(protocol, data, addr)


def set_rtp_handler(receiver: RTCRtpReceiver, handler: Callable[[bytes, int], bool] | None) -> None:
    """Let ``handler(packet, arrival_time_ms)`` take the decrypted RTP packets routed to
    ``receiver`` (by SSRC, once aiortc has routed one) on the inline path, before
    aiortc's ``_handle_rtp_data``; it returns False to leave a packet to aiortc.
    None removes it."""
    if handler is None:
        receiver.__dict__.pop(RTP_HANDLER, None)
    else:
        setattr(receiver, RTP_HANDLER, handler)


def _check(dtls: Any) -> None:
    ice = getattr(dtls, "transport", None)
    connection = getattr(ice, "_connection", None)
    if connection is None or not hasattr(connection, "_protocols"):
        raise FastPathError("aiortc's RTCIceTransport has no aioice connection")
    if not isinstance(getattr(connection, "_nominated", None), dict):
        raise FastPathError("aioice's Connection has no _nominated pairs")
    if not isinstance(getattr(getattr(dtls, "_rtp_router", None), "ssrc_table", None), dict):
        raise FastPathError("aiortc's RTCDtlsTransport has no RTP router's SSRC table")
    for name in (_RX_BYTES, _RX_PACKETS, "_rx_srtp", "_state", "_task"):
        if not hasattr(dtls, name):
            raise FastPathError(f"aiortc's RTCDtlsTransport has no {name}")
    for name in ("_handle_rtp_data", "_handle_rtcp_data"):
        if not asyncio.iscoroutinefunction(getattr(dtls, name, None)):
            raise FastPathError(f"aiortc's RTCDtlsTransport.{name} is not a coroutine")


def install_transport(dtls: RTCDtlsTransport) -> SrtpReceiver | None:
    """Shorten the receive path of one DTLS transport's ICE connection (once)."""
    _check(dtls)
    connection = dtls.transport._connection
    if isinstance(getattr(connection.data_received, "__self__", None), SrtpReceiver):
        return None  # installed already
    srtp = SrtpReceiver(dtls, connection)
    connection.data_received = srtp.data_received
    for protocol in connection._protocols:
        protocol.datagram_received = _StunSkip(protocol)
    return srtp


# --------------------------------------------------------------------------- RTP in


class InboundRtp:
    """A publisher's RTP packet as the short way in needs it: the fields of aiortc's
    ``RtpPacket`` that its statistics, NACK generator and our forwarding read, with
    the abs-send-time and audio-level header extensions (``extensions`` is the
    packet itself, so ``packet.extensions.audio_level`` reads as on aiortc's)."""

    __slots__ = (
        "_data",
        "abs_send_time",
        "audio_level",
        "marker",
        "padding_size",
        "payload",
        "payload_type",
        "sequence_number",
        "ssrc",
        "timestamp",
    )

    @property
    def extensions(self) -> InboundRtp:
        return self


def parse_rtp(data: bytes, extensions_map: HeaderExtensionsMap) -> InboundRtp | None:
    """``RtpPacket.parse`` for the common packet: no CSRC, no padding, header
    extensions in the one-byte form (or none). None for anything else, and for
    whatever aiortc's parse would refuse: such packets go aiortc's way. Tests
    compare the fields with aiortc's parse on random and damaged packets."""
    size = len(data)
    if size < 12:
        return None
    first = data[0]
    if first & 0xEF != 0x80:  # version 2, no padding, no CSRC (X may be set)
        return None
    packet = InboundRtp()
    second, packet.sequence_number, packet.timestamp, packet.ssrc = _RTP_FIELDS.unpack_from(data, 1)
    packet.marker = second >> 7
    packet.payload_type = second & 0x7F
    packet.padding_size = 0
    packet.abs_send_time = packet.audio_level = None
    if not first & 0x10:
        packet.payload = data[12:]
        return packet
    if size < 16:
        return None
    profile, words = _EXTENSION_HEADER.unpack_from(data, 12)
    end = 16 + 4 * words
    if profile != 0xBEDE or size < end:
        return None
    ids = extensions_map._HeaderExtensionsMap__ids  # type: ignore[attr-defined]
    at = 16
    while at < end:  # as aiortc's unpack_header_extensions and HeaderExtensionsMap.get
        byte = data[at]
        if not byte:  # padding
            at += 1
            continue
        x_id, length = byte >> 4, (byte & 0x0F) + 1
        at += 1
        if at + length > end:
            return None
        if x_id == ids.mid or x_id == ids.repaired_rtp_stream_id or x_id == ids.rtp_stream_id:
            try:  # not needed here, but aiortc refuses a packet that does not decode
                data[at : at + length].decode("utf8" if x_id == ids.mid else "ascii")
            except UnicodeDecodeError:
                return None
        elif x_id == ids.abs_send_time:
            if length != 3:
                return None
            packet.abs_send_time = int.from_bytes(data[at : at + 3], "big")
        elif x_id == ids.transmission_offset:
            if length != 3:
                return None
        elif x_id == ids.audio_level:
            if length != 1:
                return None
            level = data[at]
            packet.audio_level = (level & 0x80 == 0x80, level & 0x7F)
        elif x_id == ids.transport_sequence_number and length != 2:
            return None
        at += length
    packet.payload = data[end:]
    return packet


_RTP_FIELDS = struct.Struct("!BHLL")


# --------------------------------------------------------------------------- SRTP


class SrtpSession:
    """``pylibsrtp.Session.protect`` / ``unprotect`` (1.0) without the per-call
    allocation and checks of its ``__process``: the same libsrtp calls on the
    session's own buffer, the same ``pylibsrtp.Error`` on failure."""

    __slots__ = ("_buffer", "_cdata", "_length", "_srtp", "session")

    def __init__(self, session: pylibsrtp.Session) -> None:
        self.session = session
        self._srtp = session._srtp[0]
        self._cdata = session._cdata
        self._buffer = session._buffer
        self._length = _ffi.new("int *")

    def protect(self, data: bytes) -> bytes:
        return self._process(data, _srtp_protect, _PROTECT_TRAILER)

    def unprotect(self, data: bytes) -> bytes:
        return self._process(data, _srtp_unprotect, 0)

    def _process(self, data: bytes, call: Any, trailer: int) -> bytes:
        size = len(data)
        if size > _SRTP_BUFFER - trailer:
            raise ValueError("packet is too long")
        length = self._length
        length[0] = size
        buffer = self._buffer
        buffer[0:size] = data
        status = call(self._srtp, self._cdata, length)
        if status:
            _srtp_assert(status)
        return buffer[0 : length[0]]


class _OwnSession:
    """A session used through pylibsrtp's own methods (where :class:`SrtpSession`
    does not fit the installed pylibsrtp)."""

    __slots__ = ("protect", "session", "unprotect")

    def __init__(self, session: pylibsrtp.Session) -> None:
        self.session = session
        self.protect = session.protect
        self.unprotect = session.unprotect


def srtp_session(session: pylibsrtp.Session) -> SrtpSession | _OwnSession:
    """The quicker way to ``session``'s protect and unprotect, where it fits."""
    return SrtpSession(session) if _SRTP_FITS else _OwnSession(session)


def _srtp_fits() -> bool:
    session = pylibsrtp.Session()
    fits = (
        all(hasattr(session, name) for name in ("_srtp", "_cdata", "_buffer"))
        and len(session._cdata) == _SRTP_BUFFER
        and _SRTP_OK == 0
    )
    if not fits:
        logger.warning(
            "relay: pylibsrtp %s is not 1.0's; its own methods are used", pylibsrtp.__version__
        )
    return fits


_srtp_protect = _srtp_lib.srtp_protect
_srtp_unprotect = _srtp_lib.srtp_unprotect
_SRTP_OK = _srtp_lib.srtp_err_status_ok
_SRTP_BUFFER = 1500
_PROTECT_TRAILER = pylibsrtp.SRTP_MAX_TRAILER_LEN
_SRTP_FITS = _srtp_fits()


# --------------------------------------------------------------------------- way out


def rtp_sender(dtls: Any) -> Callable[[bytes], None] | None:
    """A function sending one RTP packet on ``dtls`` as ``_send_rtp`` would (SRTP,
    then the ICE connection's selected pair); it raises ``ConnectionError`` while
    not connected, as ``_send_rtp`` does. None if ``dtls`` is not an aiortc
    DTLS transport over an aioice connection (a test's stand-in, another aiortc)."""
    connection = getattr(getattr(dtls, "transport", None), "_connection", None)
    if not isinstance(dtls, RTCDtlsTransport) or not hasattr(connection, "_nominated"):
        return None
    for name in (_TX_BYTES, _TX_PACKETS, "_tx_srtp", "_state"):
        if not hasattr(dtls, name):
            return None
    nominated = connection._nominated
    counts = dtls.__dict__
    # the selected pair's socket and address, and the SRTP session, made once each
    route: list[Any] = [None, None, None]  # pair, transport's sendto, address
    srtp: list[Any] = [None]

    def send(data: bytes) -> None:
        if dtls._state is not State.CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        pair = nominated.get(1)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")
        session = srtp[0]
        if session is None or session.session is not dtls._tx_srtp:
            session = srtp[0] = srtp_session(dtls._tx_srtp)
        data = session.protect(data)
        if route[0] is not pair:
            # what StunProtocol.send_data does (its transport is the socket's, or a
            # TurnTransport wrapping the packet for the TURN server)
            route[:] = [pair, pair.protocol.transport.sendto, pair.remote_addr]
        route[1](data, route[2])
        counts[_TX_BYTES] += len(data)
        counts[_TX_PACKETS] += 1

    return send


class RtpWriter:
    """``RtpPacket.serialize`` for the packets one sender forwards, same bytes, faster.

    A forwarded packet carries no CSRC and no padding, and at most the MID,
    abs-send-time and audio-level header extensions. Their layout depends only on
    the sender's negotiated extension IDs (``HeaderExtensionsMap``), the MID and
    whether the packet has an audio level, so it is made once by aiortc's own
    ``pack_header_extensions`` (RFC 8285 one- or two-byte form, padding) and each
    packet only writes its two varying values into a copy. Tests compare the
    bytes with aiortc's for every form."""

    __slots__ = ("_ids", "_layouts")

    def __init__(self, extensions_map: HeaderExtensionsMap) -> None:
        ids = getattr(extensions_map, "_HeaderExtensionsMap__ids", None)
        if not isinstance(ids, HeaderExtensions):
            raise FastPathError("aiortc's HeaderExtensionsMap keeps no IDs")
        self._ids = ids  # configure() updates it in place
        self._layouts: dict[tuple[Any, ...], tuple[bytes, int, int]] = {}

    def header(
        self,
        marker: int,
        payload_type: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
        mid: str | None,
        abs_send_time: int,
        audio_level: tuple[bool, int] | None,
    ) -> bytes:
        """The fixed header and the header extensions of the packet: the payload
        follows them."""
        ids = self._ids
        key = (ids.mid, ids.abs_send_time, ids.audio_level, mid, audio_level is not None)
        layout = self._layouts.get(key)
        if layout is None:
            layout = self._layouts[key] = self._layout(key)
        template, abs_at, level_at = layout
        head = _RTP_HEADER.pack(
            0x90 if template else 0x80,
            (marker << 7) | payload_type,
            sequence_number,
            timestamp,
            ssrc,
        )
        if not template:
            return head
        extension = bytearray(template)
        if abs_at:
            extension[abs_at : abs_at + 3] = (abs_send_time & 0xFFFFFF).to_bytes(3, "big")
        if level_at:
            extension[level_at] = (0x80 if audio_level[0] else 0) | (audio_level[1] & 0x7F)  # type: ignore[index]
        return head + extension

    @staticmethod
    def _layout(key: tuple[Any, ...]) -> tuple[bytes, int, int]:
        """(the extension block with zeros for the values, where abs-send-time's
        3 bytes start, where the audio level's byte is; 0 = absent)."""
        mid_id, abs_id, level_id, mid, has_level = key
        elements: list[tuple[int, bytes]] = []
        if mid is not None and mid_id:  # aiortc's order (HeaderExtensionsMap.set)
            elements.append((mid_id, mid.encode("utf8")))
        if abs_id:
            elements.append((abs_id, b"\x00\x00\x00"))
        if has_level and level_id:
            elements.append((level_id, b"\x00"))
        profile, value = pack_header_extensions(elements)
        if not value:
            return b"", 0, 0
        element_header = 1 if profile == 0xBEDE else 2
        at, abs_at, level_at = 4, 0, 0  # past the profile and length words
        for x_id, x_value in elements:
            at += element_header
            if x_id == abs_id and not abs_at and len(x_value) == 3:
                abs_at = at
            elif x_id == level_id and len(x_value) == 1:
                level_at = at
            at += len(x_value)
        return _EXTENSION_HEADER.pack(profile, len(value) >> 2) + value, abs_at, level_at


_RTP_HEADER = struct.Struct("!BBHLL")
_EXTENSION_HEADER = struct.Struct("!HH")


# --------------------------------------------------------------------------- REMB


class WindowRateCounter(RateCounter):
    """aiortc's ``RateCounter`` (bytes in the last ``window_size`` ms, in bits per
    second) keeping the packets of its window instead of one bucket per
    millisecond: forgetting costs one step per packet, not per ms.

    Each packet is kept under the millisecond of aiortc's bucket it would land in
    (``origin + (now - origin) % window``: its arrival time, except when the
    clock went back, where aiortc's ring wraps it to the far end of the window),
    in order, so the same packets are forgotten at the same moments."""

    def __init__(self, window_size: int, scale: int = 8000) -> None:
        self._scale = scale
        self._window_size = window_size
        self.reset()

    def reset(self) -> None:
        self._packets: collections.deque[tuple[int, int]] = collections.deque()
        self._origin_ms: int | None = None
        self._count = 0
        self._value = 0

    def add(self, value: int, now_ms: int) -> None:
        if self._origin_ms is None:
            self._origin_ms = now_ms
        else:
            self._erase_old(now_ms)
        origin = self._origin_ms
        bucket_ms = origin + (now_ms - origin) % self._window_size
        packets = self._packets
        if packets and bucket_ms < packets[-1][0]:  # the clock went back
            packets.insert(bisect.bisect_right(packets, bucket_ms, key=_first), (bucket_ms, value))
        else:
            packets.append((bucket_ms, value))
        self._count += 1
        self._value += value

    def rate(self, now_ms: int) -> int | None:
        if self._origin_ms is not None:
            self._erase_old(now_ms)
            active_window_size = now_ms - self._origin_ms + 1
            if self._count > 0 and active_window_size > 1:
                return round(self._scale * self._value / active_window_size)
        return None

    def _erase_old(self, now_ms: int) -> None:
        new_origin_ms = now_ms - self._window_size + 1
        if self._origin_ms is not None and self._origin_ms < new_origin_ms:
            self._origin_ms = new_origin_ms
            packets = self._packets
            while packets and packets[0][0] < new_origin_ms:
                self._value -= packets.popleft()[1]
                self._count -= 1


def _first(item: tuple[int, int]) -> int:
    return item[0]


def _min_frame_period(estimator: OveruseEstimator) -> Callable[[float], float]:
    """``OveruseEstimator.update_min_frame_period`` with ``min`` for its loop."""
    history = estimator.ts_delta_hist

    def update_min_frame_period(ts_delta: float) -> float:
        if len(history) >= MIN_FRAME_PERIOD_HISTORY_LENGTH:
            del history[0]
        shortest = min(history, default=ts_delta)
        history.append(ts_delta)
        return ts_delta if ts_delta < shortest else shortest

    return update_min_frame_period


def speed_up_estimator(estimator: RemoteBitrateEstimator) -> bool:
    """Rework a fresh (unused) estimator's two hot parts in place, same results."""
    inner = getattr(estimator, "estimator", None)
    counter = getattr(estimator, "incoming_bitrate", None)
    if (
        type(counter) is not RateCounter
        or counter._origin_ms is not None
        or not isinstance(inner, OveruseEstimator)
        or not isinstance(getattr(inner, "ts_delta_hist", None), list)
    ):
        return False
    estimator.incoming_bitrate = WindowRateCounter(counter._window_size, counter._scale)
    inner.update_min_frame_period = _min_frame_period(inner)  # type: ignore[method-assign]
    return True


# --------------------------------------------------------------------------- installing


def install(pc: RTCPeerConnection) -> list[SrtpReceiver]:
    """Shorten the receive path of a peer connection's transports, after
    ``setLocalDescription`` (its sockets exist once candidates are gathered).
    Returns the inline receivers (one per transport: one with BUNDLE)."""
    transports = {id(t.receiver.transport): t.receiver.transport for t in pc.getTransceivers()}
    sctp = pc.sctp
    if sctp is not None:
        transports[id(sctp.transport)] = sctp.transport
    installed = (install_transport(dtls) for dtls in transports.values())
    receivers = [srtp for srtp in installed if srtp is not None]
    for transceiver in pc.getTransceivers():
        speed_up_receiver(transceiver.receiver)
    return receivers


def speed_up_receiver(receiver: RTCRtpReceiver) -> bool:
    """The reworked REMB estimator for a receiver (video receivers have one)."""
    estimator = getattr(receiver, _ESTIMATOR, None)
    return isinstance(estimator, RemoteBitrateEstimator) and speed_up_estimator(estimator)
