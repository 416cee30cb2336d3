"""The sans-IO framing and request decoding: every split of the byte stream, hostile sizes,
and mutated valid requests (only ProtocolError, never another exception)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logq.errors import ConfigError, LogqError, ProtocolError
from logq.server import kio_api
from logq.server.framing import DEFAULT_MAX_REQUEST_BYTES, FrameDecoder, frame, size_prefix

from tests.server import wire


def _sample_frames() -> list[bytes]:
    m = wire.request_class(3, 5)
    meta = m(
        topics=(m.__dataclass_fields__["topics"].type.__args__[0].__args__[0](name="t"),),
        allow_auto_topic_creation=True,
    )
    av = wire.request_class(18, 3)(client_software_name="x", client_software_version="1")
    return [
        wire.request_frame(3, 5, 1, meta),
        wire.request_frame(18, 3, 2, av),
        struct.pack(">i", 0),  # an empty frame is a frame
        frame(b"abc"),
    ]


def test_frame_prefixes_the_payload_with_its_big_endian_size() -> None:
    assert frame(b"xyz") == b"\x00\x00\x00\x03xyz"
    assert frame(b"") == b"\x00\x00\x00\x00"


def test_size_prefix_is_the_prefix_frame_writes() -> None:
    assert size_prefix(3) + b"xyz" == frame(b"xyz")
    assert size_prefix(0) == b"\x00\x00\x00\x00"


def test_the_default_request_limit_is_100_mib_as_kafka() -> None:
    assert DEFAULT_MAX_REQUEST_BYTES == 100 * 1024 * 1024
    assert FrameDecoder().max_request_bytes == DEFAULT_MAX_REQUEST_BYTES


def test_a_stream_split_at_every_byte_gives_the_same_frames() -> None:
    frames = _sample_frames()
    stream = b"".join(frames)
    expected = [f[4:] for f in frames]
    for cut in range(len(stream) + 1):
        dec = FrameDecoder()
        got = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
        assert got == expected, cut
        assert not dec.in_frame and dec.buffered_bytes == 0


def test_a_stream_fed_one_byte_at_a_time_gives_the_same_frames() -> None:
    frames = _sample_frames()
    dec = FrameDecoder()
    got: list[bytes] = []
    for b in b"".join(frames):
        got += dec.feed(bytes([b]))
    assert got == [f[4:] for f in frames]


def test_a_partial_frame_is_reported_as_in_progress() -> None:
    dec = FrameDecoder()
    assert dec.feed(b"\x00\x00") == [] and dec.in_frame
    assert dec.feed(b"\x00\x02") == [] and dec.in_frame  # size known, no body yet
    assert dec.feed(b"a") == [] and dec.in_frame
    assert dec.feed(b"b") == [b"ab"] and not dec.in_frame


@pytest.mark.parametrize("size", [-1, -(2**31), 11, 2**31 - 1])
def test_a_size_below_zero_or_above_the_limit_is_refused_before_its_body(size: int) -> None:
    dec = FrameDecoder(max_request_bytes=10)
    with pytest.raises(ProtocolError, match="outside"):
        dec.feed(struct.pack(">i", size))
    assert dec.buffered_bytes == 0
    with pytest.raises(ProtocolError):  # stays failed
        dec.feed(frame(b"ok"))


def test_a_frame_exactly_at_the_limit_is_accepted() -> None:
    dec = FrameDecoder(max_request_bytes=10)
    assert dec.feed(frame(b"x" * 10)) == [b"x" * 10]


def test_a_bad_size_after_good_frames_raises_without_returning_them_twice() -> None:
    dec = FrameDecoder(max_request_bytes=10)
    with pytest.raises(ProtocolError):
        dec.feed(frame(b"ok") + struct.pack(">i", 11))


@pytest.mark.parametrize("bad", [0, -5, "10", 1.5, True, None])
def test_max_request_bytes_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_request_bytes"):
        FrameDecoder(bad)  # type: ignore[arg-type]


def _decode(payload: bytes) -> object:
    header = kio_api.parse_header(payload)
    return kio_api.decode_request(header, payload)


def test_valid_requests_decode_to_kio_objects() -> None:
    for f in _sample_frames()[:2]:
        assert _decode(f[4:]) is not None


@pytest.mark.parametrize(
    "payload", [b"", b"\x00", b"\x00\x03\x00\x05\x00\x00\x00\x01", b"\x00\x03\x00\x05\x00\x00\x00\x01\x7f\xff"]
)
def test_truncated_headers_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        _decode(payload)


def test_an_unknown_api_or_version_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="not supported"):
        _decode(struct.pack(">hhih", 999, 0, 1, -1))
    with pytest.raises(ProtocolError, match="not supported"):
        _decode(struct.pack(">hhih", 0, 2, 1, -1))  # Produce v2: removed in Kafka 4


def test_bytes_after_the_body_are_a_protocol_error() -> None:
    f = _sample_frames()[0][4:]
    with pytest.raises(ProtocolError, match="after"):
        _decode(f + b"\x00")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_mutated_valid_requests_raise_only_protocol_errors(data: st.DataObject) -> None:
    payload = bytearray(data.draw(st.sampled_from(_sample_frames()[:2]))[4:])
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(len(payload) - 1, 0)))
        if op == "flip" and payload:
            payload[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del payload[pos:]
        else:
            payload[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    try:
        _decode(bytes(payload))
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_payloads_raise_only_protocol_errors(payload: bytes) -> None:
    try:
        _decode(payload)
    except LogqError as e:
        assert isinstance(e, ProtocolError)


def test_header_v2_tagged_fields_are_skipped_and_a_null_client_id_is_none() -> None:
    body = wire.request_frame(
        18, 3, 1, wire.request_class(18, 3)(client_software_name="x", client_software_version="1")
    )
    payload = body[4:]
    fixed = struct.pack(">hhih", 18, 3, 42, -1)  # null client_id
    tags = b"\x02" + b"\x00\x03abc" + b"\x05\x01z"  # two tagged fields (tag, size, bytes)
    after_header = 8 + 2 + len("test") + 1  # fixed fields, client_id "test", empty tag section
    frame_ = fixed + tags + payload[after_header:]
    header = kio_api.parse_header(frame_)
    assert (header.api_key, header.api_version, header.correlation_id, header.client_id) == (18, 3, 42, None)
    assert header.body_offset == len(fixed) + len(tags)
    assert kio_api.decode_request(header, frame_).client_software_name == "x"


def test_a_tagged_field_running_past_the_header_is_a_protocol_error() -> None:
    frame_ = struct.pack(">hhih", 18, 3, 1, -1) + b"\x01\x00\x7f"
    with pytest.raises(ProtocolError, match="tagged field"):
        kio_api.parse_header(frame_)
