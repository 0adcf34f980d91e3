"""Packet-level forwarding: sequence numbers and timestamps continue across keyframe
waits, source changes and pauses; keyframe starts are found in RTP payloads; the feed
forwards each packet as it comes, holds the screen behind its gate, resumes after a
loss beyond repair; a receiver's NACK is answered from the server's history."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtp import RtpPacket

from tests.helpers import Party
from tests.media_sources import vp8_clip
from tests.test_media_plane import connect
from vteller.media import Feed, MediaGate, native
from vteller.media.forward import Forwarder, PyRewriter
from vteller.media.passthrough import (
    AiortcInternalsChanged,
    route_retransmissions,
    rtx_ssrcs,
    starts_keyframe,
)
from vteller.media.relay import FeedTrack

SSRC_A, SSRC_B = 0x1111, 0x2222
REWRITERS = [PyRewriter] + ([native._built.Rewriter] if native.built() else [])


@pytest.fixture(params=REWRITERS, ids=lambda t: t.__module__.rsplit(".", 1)[-1])
def Rewriter(request):  # each test runs on both implementations
    return request.param


def test_a_stream_starts_at_a_keyframe_and_keeps_the_sources_numbering_gaps(Rewriter):
    r = Rewriter(90_000, needs_keyframe=True)
    assert r.map(SSRC_A, 100, 9000, False, 0.0) is None  # a delta frame
    assert r.waiting
    assert r.map(SSRC_A, 101, 12000, True, 0.0) == (101, 12000)  # a keyframe
    assert r.map(SSRC_A, 102, 12000, False, 0.0) == (102, 12000)
    assert r.map(SSRC_A, 105, 15000, False, 0.03) == (105, 15000)
    assert r.map(SSRC_A, 104, 12000, False, 0.04) == (104, 12000)  # late
    assert r.map(SSRC_A, 100, 9000, False, 0.04) is None  # before the start


def test_a_new_source_continues_the_numbering_at_its_keyframe(Rewriter):
    """The party reconnected: a new SSRC with its own numbering. Sequence numbers follow
    on from the last one sent; the timestamp moves on by the wall-clock time between."""
    r = Rewriter(90_000, needs_keyframe=True)
    assert r.map(SSRC_A, 65534, 4_294_960_000, True, 10.0) == (65534, 4_294_960_000)
    assert r.map(SSRC_A, 65535, 4_294_963_000, False, 10.033) == (65535, 4_294_963_000)
    assert r.map(SSRC_A, 0, 4_294_966_000, False, 10.066) == (0, 4_294_966_000)  # wraps
    assert r.map(SSRC_B, 7000, 500, False, 10.5) is None  # waits for the keyframe
    assert r.map(SSRC_A, 1, 3704, False, 10.5) is None  # the old source is done with
    # 0.5 s after the last packet sent (ts 4_294_966_000 at 10.066): 0.534 s * 90 kHz
    assert r.map(SSRC_B, 7001, 800, True, 10.6) == (1, (4_294_966_000 + 48_060) % 2**32)
    assert r.map(SSRC_B, 7002, 3800, False, 10.63) == (2, (4_294_966_000 + 51_060) % 2**32)


def test_audio_resumes_at_any_packet_after_a_pause(Rewriter):
    r = Rewriter(48_000, needs_keyframe=False)
    assert r.map(SSRC_A, 10, 960, False, 0.0) == (10, 960)
    r.pause()
    assert r.map(SSRC_A, 500, 100_000, False, 2.0) == (11, 960 + 96_000)


def test_the_segment_start_follows_a_long_stream(Rewriter):
    r = Rewriter(48_000, needs_keyframe=False)
    for seq in range(0, 3 * 65536, 7):  # three wraps of the 16-bit sequence number
        assert r.map(SSRC_A, seq % 65536, seq * 960 % 2**32, False, seq / 50) == (
            seq % 65536, seq * 960 % 2**32)


def _vp8_packets(frame: bytes, picture_id: int) -> list[bytes]:
    return Vp8Encoder._packetize(frame, picture_id)


def test_keyframe_starts_are_found_in_rtp_payloads():
    clip = vp8_clip()
    key, delta = _vp8_packets(clip[0], 5), _vp8_packets(clip[1], 6)
    assert len(key) > 1
    assert [starts_keyframe("vp8", p) for p in key] == [True] + [False] * (len(key) - 1)
    assert [starts_keyframe("vp8", p) for p in delta] == [False] * len(delta)
    # a 15-bit picture id (0x80 flag) shifts the payload header by one byte
    long_id = _vp8_packets(clip[0], 1000)
    assert starts_keyframe("vp8", long_id[0]) and long_id[0][2] & 0x80
    assert not starts_keyframe("vp8", b"") and not starts_keyframe("vp8", b"\x90\x80")
    idr, sps, slice_ = b"\x65\x88", b"\x67\x42", b"\x41\x9a"
    assert starts_keyframe("h264", sps) and starts_keyframe("h264", idr)
    assert not starts_keyframe("h264", slice_)
    stap = b"\x18" + len(sps).to_bytes(2, "big") + sps + len(slice_).to_bytes(2, "big") + slice_
    assert starts_keyframe("h264", stap)
    assert not starts_keyframe("h264", b"\x18" + len(slice_).to_bytes(2, "big") + slice_)
    assert starts_keyframe("h264", b"\x7c\x85\x00")  # FU-A, start of an IDR slice
    assert not starts_keyframe("h264", b"\x7c\x05\x00")  # its middle
    assert not starts_keyframe("h264", b"\x7c\x81\x00")  # start of a non-IDR slice


class Captured:
    """Stands in for an RTCRtpSender's socket: what a forwarder sent, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, int, bytes]] = []
        self.connected = True

    def ready(self) -> bool:
        return self.connected

    async def send(self, packet: RtpPacket, sequence_number: int, timestamp: int) -> None:
        self.sent.append((sequence_number, timestamp, packet.payload))


def _feed_with(outlets: list[Captured], gate: MediaGate | None = None) -> tuple[Feed, list[int]]:
    feed = Feed("customer.screen", "video", encoded=True, gate=gate)
    feed.codec = "vp8"
    asks: list[int] = []
    feed.request_keyframe = lambda: asks.append(1)  # type: ignore[method-assign]
    source = object()
    feed._receiver = source  # type: ignore[assignment]
    for outlet in outlets:  # what subscribe(sender) sets up, with the socket captured
        track = FeedTrack(feed, "video", 1)
        feed._subscribers.add(track)
        feed._forwarders[track] = Forwarder(outlet, "video")
    return feed, asks


def _stream(frames: list[bytes], first_seq: int = 1000) -> list[RtpPacket]:
    packets, seq = [], first_seq
    for i, frame in enumerate(frames):
        payloads = _vp8_packets(frame, i)
        for j, payload in enumerate(payloads):
            packets.append(RtpPacket(payload_type=96, marker=int(j == len(payloads) - 1),
                                     sequence_number=seq % 65536, timestamp=3000 * i,
                                     ssrc=SSRC_A, payload=payload))
            seq += 1
    return packets


async def test_the_feed_forwards_each_packet_unchanged_and_gates_the_screen():
    clip = vp8_clip()
    gate = MediaGate()
    gate.set(True)
    a, b = Captured(), Captured()
    feed, asks = _feed_with([a, b], gate)
    source = feed._receiver
    packets = _stream(clip[:40])  # keyframes at 0 and 30
    key_at = {i for i, p in enumerate(packets) if starts_keyframe("vp8", p.payload)}
    assert len(key_at) == 2
    first_key, second_key = sorted(key_at)
    for p in packets[:first_key + 20]:
        await feed.on_rtp(source, p)  # type: ignore[arg-type]
    assert [s[2] for s in a.sent] == [p.payload for p in packets[:first_key + 20]]
    assert [s[0] for s in a.sent] == [p.sequence_number for p in packets[:first_key + 20]]
    assert a.sent == b.sent
    await feed.on_rtp(object(), packets[first_key + 20])  # type: ignore[arg-type]
    assert len(a.sent) == first_key + 20  # an old leg's packet is ignored
    gate.set(False)  # consent withdrawn
    closed = packets[first_key + 20:second_key - 3]
    for p in closed:
        await feed.on_rtp(source, p)  # type: ignore[arg-type]
    assert len(a.sent) == first_key + 20
    assert feed.gated_out == sum(p.marker for p in closed)
    gate.set(True)
    for p in packets[second_key - 3:]:
        await feed.on_rtp(source, p)  # type: ignore[arg-type]
    assert asks  # it asked for a keyframe to resume
    resumed = a.sent[first_key + 20:]
    assert resumed[0][2] == packets[second_key].payload  # at the next keyframe
    # sequence numbers follow on with no gap for the receiver to wait on
    assert [s[0] for s in a.sent] == list(range(1000, 1000 + len(a.sent)))
    assert resumed[0][1] > a.sent[first_key + 19][1]


async def test_a_receiver_not_connected_yet_starts_at_a_keyframe():
    clip = vp8_clip()
    late = Captured()
    late.connected = False
    feed, asks = _feed_with([late])
    packets = _stream(clip[:35])
    for p in packets[:50]:
        await feed.on_rtp(feed._receiver, p)  # type: ignore[arg-type]
    assert late.sent == [] and not asks  # nobody to send to: no keyframe asked for
    late.connected = True
    for p in packets[50:]:
        await feed.on_rtp(feed._receiver, p)  # type: ignore[arg-type]
    assert asks and starts_keyframe("vp8", late.sent[0][2])


async def test_a_loss_beyond_repair_resumes_every_receiver_at_a_keyframe():
    clip = vp8_clip()
    out = Captured()
    feed, asks = _feed_with([out])
    packets = _stream(clip[:40])
    for p in packets[:60]:
        await feed.on_rtp(feed._receiver, p)  # type: ignore[arg-type]
    feed.on_loss()  # the source's packets 60..n never came and never will
    assert asks
    rest = packets[80:]
    for p in rest:
        await feed.on_rtp(feed._receiver, p)  # type: ignore[arg-type]
    key = next(p for p in rest if starts_keyframe("vp8", p.payload))
    assert out.sent[60][2] == key.payload
    assert [s[0] for s in out.sent] == list(range(1000, 1000 + len(out.sent)))


@pytest.fixture(params=[True, False], ids=["native", "python"])
def forwarding_path(request, server):
    """Each test with this fixture runs on the native forwarding part (where built) and
    on the pure-Python path (set after the server's start, which sets it from settings)."""
    if request.param and not native.built():
        pytest.skip("native part not built")
    native.use(request.param)
    yield request.param
    native.use(True)


async def test_a_receivers_nack_is_answered_from_the_servers_history(server, forwarding_path):
    """Real peers: the teller's receiver asks for a packet it already has; the server's
    sender resends it on the RTX stream (as it would for one the teller's link lost)."""
    from vteller.media.passthrough import _WrittenHistory

    customer, teller = Party("customer", encoded=True), Party("teller", encoded=True)
    cust_sig, teller_sig, call = await connect(server, customer, teller)
    try:
        video = teller.pc.getTransceivers()[1].receiver
        # the teller's aiortc would route RTX by payload type, shared with the screen
        route_retransmissions(video, rtx_ssrcs(teller.pc.remoteDescription.sdp)[1])
        await teller.wait_frames("video", 30)
        sender = call.legs["teller"]._pc.getTransceivers()[1].sender
        history = sender._RTCRtpSender__rtp_history
        assert isinstance(history, _WrittenHistory) is forwarding_path
        streams = video._RTCRtpReceiver__remote_streams
        media_ssrc, stats = max(streams.items(), key=lambda kv: kv[1].packets_received)
        assert stats.packets_received > 30
        before = set(streams)
        await video._send_rtcp_nack(media_ssrc, [stats.max_seq - 3, stats.max_seq - 2])
        for _ in range(100):
            rtx = [st for s, st in streams.items() if s not in before]
            if rtx:
                break
            await asyncio.sleep(0.02)
        assert rtx and rtx[0].packets_received == 2
    finally:
        for closeable in (customer, teller, cust_sig, teller_sig):
            await closeable.close()


def test_forwarding_needs_a_sender():
    with pytest.raises(ValueError):
        Feed("teller.video", "video", encoded=True).subscribe()


async def test_a_receiver_that_fails_is_dropped_and_the_others_keep_receiving(caplog):
    class Broken(Captured):
        async def send(self, packet: RtpPacket, sequence_number: int, timestamp: int) -> None:
            raise RuntimeError("a defect in one receiver's path")

    good, broken = Captured(), Broken()
    feed, _ = _feed_with([broken, good])
    packets = _stream(vp8_clip()[:3])
    for p in packets:
        await feed.on_rtp(feed._receiver, p)  # type: ignore[arg-type]
    assert [s[2] for s in good.sent] == [p.payload for p in packets]
    assert len(feed._forwarders) == 1
    assert sum("that receiver is dropped" in r.message for r in caplog.records) == 1


def test_the_quicker_min_frame_period_gives_aiortcs_answers():
    import random

    from aiortc.rate import OveruseEstimator, RemoteBitrateEstimator

    from vteller.media.passthrough import _quicker_min_frame_period

    theirs, ours = OveruseEstimator(), RemoteBitrateEstimator()
    _quicker_min_frame_period(ours)
    rng = random.Random(7)
    for _ in range(500):
        delta = rng.choice([33.3, 33.4, 16.7, 66.7, rng.uniform(1, 100)])
        assert ours.estimator.update_min_frame_period(delta) == \
            theirs.update_min_frame_period(delta)


def test_the_quicker_rate_counter_gives_aiortcs_answers():
    """Same rates as aiortc's per-millisecond buckets over random packets: bursts in one
    millisecond, steady flow, gaps inside and beyond the 1 s window, resets."""
    import random

    from aiortc.rate import RateCounter, RemoteBitrateEstimator

    from vteller.media.passthrough import _quicker_rate_counter, _QuickerRateCounter

    theirs, ours = RateCounter(1000, 8000), _QuickerRateCounter(1000, 8000)
    rng = random.Random(11)
    now, answers = 5_000, 0
    for _ in range(6000):
        now += rng.choice([0, 0, 1, 2, 5, 33, rng.randint(0, 999), rng.randint(990, 1010),
                           rng.randint(1000, 3000)])
        step = rng.random()
        if step < 0.6:
            size = rng.randint(50, 1300)
            theirs.add(size, now)
            ours.add(size, now)
        elif step < 0.995:
            assert ours.rate(now) == theirs.rate(now), now
            answers += theirs.rate(now) is not None
        else:
            theirs.reset()
            ours.reset()
    assert answers > 1000  # most were rates, not None
    estimator = RemoteBitrateEstimator()
    _quicker_rate_counter(estimator)
    assert isinstance(estimator.incoming_bitrate, _QuickerRateCounter)
    with pytest.raises(AiortcInternalsChanged):
        _quicker_rate_counter(estimator)  # already swapped: not aiortc's any more


def test_the_rtp_writer_gives_aiortcs_bytes():
    """`_RtpWriter` against ``RtpPacket.serialize`` over random packets, three extension
    maps and three MIDs, with and without audio level and abs-send-time, with padding
    (random bytes there: same length, last byte and everything before the padding)."""
    import random

    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
    from aiortc.rtp import HeaderExtensionsMap

    from vteller.media.passthrough import _RtpWriter

    uris = {"mid": "urn:ietf:params:rtp-hdrext:sdes:mid",
            "abs": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            "level": "urn:ietf:params:rtp-hdrext:ssrc-audio-level"}
    rng = random.Random(5)
    compared = 0
    for ids in ({"mid": 4, "abs": 2, "level": 1}, {"mid": 9, "abs": 14}, {"level": 3}):
        extensions_map = HeaderExtensionsMap()
        extensions_map.configure(RTCRtpParameters(headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=i, uri=uris[k]) for k, i in ids.items()]))
        for mid in ("0", "1", "camera-and-more16"[:16]):
            writer = _RtpWriter.for_map(extensions_map, mid)
            assert writer is not None
            for _ in range(50):
                packet = RtpPacket(payload_type=rng.choice([96, 97, 111]),
                                   marker=rng.randint(0, 1),
                                   sequence_number=rng.randint(0, 65535),
                                   timestamp=rng.randint(0, 2**32 - 1),
                                   ssrc=rng.randint(0, 2**32 - 1),
                                   payload=rng.randbytes(rng.randint(0, 1200)))
                packet.padding_size = rng.choice([0, 0, 1, 37, 255])
                packet.extensions.mid = mid
                if rng.random() < 0.8:
                    packet.extensions.abs_send_time = rng.randint(0, 2**24 - 1)
                if rng.random() < 0.5:
                    packet.extensions.audio_level = (rng.random() < 0.5, rng.randint(0, 127))
                ours, theirs = writer.serialize(packet), packet.serialize(extensions_map)
                end = len(theirs) - packet.padding_size
                assert len(ours) == len(theirs) and ours[:end] == theirs[:end]
                assert ours[-1:] == theirs[-1:]
                compared += 1
    assert compared == 450
    two_byte = HeaderExtensionsMap()
    two_byte.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=15, uri=uris["mid"])]))
    assert _RtpWriter.for_map(two_byte, "0") is None  # id 15: left to aiortc


async def test_the_datagram_queue_hands_over_in_order_and_survives_a_cancelled_get():
    from vteller.media.passthrough import _Datagrams

    q = _Datagrams()
    waiting = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    waiting.cancel()  # the DTLS transport stopped reading
    await asyncio.sleep(0)
    q.put_nowait((b"a", 1))
    q.put_nowait((b"b", 1))
    assert q.qsize() == 2
    assert await q.get() == (b"a", 1) and await q.get() == (b"b", 1)
    reader = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    q.put_nowait(None)  # aioice's "connection closed"
    assert await asyncio.wait_for(reader, 1) is None and q.empty()


async def test_in_order_runs_at_once_and_queues_behind_one_that_waits(caplog):
    """`_InOrder` (SRTP handled in the socket callback): a coroutine that does not wait
    runs to its end inside ``run``; one that waits is finished by a task and those given
    meanwhile run after it, in order; one that raises is logged by type (no message
    text) and the next still runs; on cancellation the queued ones are closed unrun."""
    from vteller.media.passthrough import _InOrder

    done: list[str] = []
    gate = asyncio.get_running_loop().create_future()

    async def step(name: str, wait: asyncio.Future[None] | None = None,
                   fail: bool = False) -> None:
        if wait is not None:
            await wait
        if fail:
            raise ValueError("secret payload 123")
        done.append(name)

    runner = _InOrder("test handling")
    runner.run(step("a"))
    assert done == ["a"]  # ran inside run()
    runner.run(step("b", wait=gate))
    runner.run(step("c"))
    runner.run(step("d", fail=True))
    runner.run(step("e"))
    await asyncio.sleep(0.01)
    assert done == ["a"]  # b waits, c-e queue behind it
    gate.set_result(None)
    for _ in range(20):
        await asyncio.sleep(0)
    assert done == ["a", "b", "c", "e"]
    assert "test handling failed: ValueError (1 so far)" in caplog.text
    assert "secret" not in caplog.text
    runner.run(step("f", fail=True))  # fails at once: counted, nothing queued
    runner.run(step("g"))
    assert done[-1] == "g" and runner.failures == 2
    assert caplog.text.count("test handling failed") == 1  # once a minute
    runner.run(step("h", wait=asyncio.sleep(0)))  # a bare yield
    runner.run(step("i"))
    await asyncio.sleep(0.01)
    assert done[-2:] == ["h", "i"]
    never = asyncio.get_running_loop().create_future()
    runner.run(step("j", wait=never))
    queued = step("k")
    runner.run(queued)
    await asyncio.sleep(0)
    runner._task.cancel()
    await asyncio.sleep(0.01)
    assert runner._task is None and done[-1] == "i"
    assert queued.cr_frame is None  # closed, never started


def test_srtp_at_once_is_refused_when_aioice_receives_otherwise(monkeypatch):
    """`receive_at_once` stands for aioice's and aiortc's receive path as their source
    reads; a connection that does more with a datagram than queue it turns the direct
    path off (the queue alone is swapped) and `check_aiortc` says so."""
    import aioice.ice

    from vteller.media import passthrough

    assert passthrough._receives_as_expected()

    def data_received(self, data: bytes, component: int) -> None:
        self._queue.put_nowait((data[1:], component))

    monkeypatch.setattr(aioice.ice.Connection, "data_received", data_received)
    assert not passthrough._receives_as_expected()
    monkeypatch.setattr(passthrough, "_DIRECT_RECEIVE", False)
    with pytest.raises(passthrough.AiortcInternalsChanged, match="receive path"):
        passthrough.check_aiortc()

    class Transport:  # what receive_at_once reads: transport.transport._connection._queue
        def __init__(self) -> None:
            self.transport = type("Ice", (), {})()
            self.transport._connection = type("Conn", (), {})()
            self.transport._connection._queue = asyncio.Queue()

    dtls = Transport()
    passthrough.receive_at_once(dtls)
    datagrams = dtls.transport._connection._queue
    assert isinstance(datagrams, passthrough._Datagrams) and datagrams.direct is None
    datagrams.put_nowait((b"\x80" + bytes(30), 1))  # queued for aiortc's task
    assert datagrams.qsize() == 1


def test_the_short_send_path_is_refused_when_aioice_sends_otherwise(monkeypatch):
    """`SenderOutlet`'s short send path stands for aiortc's and aioice's send chain as
    their source reads; a chain that does more (here: a send_data that wraps the
    datagram) turns it off and `check_aiortc` says so."""
    import aioice.ice

    from vteller.media import passthrough

    assert passthrough._sends_as_expected()

    async def send_data(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"\x00" + data, addr)

    monkeypatch.setattr(aioice.ice.StunProtocol, "send_data", send_data)
    assert not passthrough._sends_as_expected()
    monkeypatch.setattr(passthrough, "_DIRECT_SEND", False)
    with pytest.raises(passthrough.AiortcInternalsChanged, match="send path"):
        passthrough.check_aiortc()
