"""decode()'s fast paths (plain data messages, well-formed control headers) agree with the
general decoder on every input: same message, or the same exception with the same offset."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kl2tp.l2tp import message
from kl2tp.l2tp.errors import DecodeError, ProtocolError
from tests.l2tp.test_decode_fuzz import GOLDEN

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DATA_MESSAGES = [
    bytes.fromhex("0002 d7e6 002d ff03c021 0101000a 0506 109d08f2"),  # T=0, no L/S
    bytes.fromhex("4002 0012 d7e6 002d ff03 c021 0101 0004"),  # L
    bytes.fromhex("0802 d7e6 002d 0001 0002 ff03 c021"),  # S
    bytes.fromhex("4a02 0014 d7e6 002d 0003 0004 0000 ff03 c021"),  # L S O
]


def outcome(fn: object, data: bytes) -> tuple[str, object]:
    try:
        return ("ok", fn(data))  # type: ignore[operator]
    except (DecodeError, ProtocolError) as exc:
        return (type(exc).__name__, (str(exc), getattr(exc, "offset", None)))


def general(data: bytes) -> object:
    return message._decode(
        data, None, keep_hidden=False, strict=True, allow_truncated=False
    ).message


def assert_same(data: bytes) -> None:
    assert outcome(message.decode, data) == outcome(general, data), data.hex()


def test_known_packets_agree() -> None:
    for data in GOLDEN + DATA_MESSAGES:
        assert_same(data)


@FUZZ
@given(st.sampled_from(GOLDEN + DATA_MESSAGES), st.data())
def test_mutated_packets_agree(seed: bytes, data: st.DataObject) -> None:
    buf = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    assert_same(bytes(buf[:cut]) if data.draw(st.booleans()) else bytes(buf))


@FUZZ
@given(st.binary(max_size=64))
def test_random_bytes_agree(data: bytes) -> None:
    assert_same(data)
