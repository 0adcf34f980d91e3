"""The native part of the forwarding path (``media/_rtpfast.c``) gives the answers of
the pure-Python one: the rewriter's mapping over random streams, the writer's bytes
(aiortc's serialization), its SRTP protection (pylibsrtp's with the same key), its
retransmission history and its counters; bad input is a typed error."""

from __future__ import annotations

import itertools
import random
import shutil
import struct
import time

import pylibsrtp
import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from vteller.media import native, passthrough
from vteller.media.forward import PyRewriter

built = pytest.mark.skipif(not native.built(), reason="native part not built")
NativeRewriter = native._built.Rewriter if native.built() else None
NTP_EPOCH_S = 2_208_988_800
URIS = {"mid": "urn:ietf:params:rtp-hdrext:sdes:mid",
        "abs": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "level": "urn:ietf:params:rtp-hdrext:ssrc-audio-level"}
KEY = bytes(range(30))  # AES_CM_128_HMAC_SHA1_80: 16 bytes key, 14 bytes salt


def test_the_native_part_is_built_where_a_compiler_is():
    """The install compiles it wherever a C compiler is (as on every CI machine):
    without one vteller forwards on the pure-Python path."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler here")
    assert native.built() and all(passthrough._SRTP)


@built
def test_the_native_rewriter_maps_as_the_python_one_over_random_streams():
    """Sources changing, pauses, reordering, loss, duplicates, wraps and long gaps."""
    rng = random.Random(3)
    compared = mapped = 0
    for kind in ((90_000, True), (48_000, False)):
        ours, theirs = NativeRewriter(*kind), PyRewriter(*kind)
        ssrc, seq, ts, now = 1, rng.randrange(65536), rng.randrange(2**32), 1000.0
        for _ in range(20_000):
            step = rng.random()
            if step < 0.002:  # a new source (a reconnected leg) with its own numbering
                ssrc, seq, ts = rng.randrange(2**32), rng.randrange(65536), rng.randrange(2**32)
            elif step < 0.004:
                ours.pause()
                theirs.pause()
            elif step < 0.006:
                now += rng.choice([0.001, 0.5, 3.0, 3600.0 * 30])  # up to > 2**32 ticks
            jump = rng.choice([1, 1, 1, 1, 2, 0, -1, -3, 40, -40, 20_000, -20_000, 33_000])
            seq = (seq + jump) % 65536
            ts = (ts + rng.choice([0, 3000, 960, -3000])) % 2**32
            now += rng.choice([0.0, 0.01, 0.033])
            keyframe = rng.random() < 0.05
            got = ours.map(ssrc, seq, ts, keyframe, now)
            assert got == theirs.map(ssrc, seq, ts, keyframe, now), (compared, got)
            assert ours.waiting == theirs.waiting
            compared += 1
            mapped += got is not None
    assert compared == 40_000 and mapped > 15_000  # most were sent


@built
def test_the_native_rewriter_refuses_numbers_out_of_range():
    r = NativeRewriter(90_000, True)
    for bad in ((2**32, 1, 1), (1, 65536, 1), (1, 1, 2**32), (-1, 1, 1), ("1", 1, 1)):
        with pytest.raises(ValueError, match="must be an int"):
            r.map(*bad, True, 0.0)
    with pytest.raises(TypeError):
        r.map(1, 2, 3)
    with pytest.raises(ValueError):
        NativeRewriter(0, True)


def _map(ids: dict[str, int]) -> HeaderExtensionsMap:
    extensions_map = HeaderExtensionsMap()
    extensions_map.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=i, uri=URIS[k]) for k, i in ids.items()]))
    return extensions_map


def _writer(extensions_map: HeaderExtensionsMap, mid: str, ssrc: int, pt: int):
    layout = passthrough._RtpWriter.for_map(extensions_map, mid)
    assert layout is not None
    return native._built.Writer(ssrc, pt, layout.mid_element, layout.abs_send_time_id,
                                       layout.audio_level_id, passthrough._SRTP.protect)


@built
def test_the_native_writer_gives_aiortcs_bytes_and_the_time_of_sending():
    """Against ``RtpPacket.serialize`` over random packets, three extension maps and
    three MIDs, with and without audio level, with padding (zeros here, random there:
    same length and last byte); abs-send-time is the time of writing."""
    rng = random.Random(5)
    compared = 0
    for ids in ({"mid": 4, "abs": 2, "level": 1}, {"mid": 9, "abs": 14}, {"level": 3}):
        extensions_map = _map(ids)
        for mid in ("0", "1", "camera-and-more16"[:16]):
            ssrc, pt = rng.randrange(2**32), rng.choice([96, 97, 111])
            native = _writer(extensions_map, mid, ssrc, pt)
            for _ in range(50):
                packet = RtpPacket(payload_type=pt, marker=rng.randint(0, 1),
                                   sequence_number=rng.randint(0, 65535),
                                   timestamp=rng.randint(0, 2**32 - 1), ssrc=ssrc,
                                   payload=rng.randbytes(rng.randint(0, 1200)))
                packet.padding_size = rng.choice([0, 0, 1, 37, 255])
                packet.extensions.mid = mid
                if rng.random() < 0.5:
                    packet.extensions.audio_level = (rng.random() < 0.5, rng.randint(0, 127))
                before = time.time()
                ours = native.write(packet.payload, packet.sequence_number, packet.timestamp,
                                    packet.marker, packet.padding_size,
                                    packet.extensions.audio_level, 0)
                after = time.time()
                parsed = RtpPacket.parse(ours, extensions_map)
                if "abs" in ids:  # 6.18 fixed-point seconds, wrapping every 64 s
                    sent = parsed.extensions.abs_send_time
                    low = int((before + NTP_EPOCH_S) * 2**18) & 0xFFFFFF
                    ticks = int((after - before) * 2**18)  # +-2: float rounding of the clocks
                    assert (sent - low + 2) % 2**24 <= ticks + 4, (sent, low, ticks)
                    packet.extensions.abs_send_time = sent
                theirs = packet.serialize(extensions_map)
                end = len(theirs) - packet.padding_size
                assert len(ours) == len(theirs) and ours[:end] == theirs[:end]
                assert ours[-1:] == theirs[-1:]
                assert native.sent(packet.sequence_number) == ours
                compared += 1
    assert compared == 450


def _sessions() -> tuple[pylibsrtp.Session, pylibsrtp.Session, pylibsrtp.Session]:
    """Two sending sessions with one key (one for the native writer, one for
    pylibsrtp's protect) and a receiving one."""
    tx = [pylibsrtp.Session(pylibsrtp.Policy(
        key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)) for _ in range(2)]
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=KEY,
                                            ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    return tx[0], tx[1], rx


@built
def test_the_native_writer_protects_as_pylibsrtp_does():
    """Each datagram equals pylibsrtp's protection of the same packet under the same key
    (SRTP is deterministic given key, SSRC and index) and unprotects to it, across a
    sequence number wrap (the rollover counter moves on in the session both share)."""
    extensions_map = _map({"mid": 1, "level": 3})  # no abs-send-time: bytes repeatable
    native = _writer(extensions_map, "0", 0xCAFE, 111)
    ours_tx, their_tx, rx = _sessions()
    address = passthrough._srtp_address(ours_tx)
    for i in range(300):
        seq = (65_400 + i) % 65536
        payload = bytes([i % 256]) * (20 + i)
        datagram = native.write(payload, seq, i * 960, 0, 0, (True, i % 128), address)
        plain = native.sent(seq)
        assert datagram == their_tx.protect(plain)
        assert rx.unprotect(datagram) == plain
    assert native.packets == 300 and native.octets == sum(20 + i for i in range(300))
    assert native.rtp_timestamp == 299 * 960


@built
def test_the_native_history_answers_nacks_as_aiortcs_does():
    """`_WrittenHistory.get` (what aiortc's ``_retransmit`` calls) gives the packet last
    written at ``seq % 128``, parsed back: aiortc checks its sequence number."""
    extensions_map = _map({"mid": 1, "abs": 2})
    native = _writer(extensions_map, "0", 7, 96)
    history = passthrough._WrittenHistory(native, extensions_map)
    assert history.get(5) is None
    for seq in range(1000, 1200):
        native.write(struct.pack("!H", seq), seq, seq * 3000, seq % 2, 0, None, 0)
    for seq in range(1072, 1200):  # the last 128
        packet = history.get(seq % 128)
        assert packet.sequence_number == seq and packet.payload == struct.pack("!H", seq)
        assert packet.timestamp == seq * 3000 and packet.marker == seq % 2
        assert packet.ssrc == 7 and packet.payload_type == 96 and packet.extensions.mid == "0"
    assert history.get(1071 % 128).sequence_number == 1071 + 128  # overwritten


@built
def test_the_native_writer_refuses_bad_input_with_typed_errors():
    extensions_map = _map({"mid": 1})
    writer = _writer(extensions_map, "0", 7, 96)
    with pytest.raises(ValueError, match="padding_size"):
        writer.write(b"x", 1, 1, 0, 256, None, 0)
    with pytest.raises(ValueError, match="audio_level"):
        writer.write(b"x", 1, 1, 0, 0, (True,), 0)
    with pytest.raises(ValueError, match="seq"):
        writer.write(b"x", 70_000, 1, 0, 0, None, 0)
    with pytest.raises(TypeError):
        writer.write("text", 1, 1, 0, 0, None, 0)
    with pytest.raises(TypeError):
        writer.write(b"x", 1, 1)
    with pytest.raises(ValueError, match="extension ids"):
        native._built.Writer(7, 96, b"", 15, 0, passthrough._SRTP.protect)
    with pytest.raises(ValueError, match="protect function"):
        native._built.Writer(7, 96, b"", 1, 0, 0)
    assert writer.packets == 0  # nothing refused was counted
    big = writer.write(bytes(9000), 2, 2, 0, 0, None, 0)  # larger than any MTU: still whole
    assert len(big) == 12 + 4 + 4 + 9000


def _video_arrivals(rng: random.Random, seconds: float) -> list[tuple[int, int, int, int]]:
    """(arrival ms, abs-send-time, size, SSRC) of a 30 fps stream through a link whose
    queue grows (congestion), drains and jitters, with reordering (arrival times only
    move on: what was sent is reordered), a pause of 2 s (the incoming rate restarts)
    and a second SSRC (a retransmission stream)."""
    packets = []
    queue_ms, send, frame = 5.0, 1_700_000_000.0, 0
    while send < 1_700_000_000.0 + seconds:
        phase = (send % 20) / 20
        queue_ms += 1.5 if phase < 0.3 else (-2.0 if phase < 0.5 else rng.uniform(-0.3, 0.3))
        queue_ms = min(max(queue_ms, 1.0), 400.0)
        for k in range(rng.choice([1, 2, 3, 4, 8])):
            at = send + k * 0.0004
            abs_send_time = int(at * 2**18) & 0xFFFFFF
            arrival_ms = int((at + (queue_ms + rng.uniform(0, 3)) / 1000) * 1000)
            arrival_ms = max(arrival_ms, packets[-1][0] if packets else 0)
            ssrc = 0x2222 if rng.random() < 0.03 else 0x1111
            packets.append((arrival_ms, abs_send_time, rng.randint(200, 1200), ssrc))
        if rng.random() < 0.02 and len(packets) > 2:  # two packets swapped on the way
            (a, *sent_a), (b, *sent_b) = packets[-2], packets[-1]
            packets[-2:] = [(a, *sent_b), (b, *sent_a)]
        frame += 1
        send += 1 / 30 + (2.0 if frame == 400 else 0.0)
    return packets


@built
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_native_estimator_answers_as_aiortcs(seed):
    """aiortc's RemoteBitrateEstimator and the native one, fed the same packets, give
    the same REMB (bitrate and SSRCs) at the same packets, through congestion (overuse:
    a decrease), recovery and a pause."""
    from aiortc.rate import RemoteBitrateEstimator

    packets = _video_arrivals(random.Random(seed), 60.0)
    theirs, ours = RemoteBitrateEstimator(), native._built.Estimator()
    answers = []
    for arrival_ms, abs_send_time, size, ssrc in packets:
        expected = theirs.add(arrival_time_ms=arrival_ms, abs_send_time=abs_send_time,
                              payload_size=size, ssrc=ssrc)
        got = ours.add(arrival_ms, abs_send_time, size, ssrc)
        assert got == expected, (len(answers), arrival_ms)
        if got is not None:
            answers.append(got[0])
    assert len(packets) > 5000 and len(answers) > 100
    falls = sum(b < a * 0.9 for a, b in itertools.pairwise(answers))
    assert falls >= 2, answers  # the congestion phases were seen as overuse


@built
def test_the_native_estimator_refuses_bad_input():
    ours = native._built.Estimator()
    with pytest.raises(ValueError, match="abs_send_time"):
        ours.add(1, 2**24, 10, 1)
    with pytest.raises(ValueError, match="payload_size"):
        ours.add(1, 1, -1, 1)
    with pytest.raises(TypeError):
        ours.add(1, 1, 1)


@built
def test_the_native_unprotect_gives_pylibsrtps_packets_and_drops_what_it_refuses():
    """RTP and RTCP through the native unprotect and pylibsrtp's, from two receiving
    sessions with one key: the same packets; a tampered or replayed datagram is None
    (aiortc drops what pylibsrtp refuses)."""
    from aiortc.rtp import RtcpRrPacket

    tx = pylibsrtp.Session(pylibsrtp.Policy(key=KEY,
                                            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rx = [pylibsrtp.Session(pylibsrtp.Policy(
        key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)) for _ in range(2)]
    address = passthrough._srtp_address(rx[0])
    functions = passthrough._SRTP
    for i in range(200):
        plain = RtpPacket(payload_type=96, sequence_number=(65_500 + i) % 65536,
                          timestamp=i * 3000, ssrc=0xBEEF,
                          payload=bytes([i % 256]) * (1 + i * 5)).serialize()
        datagram = tx.protect(plain)
        assert native._built.unprotect(functions.unprotect, address, datagram) == plain
        assert rx[1].unprotect(datagram) == plain
        if i % 50 == 0:  # replayed, then tampered with
            assert native._built.unprotect(functions.unprotect, address, datagram) is None
            forged = datagram[:-1] + bytes([datagram[-1] ^ 1])
            assert native._built.unprotect(functions.unprotect, address, forged) is None
    report = bytes(RtcpRrPacket(ssrc=0xBEEF))
    protected = tx.protect_rtcp(report)
    assert native._built.unprotect(functions.unprotect_rtcp, address, protected) == report
    with pytest.raises(TypeError):
        native._built.unprotect(functions.unprotect, address, bytearray(protected))
    with pytest.raises(ValueError):
        native._built.unprotect(functions.unprotect, 0, protected)


def _parse_both(data: bytes, extensions_map: HeaderExtensionsMap):
    from aiortc.rtp import HeaderExtensions

    ids = extensions_map._HeaderExtensionsMap__ids
    ours = native._built.parse_rtp(data, ids, RtpPacket, HeaderExtensions)
    try:
        theirs = RtpPacket.parse(data, extensions_map)
    except Exception as exc:  # noqa: BLE001 - what aiortc raises, whatever it is
        theirs = exc
    return ours, theirs


@built
def test_the_native_parse_gives_aiortcs_packets_and_leaves_it_the_rest():
    """Random packets (CSRCs, padding, one-byte extensions under three maps, repeated
    and unknown elements) and the same with random bytes broken: where the native parse
    answers, its RtpPacket has aiortc's attributes and values; what aiortc refuses (or
    reads in the two-byte form) the native parse leaves to it (NotImplemented)."""
    rng = random.Random(13)
    answered = left = refused = 0
    for ids in ({"mid": 1, "abs": 2, "level": 3}, {"mid": 9, "abs": 14}, {}):
        extensions_map = _map(ids)
        for _ in range(3000):
            elements = []
            for _ in range(rng.randint(0, 4)):
                x_id = rng.choice([*ids.values(), rng.randint(1, 15)])
                size = {ids.get("abs"): 3, ids.get("level"): 1}.get(x_id, rng.randint(1, 16))
                if x_id == ids.get("mid"):
                    value = rng.choice([b"0", b"camera", "\u00e9".encode(), b"\xff\xfe"])
                else:
                    value = rng.randbytes(size if rng.random() < 0.9 else rng.randint(1, 16))
                elements.append(bytes([x_id << 4 | len(value) - 1]) + value)
            block = b"".join(elements)
            block += b"\x00" * (-len(block) % 4)
            cc, padding = rng.choice([0, 0, 2]), rng.choice([0, 0, 1, 9])
            first = 0x80 | (padding > 0) << 5 | bool(block) << 4 | cc
            data = (bytes([first, rng.randint(0, 255)]) + rng.randbytes(10)
                    + rng.randbytes(4 * cc)
                    + (b"\xbe\xde" + (len(block) // 4).to_bytes(2, "big") + block
                       if block else b"")
                    + rng.randbytes(rng.randint(0, 300))
                    + (bytes(padding - 1) + bytes([padding]) if padding else b""))
            if rng.random() < 0.3:  # broken somewhere (or cut short)
                at = rng.randrange(len(data))
                data = (data[:at] + bytes([rng.randint(0, 255)]) + data[at + 1:]
                        if rng.random() < 0.7 else data[:at])
            ours, theirs = _parse_both(data, extensions_map)
            if ours is NotImplemented:
                left += 1
                refused += isinstance(theirs, Exception)
                continue
            assert not isinstance(theirs, Exception), (data.hex(), theirs)
            assert vars(ours).keys() == vars(theirs).keys()
            assert vars(ours) == vars(theirs), data.hex()
            answered += 1
    assert answered > 5000 and left > 500 and refused > 100, (answered, left, refused)


def _rss_mb() -> float:
    for line in open("/proc/self/status").read().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@built
def test_the_native_part_holds_no_memory_per_packet():
    """100,000 packets through every native piece (write and protect, unprotect, parse,
    estimate, rewrite) after a warm-up: resident memory stays within 8 MB (a leak of
    the packets alone would be over 60 MB)."""
    from aiortc.rtp import HeaderExtensions

    extensions_map = _map({"mid": 1, "abs": 2})
    ids = extensions_map._HeaderExtensionsMap__ids
    writer = _writer(extensions_map, "0", 0xCAFE, 96)
    tx, _, rx = _sessions()
    tx_address, rx_address = passthrough._srtp_address(tx), passthrough._srtp_address(rx)
    estimator, rewriter = native._built.Estimator(), native._built.Rewriter(90_000, True)
    functions = passthrough._SRTP
    payload = bytes(640)

    def packets(first: int, count: int) -> None:
        for n in range(first, first + count):
            seq = n % 65536
            datagram = writer.write(payload, seq, n * 3000, 0, 0, None, tx_address)
            plain = native._built.unprotect(functions.unprotect, rx_address, datagram)
            packet = native._built.parse_rtp(plain, ids, RtpPacket, HeaderExtensions)
            estimator.add(n // 3, packet.extensions.abs_send_time, len(packet.payload), 1)
            rewriter.map(1, seq, n * 3000, n % 30 == 0, n / 100)

    packets(0, 20_000)
    before = _rss_mb()
    packets(20_000, 100_000)
    assert _rss_mb() - before < 8, (before, _rss_mb())


@built
def test_native_objects_made_without_init_refuse_work_instead_of_crashing():
    writer = native._built.Writer.__new__(native._built.Writer)
    with pytest.raises(ValueError, match="not initialised"):
        writer.write(b"x", 1, 1, 0, 0, None, 1)
    estimator = native._built.Estimator.__new__(native._built.Estimator)
    with pytest.raises(ValueError, match="not initialised"):
        estimator.add(1, 1, 1, 1)
