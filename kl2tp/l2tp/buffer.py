"""A cursor over bytes (aioquic style): pull_* reads big-endian fields and advances, push_*
appends. Reading past the end raises the single BufferReadError."""

from __future__ import annotations

import struct

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class BufferReadError(ValueError):
    """A read ran past the end of the buffer."""


class Buffer:
    """Read cursor over `data` (from `start` to `end`) or, with no data, a growable writer."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(
        self, data: bytes | bytearray | None = None, start: int = 0, end: int = -1
    ) -> None:
        self._data: bytes | bytearray = bytearray() if data is None else data
        self._pos = start
        self._end = len(self._data) if end < 0 else end

    # --- position ---------------------------------------------------------------------
    @property
    def data(self) -> bytes:
        """Everything written (writer) or the whole underlying data (reader)."""
        return bytes(self._data)

    @property
    def end(self) -> int:
        """Offset one past the last readable byte."""
        return self._end

    def tell(self) -> int:
        """Current offset into the underlying data."""
        return self._pos

    def seek(self, pos: int) -> None:
        """Move the cursor; BufferReadError when outside the readable range."""
        if pos < 0 or pos > self._end:
            raise BufferReadError(f"seek to {pos} outside 0..{self._end}")
        self._pos = pos

    def remaining(self) -> int:
        """Bytes left to read."""
        return self._end - self._pos

    def eof(self) -> bool:
        """True when nothing is left to read."""
        return self._pos >= self._end

    # --- reading ----------------------------------------------------------------------
    def _need(self, n: int) -> int:
        pos = self._pos
        if pos + n > self._end:
            raise BufferReadError(f"need {n} bytes at {pos}, have {self._end - pos}")
        self._pos = pos + n
        return pos

    def pull_uint8(self) -> int:
        """Read one byte."""
        return self._data[self._need(1)]

    def pull_uint16(self) -> int:
        """Read a big-endian 16-bit unsigned integer."""
        return int(_U16.unpack_from(self._data, self._need(2))[0])

    def pull_uint32(self) -> int:
        """Read a big-endian 32-bit unsigned integer."""
        return int(_U32.unpack_from(self._data, self._need(4))[0])

    def pull_uint64(self) -> int:
        """Read a big-endian 64-bit unsigned integer."""
        return int(_U64.unpack_from(self._data, self._need(8))[0])

    def pull_bytes(self, n: int) -> bytes:
        """Read `n` bytes."""
        if n < 0:
            raise BufferReadError(f"negative length {n}")
        pos = self._need(n)
        return bytes(self._data[pos : pos + n])

    # --- writing ----------------------------------------------------------------------
    def _writable(self) -> bytearray:
        if not isinstance(self._data, bytearray):
            raise TypeError("Buffer over bytes is read-only")
        return self._data

    def push_uint8(self, v: int) -> None:
        """Append one byte."""
        self._writable().append(v)
        self._pos = self._end = len(self._data)

    def push_uint16(self, v: int) -> None:
        """Append a big-endian 16-bit unsigned integer."""
        self._writable().extend(_U16.pack(v))
        self._pos = self._end = len(self._data)

    def push_uint32(self, v: int) -> None:
        """Append a big-endian 32-bit unsigned integer."""
        self._writable().extend(_U32.pack(v))
        self._pos = self._end = len(self._data)

    def push_uint64(self, v: int) -> None:
        """Append a big-endian 64-bit unsigned integer."""
        self._writable().extend(_U64.pack(v))
        self._pos = self._end = len(self._data)

    def push_bytes(self, v: bytes | bytearray) -> None:
        """Append raw bytes."""
        self._writable().extend(v)
        self._pos = self._end = len(self._data)
