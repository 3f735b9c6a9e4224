"""Property tests: the decoder only ever raises the project's errors, and encode/decode
round-trip every valid message (STYLE.md section 4)."""

from __future__ import annotations

import contextlib
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kl2tp.l2tp.avp import (
    AVP_TABLE,
    Accm,
    Avp,
    CallErrors,
    ProtocolVersion,
    Q931Cause,
    ResultCode,
)
from kl2tp.l2tp.constants import AvpType, ErrorCode, MessageType
from kl2tp.l2tp.errors import DecodeError, ProtocolError
from kl2tp.l2tp.message import ControlMessage, DataMessage, decode, encode_control, inspect

SECRET = b"hello"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GOLDEN = [
    bytes.fromhex(x.replace(" ", ""))
    for x in (
        # SCCCN, ICRP, CDN, StopCCN and a ZLB from the reference trace
        "c802002ad7e6000000010001800800000000000380160000000d963953184 1ac22e3103e208ef7d90989",
        "c802001c451800070001000380080000000000 0b80080000000e002d",
        "c8020026d7e6002d000400028008000000000 00e80080000000e0007800a0000000100010000",
        "c802002445180000000200058008000000000004800800000009d7e68008000000010001",
        "c802000c4518000000010002",
    )
]


def test_golden_seed_corpus_is_complete() -> None:
    lengths = [len(g) for g in GOLDEN]
    assert lengths == [42, 28, 38, 36, 12]
    for g in GOLDEN:
        assert encode_control(decode(g)) == g  # type: ignore[arg-type]


def decode_or_project_error(data: bytes, secret: bytes | None = None) -> None:
    try:
        decode(data, secret)
    except DecodeError:
        pass
    except ProtocolError as e:
        # Only an unknown AVP or message type with the M bit set raises ProtocolError here.
        assert (e.result, e.error) == (2, ErrorCode.UNKNOWN_MANDATORY_AVP)
    with contextlib.suppress(DecodeError):
        inspect(data, secret, truncated_ok=True)


@FUZZ
@given(st.binary(max_size=200), st.sampled_from([None, SECRET]))
def test_random_bytes_raise_only_project_errors(data: bytes, secret: bytes | None) -> None:
    decode_or_project_error(data, secret)


@FUZZ
@given(st.binary(max_size=120))
def test_random_control_bodies_raise_only_project_errors(body: bytes) -> None:
    # A valid control header in front, so the fuzzing reaches the AVP parser.
    header = bytes.fromhex("c802") + (12 + len(body)).to_bytes(2, "big") + bytes(8)
    decode_or_project_error(header + body)
    decode_or_project_error(header + b"\x80\x08\x00\x00\x00\x00\x00\x01" + body, SECRET)


@st.composite
def mutated_golden(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(GOLDEN)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[i] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[i:]
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@FUZZ
@given(mutated_golden(), st.sampled_from([None, SECRET]))
def test_mutated_golden_packets_raise_only_project_errors(
    data: bytes, secret: bytes | None
) -> None:
    decode_or_project_error(data, secret)


# --- round trips ---------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
nonempty_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
blob = st.binary(max_size=60)
nonempty_blob = st.binary(min_size=1, max_size=60)

VALUE_BY_KIND: dict[str, st.SearchStrategy[object]] = {
    "u16": u16,
    "u32": u32,
    "u8": u8,
    "str": text,
    "bytes": blob,
    "empty": st.just(True),
    "version": st.builds(ProtocolVersion, u8, u8),
    "q931": st.builds(Q931Cause, u16, u8, st.none() | nonempty_text),
    "callerrors": st.builds(CallErrors, u32, u32, u32, u32, u32, u32),
    "accm": st.builds(Accm, u32, u32),
    "result": st.one_of(
        st.builds(ResultCode, u16),
        st.builds(ResultCode, u16, u16, st.none() | nonempty_text),
    ),
}
SPECIAL: dict[int, st.SearchStrategy[object]] = {
    AvpType.HOST_NAME: nonempty_text,
    AvpType.CHALLENGE: nonempty_blob,
    AvpType.RANDOM_VECTOR: nonempty_blob,
    AvpType.TIE_BREAKER: st.binary(min_size=8, max_size=8),
    AvpType.CHALLENGE_RESPONSE: st.binary(min_size=16, max_size=16),
}


def ietf_avp(t: int) -> st.SearchStrategy[Avp]:
    value = SPECIAL[t] if t in SPECIAL else VALUE_BY_KIND[AVP_TABLE[t].codec.kind]
    return st.builds(Avp, st.just(AvpType(t)), value, st.just(0), st.booleans())


any_avp = st.one_of(
    st.sampled_from([t for t in AVP_TABLE if t != 0]).flatmap(ietf_avp),
    # vendor AVPs and unknown IETF AVPs without M: opaque bytes
    st.builds(Avp, u16, blob, st.integers(1, 0xFFFF), st.just(False)),
    st.builds(Avp, st.integers(40, 0xFFFF) | st.just(20), blob, st.just(0), st.just(False)),
)

control_messages = st.builds(
    ControlMessage,
    st.sampled_from(list(MessageType)),
    u16,
    u16,
    u16,
    u16,
    st.lists(any_avp, max_size=8).map(tuple),
)


@FUZZ
@given(control_messages)
def test_control_round_trip(msg: ControlMessage) -> None:
    data = encode_control(msg)
    back = decode(data)
    assert back == msg
    assert encode_control(back) == data


@FUZZ
@given(u16, u16, u16, u16, st.binary(max_size=100), st.booleans())
def test_data_round_trip(tid: int, sid: int, ns: int, nr: int, payload: bytes, seq: bool) -> None:
    from kl2tp.l2tp.message import encode_data

    data = encode_data(tid, sid, payload, ns if seq else None, nr if seq else None)
    assert decode(data) == DataMessage(tid, sid, ns if seq else None, nr if seq else None, payload)


@FUZZ
@given(control_messages, st.integers(0, 2**32))
def test_hidden_round_trip(msg: ControlMessage, seed: int) -> None:
    hide = frozenset(a.type for a in msg.avps if a.vendor == 0)
    data = encode_control(msg, SECRET, hide, random.Random(seed))
    back = decode(data, SECRET)
    assert isinstance(back, ControlMessage)

    def plain(avps: tuple[Avp, ...]) -> list[tuple[int, int, object, bool]]:
        return [(a.type, a.vendor, a.value, a.mandatory) for a in avps if a.type != 36]

    assert plain(back.avps) == plain(msg.avps)
    for a in back.avps:
        spec = AVP_TABLE.get(a.type) if a.vendor == 0 else None
        assert a.hidden == (spec is not None and spec.may_hide)
