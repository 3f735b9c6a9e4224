"""The cursor buffer: big-endian pulls and pushes, one error for reading past the end."""

from __future__ import annotations

import pytest

from kl2tp.l2tp.buffer import Buffer, BufferReadError


def test_pulls_are_big_endian_and_advance() -> None:
    buf = Buffer(bytes.fromhex("c8 02 00 2a d7e60000 0102030405060708 ff"))
    assert buf.pull_uint16() == 0xC802
    assert buf.pull_uint8() == 0x00
    assert buf.pull_uint8() == 0x2A
    assert buf.pull_uint32() == 0xD7E60000
    assert buf.pull_uint64() == 0x0102030405060708
    assert buf.tell() == 16 and buf.remaining() == 1 and not buf.eof()
    assert buf.pull_bytes(1) == b"\xff"
    assert buf.eof()


def test_reading_past_the_end_raises_buffer_read_error() -> None:
    buf = Buffer(b"\x01\x02\x03")
    buf.pull_uint16()
    with pytest.raises(BufferReadError):
        buf.pull_uint16()
    assert buf.tell() == 2  # a failed pull does not move the cursor
    with pytest.raises(BufferReadError):
        buf.pull_bytes(2)
    with pytest.raises(BufferReadError):
        buf.pull_bytes(-1)


def test_window_limits_reads() -> None:
    buf = Buffer(b"abcdef", start=1, end=3)
    assert buf.pull_bytes(2) == b"bc"
    with pytest.raises(BufferReadError):
        buf.pull_uint8()


def test_seek_stays_in_range() -> None:
    buf = Buffer(b"abcd")
    buf.seek(4)
    assert buf.eof()
    with pytest.raises(BufferReadError):
        buf.seek(5)
    with pytest.raises(BufferReadError):
        buf.seek(-1)


def test_push_builds_bytes() -> None:
    buf = Buffer()
    buf.push_uint16(0xC802)
    buf.push_uint8(0)
    buf.push_uint8(12)
    buf.push_uint32(0x45180000)
    buf.push_uint64(1)
    buf.push_bytes(b"xy")
    assert buf.data == bytes.fromhex("c802000c451800000000000000000001") + b"xy"
    assert buf.tell() == len(buf.data)


def test_buffer_over_bytes_is_read_only() -> None:
    with pytest.raises(TypeError):
        Buffer(b"ab").push_uint8(1)
