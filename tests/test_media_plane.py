"""Encoded forwarding end to end: byte-identical frames, keyframe relay, one codec per
call, the screen gate, recorder and analysis taps, bounded queues."""

from __future__ import annotations

import asyncio
import fractions
import hashlib
import io
import itertools
import threading
import time

import av
import numpy as np
import pytest

from tests.conftest import accept_call
from tests.helpers import Party
from tests.media_sources import vp8_clip
from vteller.media import Feed, MediaItem
from vteller.media.passthrough import (
    AiortcInternalsChanged,
    check_aiortc,
    is_keyframe,
    receive_encoded,
    receive_packets,
    relay_keyframe_requests,
    request_keyframe,
)
from vteller.media.relay import AUDIO_QUEUE, VIDEO_QUEUE
from vteller.media.taps import LatestFrameTap, TrackRecorder, _Worker


async def connect(server, customer: Party, teller: Party):  # type: ignore[no-untyped-def]
    teller_sig = await server.teller("teller1")
    cust_sig = await server.customer("c-42")
    call_id = await accept_call(teller_sig, cust_sig)
    await asyncio.gather(customer.negotiate(cust_sig), teller.negotiate(teller_sig))
    return cust_sig, teller_sig, server.manager.calls[call_id]


@pytest.fixture
async def encoded_call(server):
    customer, teller = Party("customer", encoded=True), Party("teller", encoded=True)
    cust_sig, teller_sig, call = await connect(server, customer, teller)
    yield customer, teller, call, cust_sig, teller_sig
    for closeable in (customer, teller, cust_sig, teller_sig):
        await closeable.close()


async def test_forwarded_packets_are_byte_identical(encoded_call):
    customer, teller, call, *_ = encoded_call
    await teller.wait_frames("video", 60)
    clip = vp8_clip()
    got = [bytes(p) for _, p in teller.packets["video"]]
    start = clip.index(got[0])
    assert is_keyframe("vp8", got[0]), "a new receiver starts at a keyframe"
    expected = [clip[(start + i) % len(clip)] for i in range(len(got))]
    assert got == expected  # every packet, in order, unchanged
    # and therefore the teller decodes exactly what the customer encoded
    dec_sent, dec_got = av.CodecContext.create("vp8", "r"), av.CodecContext.create("vp8", "r")
    for sent, received in zip(expected[:30], got[:30]):
        a = dec_sent.decode(av.Packet(sent))[0].to_ndarray(format="yuv420p")
        b = dec_got.decode(av.Packet(received))[0].to_ndarray(format="yuv420p")
        assert np.array_equal(a, b)
    # audio too (Opus packets forwarded as they came)
    await customer.wait_frames("audio", 20)
    assert all(len(bytes(p)) > 0 for _, p in customer.packets["audio"])
    assert call.video_codec == "vp8" and call.encoded_media


async def test_the_short_send_path_counts_what_it_sends_and_turn_pairs_go_the_long_way(
        encoded_call):
    """`SenderOutlet` protects and sends on the nominated pair itself (not through four
    awaited calls of aiortc and aioice): the transport's statistics still count every
    datagram, and a pair whose protocol is not a plain UDP one (a TURN relay wraps each
    datagram) is sent through its own ``send_data``."""
    import aioice.ice

    from vteller.media import passthrough

    customer, teller, call, *_ = encoded_call
    assert passthrough._DIRECT_SEND
    await teller.wait_frames("video", 30)
    dtls = call.legs["teller"]._pc.getTransceivers()[0].sender.transport
    sent = [s for s in (await call.legs["teller"]._pc.getStats()).values()
            if s.type == "transport"][0]
    received = [s for s in (await teller.pc.getStats()).values() if s.type == "transport"][0]
    assert sent.packetsSent >= 60 and sent.bytesSent > 30_000, sent
    assert abs(received.packetsReceived - sent.packetsSent) < 40, (sent, received)
    pair = dtls.transport._connection._nominated[1]
    assert type(pair.protocol) is aioice.ice.StunProtocol

    class Relayed:  # what aioice's TURN protocols offer: send_data, wrapping
        def __init__(self) -> None:
            self.transport, self.got = pair.protocol.transport, []

        async def send_data(self, data: bytes, addr: tuple[str, int]) -> None:
            self.got.append((data, addr))

    relayed, real = Relayed(), pair.protocol
    pair.protocol = relayed
    try:
        before = dtls._RTCDtlsTransport__tx_packets
        for _ in range(50):
            if len(relayed.got) >= 5:
                break
            await asyncio.sleep(0.02)
    finally:
        pair.protocol = real
    assert len(relayed.got) >= 5 and all(a == pair.remote_addr for _, a in relayed.got)
    assert all(d[0] & 0xC0 == 0x80 for d, _ in relayed.got)  # SRTP: RTP version 2
    assert dtls._RTCDtlsTransport__tx_packets >= before + len(relayed.got) - 1
    dtls._state = type(dtls._state).CLOSED
    try:
        with pytest.raises(ConnectionError):
            await passthrough._send_protected(dtls, b"\x80" * 40)
    finally:
        dtls._state = type(dtls._state).CONNECTED


async def test_srtp_is_handled_in_the_socket_callback_and_counted(encoded_call):
    """The server's legs take each SRTP/SRTCP datagram straight from the socket callback
    (`receive_at_once`), not through the DTLS transport's queue and task: media flows,
    the transport's statistics count what the customer sent, DTLS still goes through the
    queue, and a datagram that fails to unprotect is dropped without harming the call."""
    from vteller.media import passthrough

    customer, teller, call, *_ = encoded_call
    assert passthrough._DIRECT_RECEIVE
    await teller.wait_frames("video", 10)  # connected (before, SRTP is left to aiortc)
    dtls = call.legs["customer"]._pc.getTransceivers()[0].receiver.transport
    datagrams = dtls.transport._connection._queue
    assert isinstance(datagrams, passthrough._Datagrams) and datagrams.direct is not None
    taken, direct = [], datagrams.direct

    def counting(data: bytes) -> bool:
        took = direct(data)
        taken.append((data[0], took))
        return took

    datagrams.direct = counting
    frames = len(teller.packets["video"])
    await teller.wait_frames("video", frames + 30)
    srtp = [t for first, t in taken if 127 < first < 192]
    assert len(srtp) >= 30 and all(srtp)  # every SRTP datagram handled at once
    protocols = dtls.transport._connection._protocols
    assert protocols and all("datagram_received" in vars(p) for p in protocols)  # no STUN parse
    assert datagrams.empty()
    sent = [s for s in (await customer.pc.getStats()).values() if s.type == "transport"][0]
    received = [s for s in (await call.legs["customer"]._pc.getStats()).values()
                if s.type == "transport"][0]
    assert abs(received.packetsReceived - sent.packetsSent) < 40, (sent, received)
    rx = dtls._RTCDtlsTransport__rx_packets
    assert counting(b"\x80" + bytes(99))  # not SRTP of this session: counted, dropped
    assert dtls._RTCDtlsTransport__rx_packets == rx + 1
    assert not counting(bytes([22]) + bytes(40))  # DTLS: left to the transport's task
    datagrams.put_nowait(None)  # aioice's "closed" marker is queued as before
    assert datagrams.qsize() == 1
    datagrams._items.clear()
    frames = len(teller.packets["video"])
    await teller.wait_frames("video", frames + 10)  # the call goes on


async def test_keyframe_requests_are_relayed_and_coalesced(encoded_call):
    customer, teller, call, *_ = encoded_call
    await teller.wait_frames("video", 10)
    requests: list[float] = []
    camera_sender = customer.pc.getTransceivers()[1].sender
    relay_keyframe_requests(camera_sender, lambda: requests.append(time.monotonic()))
    await asyncio.sleep(0.7)  # past the feed's rate limit window
    receiver = teller.pc.getTransceivers()[1].receiver
    for _ in range(10):  # a burst of PLIs from the teller
        assert await request_keyframe(receiver)
    await asyncio.sleep(1.2)
    assert 1 <= len(requests) <= 3, requests  # relayed upstream, coalesced to <= 2/s
    assert call.feeds["customer.video"].keyframe_requests >= 1


async def test_screen_gate_controls_forwarding(encoded_call):
    customer, teller, call, *_ = encoded_call
    await teller.wait_frames("video", 30)
    assert call.feeds["customer.screen"].gated_out > 10
    assert teller.received["screen"] == 0  # closed gate: nothing left the server
    call.screen_gate.set(True)
    await teller.wait_frames("screen", 10)
    assert is_keyframe("vp8", bytes(teller.packets["screen"][0][1]))
    call.screen_gate.set(False)
    await asyncio.sleep(0.3)
    stopped_at = teller.received["screen"]
    await asyncio.sleep(0.5)
    assert teller.received["screen"] == stopped_at


async def test_second_leg_without_the_calls_codec_gets_clear_error(server):
    customer, teller = Party("customer", video_codec="vp8"), Party("teller", video_codec="h264")
    teller_sig = await server.teller("teller1")
    cust_sig = await server.customer("c-42")
    await accept_call(teller_sig, cust_sig)
    await customer.negotiate(cust_sig)
    await teller.pc.setLocalDescription(await teller.pc.createOffer())
    await teller_sig.send({"type": "webrtc.offer", "sdp": teller.pc.localDescription.sdp})
    err = await teller_sig.error("no_common_codec")
    assert "VP8" in err["message"]
    for c in (customer, teller, cust_sig, teller_sig):
        await c.close()


@pytest.mark.settings(record_calls=True)
async def test_recordings_remux_every_forwarded_packet(server, tmp_path):
    customer, teller = Party("customer", encoded=True), Party("teller", encoded=True)
    cust_sig, teller_sig, call = await connect(server, customer, teller)
    await teller.wait_frames("video", 60)
    await customer.wait_frames("audio", 50)
    recorders = {r.feed.name.split(":")[1]: r for r in call.recorders}
    await cust_sig.send({"type": "call.hangup"})
    await teller_sig.recv("call.ended")
    await server.manager.shutdown_cleanups()
    folder = server.settings.recordings_dir / call.call_id
    video = recorders["customer.video"]
    assert video.written >= 60 and video.dropped == 0
    plain = decrypt_recordings(server, call.call_id, folder)  # in memory only
    with av.open(io.BytesIO(plain["customer.video"])) as c:
        assert sum(1 for _ in c.decode(video=0)) == video.written
    with av.open(io.BytesIO(plain["teller.audio"])) as c:
        assert c.streams.audio[0].codec_context.name == "opus"
        assert sum(1 for p in c.demux(audio=0) if p.size) == recorders["teller.audio"].written
    raw = (folder / "customer.video.webm.vtenc").read_bytes()
    # nothing readable at rest: neither the EBML magic, nor the Matroska DocType, nor
    # the codec id (markers of 4+ bytes: random ciphertext of a few MB holds a given
    # 3-byte string by chance often enough to make a shorter check flaky)
    assert b"\x1a\x45\xdf\xa3" not in raw[:64] and b"\x42\x82\x84webm" not in raw
    assert b"V_VP8" not in raw
    clear = plain["customer.video"]  # the markers do exist in the plaintext
    assert clear.startswith(b"\x1a\x45\xdf\xa3") and b"\x42\x82\x84webm" in clear
    assert b"V_VP8" in clear
    stored = server.components.store.recordings(call.call_id)
    assert stored["customer.video"] == (hashlib.sha256(raw).hexdigest(), video.written)
    assert plain["customer.screen"] == b""  # gate closed: header only, no media
    for closeable in (customer, teller, cust_sig, teller_sig):
        await closeable.close()


async def test_analysis_tap_decodes_latest_frame_at_consumer_rate(encoded_call):
    customer, teller, call, *_ = encoded_call
    tap = LatestFrameTap(call.feeds["customer.video"])
    call.feeds["customer.video"].add_tap(tap)
    got = []
    started = time.monotonic()
    async for frame, _at in tap.frames(rate_hz=5):
        got.append(frame)
        if time.monotonic() - started > 2.0:
            break
    await asyncio.to_thread(tap.close)
    assert 6 <= len(got) <= 12, len(got)  # ~5 per second, never more
    assert (got[-1].width, got[-1].height) == (640, 480)
    assert tap.decoded > len(got)  # decoded every frame, handed over only the newest


async def test_analysis_tap_keeps_a_grid_for_a_consumer_that_fell_behind(encoded_call):
    """Liveness must not skip the frames that arrived while one analysis took long (a
    blink lasts 0.1-0.4 s): the tap keeps the first frame of every 0.1 s for 1 s."""
    _, _, call, *_ = encoded_call
    tap = LatestFrameTap(call.feeds["customer.video"])
    call.feeds["customer.video"].add_tap(tap)
    tap.keep_grid(0.1, 1.0)
    deadline = time.monotonic() + 10
    while tap.decoded == 0 and time.monotonic() < deadline:  # media flowing (a loaded
        await asyncio.sleep(0.05)  # machine may take a while for the first keyframe)
    await asyncio.sleep(2.0)  # then a consumer busy for 2 s
    got, at = [], -1.0
    while (item := tap.next_after(at)) is not None:
        got.append(item[1])
        at = item[1]
    latest = tap.latest
    tap.keep_grid(0.1, 0.0)  # back to the newest frame only
    newest = tap.next_after(-1.0)
    await asyncio.to_thread(tap.close)
    assert 7 <= len(got) <= 11, got  # the last second, in order, one per 0.1 s interval
    assert all(b // 0.1 > a // 0.1 for a, b in itertools.pairwise(got)), got
    assert got[-1] - got[0] <= 1.0
    assert latest is not None and latest[1] // 0.1 == got[-1] // 0.1  # up to the newest
    assert newest is not None and newest[1] >= latest[1]


async def test_analysis_tap_skips_from_a_loss_to_the_next_keyframe():
    """Frames after packets lost for good decode against a missing reference (a smeared
    picture face analysis would misread): the analysis tap resumes at the next keyframe,
    which the feed asks for; a recorder keeps every frame (players conceal the damage)."""
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    clip = vp8_clip(frames=40, gop=20, width=160, height=120)  # keyframes at 0 and 20
    feed = Feed("c:video", "video", encoded=True)
    feed.codec = "vp8"
    asked: list[int] = []

    class Clip(MediaStreamTrack):
        kind = "video"
        sent = 0

        async def recv(self) -> av.Packet:
            if self.sent == len(clip):
                raise MediaStreamError
            if self.sent == 5:
                feed.on_loss()  # packets of what came between frames 4 and 5 were lost
            packet = av.Packet(clip[self.sent])
            packet.pts, packet.time_base = self.sent * 3000, fractions.Fraction(1, 90000)
            self.sent += 1
            await asyncio.sleep(0)
            return packet

    kept: list[int] = []

    class Keeper(_Worker):  # stands for the recorder: skips_damaged is False
        def handle(self, item: MediaItem) -> None:
            kept.append(item.payload.pts // 3000)

    analysis = LatestFrameTap(feed, backlog=100)  # no overflow: only the loss skips
    keeper = Keeper(feed, backlog=100, name="keeper")
    feed.add_tap(analysis)
    feed.add_tap(keeper)
    feed.request_keyframe = lambda: asked.append(1)  # type: ignore[method-assign]
    feed.attach(Clip())
    await feed._pump
    await asyncio.to_thread(analysis.close)
    await asyncio.to_thread(keeper.close)
    assert analysis.decoded == 5 + 20  # frames 0-4, then 20-39: 5-19 skipped
    assert analysis.dropped == 15
    assert kept == list(range(40))
    assert asked == [1]  # on_loss asked the source for a keyframe


def decrypt_recordings(server, call_id: str, folder) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    from vteller.audit import WrappedKey, decrypt

    kek_id, blob = server.components.store.session_key(call_id)
    data_key = server.components.kek.unwrap(WrappedKey(kek_id, blob), call_id)
    out = {}
    for path in folder.glob("*.vtenc"):
        with path.open("rb") as fh:
            out[path.name.removesuffix(".webm.vtenc")] = b"".join(decrypt(fh, lambda _: data_key))
    return out


def _item(i: int, keyframe: bool) -> MediaItem:
    packet = av.Packet(b"\x00" if keyframe else b"\x01")
    packet.pts, packet.time_base = i * 3000, fractions.Fraction(1, 90000)
    return MediaItem(packet, keyframe, 0.0)


async def test_a_stalled_transcode_subscriber_stays_bounded():
    """Transcode mode (the benchmark baseline) queues decoded items per subscriber; a
    subscriber nobody reads keeps only the newest (encoded mode queues nothing)."""
    for kind, size in (("video", VIDEO_QUEUE), ("audio", AUDIO_QUEUE)):
        track = Feed(f"t:{kind}", kind, encoded=False).subscribe()
        for i in range(1000):
            track.push(_item(i, keyframe=True))
        assert track._queue.qsize() == size and track.dropped == 1000 - size
        assert (await track.recv()).pts == (1000 - size) * 3000  # the oldest kept


async def test_stalled_tap_stays_bounded():
    release = threading.Event()

    class Stuck(_Worker):
        def handle(self, item: MediaItem) -> None:
            release.wait()

    feed = Feed("t:video", "video", encoded=True)
    feed.request_keyframe = lambda: None  # type: ignore[method-assign]
    tap = Stuck(feed, backlog=10, name="stuck")
    for i in range(5000):
        tap.offer(_item(i, keyframe=i % 100 == 0))
    assert len(tap._items) <= 10 and tap.dropped >= 4980
    release.set()
    await asyncio.to_thread(tap.close)


async def test_passthrough_hook_guards():
    check_aiortc()
    from aiortc import RTCPeerConnection

    from vteller.media.leg import rtc_configuration

    a, b = RTCPeerConnection(rtc_configuration([])), RTCPeerConnection(rtc_configuration([]))
    with pytest.raises(AiortcInternalsChanged):
        receive_encoded(a.addTransceiver("video").receiver)  # too early: no remote description
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    receiver = b.getTransceivers()[0].receiver
    receive_encoded(receiver)
    with pytest.raises(AiortcInternalsChanged):
        receive_encoded(receiver)  # already hooked
    await a.close()
    await b.close()
    clip = vp8_clip()
    assert [is_keyframe("vp8", p) for p in clip[:2]] == [True, False]
    assert not is_keyframe("vp8", b"")
    with pytest.raises(ValueError):
        TrackRecorder(Feed("t", "video", encoded=False), "/dev/null")  # type: ignore[arg-type]


def _rtp(seq: int, timestamp: int):  # type: ignore[no-untyped-def]
    from aiortc.rtp import RtpPacket

    packet = RtpPacket(payload_type=97, sequence_number=seq, timestamp=timestamp)
    packet._data = bytes([seq % 256])  # type: ignore[attr-defined]
    return packet


def test_jitter_buffer_gives_up_a_frame_the_sender_can_no_longer_repair():
    """Two packets per frame; packet 3 (frame 1's second) is lost for good. aiortc's own
    buffer holds every later frame until 512 packets have come; ours drops frame 1
    once a packet 8 newer arrives, asks for a keyframe once, and delivers again."""
    from aiortc.jitterbuffer import JitterBuffer

    from vteller.media.passthrough import _GivingUpJitterBuffer

    ours, theirs = _GivingUpJitterBuffer(512, window=8), JitterBuffer(512, is_video=True)
    out: dict[str, list[int]] = {"ours": [], "theirs": []}
    plis = 0
    for seq in [s for s in range(40) if s != 3]:
        for name, buffer in (("ours", ours), ("theirs", theirs)):
            pli, frame = buffer.add(_rtp(seq, 1000 * (seq // 2)))
            if frame is not None:
                out[name].append(frame.timestamp)
            plis += pli and name == "ours"
    assert out["theirs"] == [0]  # frame 0, then stuck behind packet 3
    assert out["ours"][0] == 0 and 1000 not in out["ours"]
    assert out["ours"][-1] == 18000 and len(out["ours"]) >= 15  # flowing again
    assert plis == 1 and ours.given_up == 1


def test_missing_packets_are_asked_for_again_while_media_flows(monkeypatch):
    from vteller.media import passthrough

    clock = [100.0]
    monkeypatch.setattr(passthrough.time, "monotonic", lambda: clock[0])
    nack = passthrough._RenackingNackGenerator(renack_s=0.12)
    assert not nack.add(_rtp(1, 0))
    assert nack.add(_rtp(3, 0)) and nack.missing == {2}  # a new gap: ask
    clock[0] += 0.05
    assert not nack.add(_rtp(4, 0))  # asked 50 ms ago
    clock[0] += 0.1
    assert nack.add(_rtp(5, 0)) and nack.renacks == 1  # still missing: ask again
    assert not nack.add(_rtp(2, 0)) and nack.missing == set()  # repaired
    clock[0] += 1.0
    assert not nack.add(_rtp(6, 0))  # nothing missing: quiet


def test_the_nack_bookkeeping_keeps_aiortcs_answers():
    """Ours (asking again never due here) and aiortc's over random arrivals (in order,
    gaps, late, repeated, wrapping, jumps): the same answers, missing sets and counts."""
    import random

    from aiortc.rtcrtpreceiver import NackGenerator

    from vteller.media import passthrough

    ours, theirs = passthrough._RenackingNackGenerator(renack_s=float("inf")), NackGenerator()
    rng, seq, asked = random.Random(9), 65_000, 0
    for _ in range(20_000):
        seq = (seq + rng.choice([1] * 12 + [2, 3, 0, -1, -5, 200, -130, 40_000])) % 65536
        answer = theirs.add(_rtp(seq, 0))
        assert ours.add(_rtp(seq, 0)) == answer
        assert ours.missing == theirs.missing and ours.max_seq == theirs.max_seq
        asked += answer
    assert asked > 1000 and ours.renacks == 0


async def test_retransmissions_are_routed_to_their_receiver():
    """aiortc registers a receiver's media SSRC, not its RTX SSRC; with the camera and
    the screen on the same payload types, RTX would be dropped. The offer's FID groups
    name the RTX SSRCs; they are routed to the right receiver."""
    from aiortc import RTCPeerConnection

    from vteller.media.leg import rtc_configuration
    from vteller.media.passthrough import route_retransmissions, rtx_ssrcs

    customer = Party("customer")
    server = RTCPeerConnection(rtc_configuration([]))
    await customer.pc.setLocalDescription(await customer.pc.createOffer())
    offer = customer.pc.localDescription.sdp
    groups = rtx_ssrcs(offer)
    assert [len(g) for g in groups] == [0, 1, 1]  # audio has no RTX; camera and screen do
    await server.setRemoteDescription(customer.pc.localDescription)
    camera, screen = server.getTransceivers()[1].receiver, server.getTransceivers()[2].receiver
    route_retransmissions(camera, groups[1])
    route_retransmissions(screen, groups[2])
    table = camera.transport._rtp_router.ssrc_table
    assert table[groups[1][0]] is camera and table[groups[2][0]] is screen
    await customer.close()
    await server.close()


@pytest.mark.settings(media_min_bitrate_bps=100_000)
async def test_a_receivers_bandwidth_estimate_reaches_the_sender(server):
    """The teller's receiver reports (REMB) that it can take 260 kbit/s of video: the
    server, which forwards without an encoder, tells the customer, whose encoder lowers
    its target to that (the floor is set lower here; by default it is 500 kbit/s)."""
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

    customer, teller = Party("customer"), Party("teller")  # aiortc's own VP8 encoders
    cust_sig, teller_sig, call = await connect(server, customer, teller)
    await teller.wait_frames("video", 10)
    encoder = customer.pc.getTransceivers()[1].sender._RTCRtpSender__encoder
    assert encoder.target_bitrate == 500_000  # aiortc's default
    receiver = teller.pc.getTransceivers()[1].receiver
    source = receiver.getSynchronizationSources()[0].source  # the server's sender

    async def remb(bitrate: int) -> None:
        await receiver._send_rtcp(RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP, ssrc=receiver._RTCRtpReceiver__rtcp_ssrc, media_ssrc=0,
            fci=pack_remb_fci(bitrate, [source])))

    await remb(260_000)
    deadline = asyncio.get_running_loop().time() + 5
    while encoder.target_bitrate != 260_000:
        assert asyncio.get_running_loop().time() < deadline, encoder.target_bitrate
        await asyncio.sleep(0.05)
    assert call.feeds["customer.video"].bandwidth_cap() == 260_000
    await teller.wait_frames("video", teller.received["video"] + 10)  # still flowing
    for c in (customer, teller, cust_sig, teller_sig):
        await c.close()


def test_a_long_frame_arriving_whole_is_not_given_up():
    """A keyframe of 300 packets (a large picture) with none missing: delivered whole,
    no keyframe asked for (the give-up is for packets lost, not for frames long)."""
    from vteller.media.passthrough import _GivingUpJitterBuffer

    buffer = _GivingUpJitterBuffer(512, window=128)
    frames, plis = [], 0
    for seq in range(301):  # 300 packets of frame 0, then frame 1 starts
        pli, frame = buffer.add(_rtp(seq, 0 if seq < 300 else 3000))
        plis += pli
        if frame is not None:
            frames.append((frame.timestamp, len(frame.data)))
    assert frames == [(0, 300)] and plis == 0 and buffer.given_up == 0


async def test_a_receivers_estimate_never_lowers_the_evidence_below_the_floor(server):
    """By default a receiver's report lowers the source to 500 kbit/s at most: the
    identity checks and the recording need that picture."""
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

    customer, teller = Party("customer"), Party("teller")
    cust_sig, teller_sig, call = await connect(server, customer, teller)
    await teller.wait_frames("video", 10)
    receiver = teller.pc.getTransceivers()[1].receiver
    source = receiver.getSynchronizationSources()[0].source
    feed = call.feeds["customer.video"]
    before = feed.bandwidth_reports
    await receiver._send_rtcp(RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=receiver._RTCRtpReceiver__rtcp_ssrc, media_ssrc=0,
        fci=pack_remb_fci(260_000, [source])))
    deadline = asyncio.get_running_loop().time() + 5
    while feed.bandwidth_reports == before:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # ours has landed (loopback), whatever the teller's own said
    assert feed.bandwidth_cap() == 500_000
    for c in (customer, teller, cust_sig, teller_sig):
        await c.close()


async def test_audio_frames_are_handed_on_in_order_without_the_jitter_buffer():
    """An Opus packet is a frame: handed to the feed as it arrives (aiortc's audio jitter
    buffer would hold 4 back), in sequence order; a late or repeated packet is dropped."""
    from aiortc import RTCPeerConnection
    from aiortc.rtcrtpparameters import RTCRtpReceiveParameters
    from aiortc.rtp import RtpPacket

    from vteller.media.leg import rtc_configuration

    customer = Party("customer")
    server = RTCPeerConnection(rtc_configuration([]))
    await customer.pc.setLocalDescription(await customer.pc.createOffer())
    await server.setRemoteDescription(customer.pc.localDescription)
    receiver = server.getTransceivers()[0].receiver
    opus = next(c for c in receiver.getCapabilities("audio").codecs if c.name == "opus")
    opus.payloadType = 111
    got: list[tuple[bytes, int]] = []
    receive_encoded(receiver, lambda packet: got.append((bytes(packet), packet.pts)))
    receive_packets(receiver, lambda packet: asyncio.sleep(0), lambda: True)
    await receiver.receive(RTCRtpReceiveParameters(codecs=[opus]))
    for seq in (65534, 65535, 0, 2, 1, 3, 3, 4):  # 1 comes late, 3 twice
        await receiver._handle_rtp_packet(RtpPacket(  # type: ignore[attr-defined]
            payload_type=111, sequence_number=seq, timestamp=960 * ((seq + 2) % 65536),
            ssrc=1234, payload=bytes([seq % 256]) * 20), 0)
        if seq == 65535:
            assert len(got) == 2  # each at once, none held back
    assert [payload[0] for payload, _ in got] == [254, 255, 0, 2, 3, 4]
    pts = [p for _, p in got]
    assert pts == sorted(pts) and pts[1] - pts[0] == 960
    await receiver.stop()
    await customer.close()
    await server.close()
