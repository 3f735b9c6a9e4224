"""Reliable delivery of control messages (RFC 2661 section 5.8 and appendix A).

Sans-IO: the tunnel hands in encoded messages and received (ns, nr, message) triples with the
current time; the transport hands back messages to deliver in order and datagrams to send, and
says when it next needs ``handle_timer``.

- Every message is encoded once by the tunnel; Ns and Nr are patched into the header (bytes 8-11,
  control messages always carry the L bit and never the O bit) on each (re)transmission.
- Send window: at most ``send_window`` unacknowledged messages in flight (the peer's Receive
  Window Size AVP, default 4); the rest wait in a FIFO. Sending is O(1) per message.
- Each message in flight has its own retransmission deadline in one heap; the interval doubles
  from ``retransmit_initial`` up to ``retransmit_cap``. After ``max_retries`` retransmissions
  without an ack the transport reports failure and the tunnel goes down.
- Acks are cumulative: an Nr pops acknowledged messages off the front of the in-flight FIFO, so
  an ack costs O(messages it acknowledges), never a scan of the window.
- Received messages: in order -> delivered; duplicates -> re-acked at once (ZLB) and dropped;
  ahead of order but inside our receive window -> queued and delivered in order later; beyond
  the window -> dropped and counted.
- Data held behind a message: a session's data must not overtake its ICCN/OCCN while that waits
  for the send window (``send_after``); it leaves right behind the message's first
  transmission.
- Delayed ack: a ZLB goes out ``ack_delay`` after the first unacknowledged in-order message
  unless something we send first carries the Nr (piggyback); at once when half our receive
  window is unacknowledged, so a busy peer never stalls on our ack timer.
"""

from __future__ import annotations

import heapq
import logging
import struct
from collections import deque
from typing import Generic, TypeVar

from kl2tp.l2tp import trace
from kl2tp.l2tp.seq import seq_add, seq_lt, seq_sub

M = TypeVar("M")

_ZLB = struct.Struct(">HHHHHH")

HELD_PER_MESSAGE = 16
"""Data messages held behind one control message still waiting for the window."""

_NS_OFFSET = 8
"""Ns sits after flags/version, length, tunnel id and session id (L set, O clear)."""

_log = logging.getLogger("kl2tp.l2tp")


def zlb(tunnel_id: int, ns: int, nr: int) -> bytes:
    """A Zero-Length Body control message (header only): an explicit acknowledgement.

    Built here rather than through the codec because it is the hot path of every ack and its
    12 bytes are fixed: flags T, L, S, version 2 (``C8 02``), length 12.
    """
    return _ZLB.pack(0xC802, 12, tunnel_id, 0, ns, nr)


class _Outgoing:
    """One sequenced message we sent or will send."""

    __slots__ = ("acked", "data", "deadline", "ns", "retries")

    def __init__(self, ns: int, data: bytes) -> None:
        self.ns = ns
        self.data = bytearray(data)
        self.retries = 0
        self.deadline = 0.0
        self.acked = False


class Transport(Generic[M]):
    """Ns/Nr bookkeeping, send window, retransmission, reordering and acks for one tunnel.

    Args:
        counters: the tunnel's counter dict; the transport adds ``retransmits``,
            ``duplicates``, ``out_of_window``, ``out_ZLB``, ``in_ZLB``.
        trace_id: the local tunnel id, for trace lines.
        receive_window: our advertised Receive Window Size (how many we queue out of order).
        send_window: the peer's window until it tells us (RFC default 4).
        retransmit_initial, retransmit_cap, max_retries: the backoff (seconds, seconds, count).
        ack_delay: how long an ack may wait for a message to ride on.
    """

    __slots__ = (
        "_ack_deadline",
        "_ack_every",
        "_after",
        "_heap",
        "_heap_tiebreak",
        "_inflight",
        "_out",
        "_pending",
        "_reorder",
        "_unacked_rx",
        "ack_delay",
        "counters",
        "expected_ns",
        "failed",
        "max_retries",
        "next_ns",
        "peer_tunnel_id",
        "receive_window",
        "retransmit_cap",
        "retransmit_initial",
        "send_window",
        "trace_id",
    )

    def __init__(
        self,
        *,
        counters: dict[str, int],
        trace_id: int,
        receive_window: int = 16,
        send_window: int = 4,
        retransmit_initial: float = 1.0,
        retransmit_cap: float = 8.0,
        max_retries: int = 5,
        ack_delay: float = 0.25,
    ) -> None:
        self.counters = counters
        self.trace_id = trace_id
        self.receive_window = max(1, receive_window)
        self.send_window = max(1, send_window)
        self.retransmit_initial = retransmit_initial
        self.retransmit_cap = retransmit_cap
        self.max_retries = max_retries
        self.ack_delay = ack_delay
        self.peer_tunnel_id = 0
        self.next_ns = 0
        """Ns of the next new message (and of every ZLB: ZLBs do not consume a number)."""
        self.expected_ns = 0
        """Ns we expect next from the peer: the Nr we send."""
        self.failed = False
        """Set when a message ran out of retransmissions: the tunnel must go down."""
        self._inflight: deque[_Outgoing] = deque()
        self._pending: deque[_Outgoing] = deque()
        self._heap: list[tuple[float, int, _Outgoing]] = []
        self._heap_tiebreak = 0
        self._reorder: dict[int, M] = {}
        self._out: list[bytes] = []
        self._ack_deadline: float | None = None
        self._unacked_rx = 0
        self._ack_every = max(1, self.receive_window // 2)
        self._after: dict[int, list[bytes]] = {}
        """Datagrams held until the message of the key (an Ns still pending) is transmitted."""

    # --- sending ------------------------------------------------------------------------

    def send(self, data: bytes, now: float) -> int:
        """Sequence an encoded control message; transmit now if the window allows.

        Returns:
            The Ns the message got.
        """
        entry = _Outgoing(self.next_ns, data)
        self.next_ns = seq_add(self.next_ns, 1)
        if len(self._inflight) < self.send_window and not self._pending:
            self._inflight.append(entry)
            self._transmit(entry, now)
        else:
            self._pending.append(entry)
        return entry.ns

    def send_after(self, ns: int, data: bytes) -> bool:
        """Hold datagram ``data`` (a data message) until sequenced message ``ns``, still
        waiting for the send window, has been transmitted; it then leaves right behind it.
        At most ``HELD_PER_MESSAGE`` are held per message; more are dropped and counted
        ``data_held_overflow``.

        Returns:
            False when message ``ns`` is not waiting (it has been transmitted, or was never
            sent): the caller sends ``data`` as usual.
        """
        if not self.waiting(ns):
            return False
        held = self._after.setdefault(ns, [])
        if len(held) < HELD_PER_MESSAGE:
            held.append(data)
            self.counters["data_held"] = self.counters.get("data_held", 0) + 1
        else:
            self.counters["data_held_overflow"] = self.counters.get("data_held_overflow", 0) + 1
        return True

    def waiting(self, ns: int) -> bool:
        """True while sequenced message ``ns`` waits for the send window (queued, never
        transmitted)."""
        pending = self._pending
        return bool(pending) and not seq_lt(ns, pending[0].ns) and seq_lt(ns, self.next_ns)

    def set_send_window(self, size: int, now: float) -> None:
        """The peer's Receive Window Size AVP arrived (RFC: 1..65535, absent = 4)."""
        self.send_window = max(1, min(size, 0xFFFF))
        self._fill_window(now)

    def _transmit(self, entry: _Outgoing, now: float) -> None:
        data = entry.data
        ns = entry.ns
        nr = self.expected_ns
        data[_NS_OFFSET] = ns >> 8
        data[_NS_OFFSET + 1] = ns & 0xFF
        data[_NS_OFFSET + 2] = nr >> 8
        data[_NS_OFFSET + 3] = nr & 0xFF
        packet = bytes(data)
        self._out.append(packet)
        if self._after and entry.retries == 0:
            held = self._after.pop(ns, None)
            if held is not None:
                self._out.extend(held)
        self._ack_deadline = None  # the Nr rides on this message
        self._unacked_rx = 0
        interval = min(self.retransmit_initial * (1 << entry.retries), self.retransmit_cap)
        entry.deadline = now + interval
        self._heap_tiebreak += 1
        heapq.heappush(self._heap, (entry.deadline, self._heap_tiebreak, entry))
        if _log.isEnabledFor(logging.DEBUG):
            trace.packet(self.trace_id, "O", packet, retransmit=entry.retries > 0)

    def _fill_window(self, now: float) -> None:
        pending = self._pending
        inflight = self._inflight
        while pending and len(inflight) < self.send_window:
            entry = pending.popleft()
            inflight.append(entry)
            self._transmit(entry, now)

    # --- receiving ----------------------------------------------------------------------

    def receive(self, ns: int, nr: int, message: M | None, now: float) -> list[M]:
        """Feed one received control message (``None`` for a ZLB) with its header Ns/Nr.

        Returns:
            The messages now deliverable, in sequence order (possibly several when this one
            filled a gap, possibly none).
        """
        freed = self._acknowledge(nr)
        delivered = self._take(ns, message, now)
        if freed:
            # What the ack let out carries the Nr that acknowledges this message too: a
            # peer that acks only when nothing of its own is outstanding (l2tpns) must not
            # wait for our delayed ZLB while our window is full.
            self._fill_window(now)
        return delivered

    def _take(self, ns: int, message: M | None, now: float) -> list[M]:
        """Sequence one received message (not a ZLB): deliver, queue, re-ack or drop."""
        if message is None:
            self.counters["in_ZLB"] = self.counters.get("in_ZLB", 0) + 1
            return []
        expected = self.expected_ns
        if ns == expected:
            delivered = [message]
            expected = seq_add(expected, 1)
            reorder = self._reorder
            while reorder and expected in reorder:
                delivered.append(reorder.pop(expected))
                expected = seq_add(expected, 1)
            self.expected_ns = expected
            self._unacked_rx += len(delivered)
            if self._unacked_rx >= self._ack_every:
                self._ack_deadline = now  # half the peer's window used: ack now, keep it moving
            elif self._ack_deadline is None:
                self._ack_deadline = now + self.ack_delay
            return delivered
        if seq_lt(ns, expected):
            # A retransmission of something we already have: our ack was lost. Re-ack now.
            self.counters["duplicates"] = self.counters.get("duplicates", 0) + 1
            self._ack_deadline = now
            return []
        if seq_sub(ns, expected) < self.receive_window:
            if ns in self._reorder:
                self.counters["duplicates"] = self.counters.get("duplicates", 0) + 1
            else:
                self._reorder[ns] = message
                self.counters["reordered"] = self.counters.get("reordered", 0) + 1
            # Tell the peer at once what we miss; it still retransmits on its own timer.
            self._ack_deadline = now
            return []
        self.counters["out_of_window"] = self.counters.get("out_of_window", 0) + 1
        return []

    def _acknowledge(self, nr: int) -> bool:
        """Pop what ``nr`` acknowledges; True when that freed room in the window."""
        inflight = self._inflight
        if not inflight:
            return False
        count = seq_sub(nr, inflight[0].ns)
        if count == 0 or count > len(inflight):
            return False  # nothing new, or an Nr for messages never sent: ignore it
        for _ in range(count):
            inflight.popleft().acked = True
        return True

    def send_unsequenced(self, data: bytes) -> None:
        """Queue a datagram that takes no part in sequencing (a data message)."""
        self._out.append(data)

    def abandon(self) -> None:
        """Stop retransmitting (the tunnel is closed); acks for the peer still go out."""
        for entry in self._inflight:
            entry.acked = True
        for entry in self._pending:
            entry.acked = True
        self._inflight.clear()
        self._pending.clear()
        self._heap.clear()
        self._reorder.clear()
        self._after.clear()

    def ack_now(self, now: float) -> None:
        """Send a ZLB ack without delay (e.g. for a StopCCN: we are about to go away)."""
        self._ack_deadline = now

    @property
    def unacked(self) -> int:
        """Messages sent or queued that the peer has not acknowledged yet."""
        return len(self._inflight) + len(self._pending)

    # --- time ---------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The next deadline (retransmission or delayed ack), or None."""
        heap = self._heap
        while heap and heap[0][2].acked:
            heapq.heappop(heap)
        deadline = heap[0][0] if heap else None
        ack = self._ack_deadline
        if ack is not None and (deadline is None or ack < deadline):
            return ack
        return deadline

    def handle_timer(self, now: float) -> None:
        """Retransmit what timed out; build the delayed ZLB ack when it is due."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, entry = heapq.heappop(heap)
            if entry.acked:
                continue
            if entry.retries >= self.max_retries:
                self.failed = True
                return
            entry.retries += 1
            self.counters["retransmits"] = self.counters.get("retransmits", 0) + 1
            self._transmit(entry, now)
        ack = self._ack_deadline
        if ack is not None and ack <= now:
            self._ack_deadline = None
            self._unacked_rx = 0
            packet = zlb(self.peer_tunnel_id, self.next_ns, self.expected_ns)
            self.counters["out_ZLB"] = self.counters.get("out_ZLB", 0) + 1
            self._out.append(packet)
            if _log.isEnabledFor(logging.DEBUG):
                trace.packet(self.trace_id, "O", packet)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Everything to put on the wire now (runs ``handle_timer`` for due deadlines)."""
        ack = self._ack_deadline
        if ack is not None and ack <= now:
            self.handle_timer(now)
        out = self._out
        self._out = []
        return out
