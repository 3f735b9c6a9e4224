"""RADIUS accounting that is never lost silently: a bounded queue, retries, a spool file.

Records wait in a FIFO while senders (a few concurrent tasks) hand them to the client, which
retransmits and fails over across the servers. A record no server took goes back to the
front and is tried again after a pause, for as long as the daemon runs. At shutdown,
whatever is still queued or in flight is written to the spool file (one JSON object a line);
the next start sends those first. Each send carries Acct-Delay-Time (RFC 2866 5.2): seconds
since the event.

A record is dropped only when the queue is full (``[radius] accounting_queue``) or a spooled
line cannot be read back; each drop is a log line with the reason and is counted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import attrs
import trio

from kl2tp.aaa.radius.client import RadiusClient

__all__ = ["AccountingQueue", "AcctEntry"]

log = logging.getLogger("kl2tp.aaa")

Value = str | int | bytes | IPv4Address


@attrs.define(slots=True)
class AcctEntry:
    """One Accounting-Request waiting to be sent."""

    attributes: list[tuple[str, Value]]
    """Attribute name and value pairs (repeats allowed), without Acct-Delay-Time."""
    event_time: float
    """Wall-clock time (epoch seconds) of the event: Acct-Delay-Time counts from here."""
    barrier: bool = False
    """Sent alone: after everything queued before it was acknowledged, before anything
    queued after it is sent (Accounting-On and -Off)."""

    @property
    def label(self) -> str:
        """``Stop 5f2c...`` for log lines."""
        status = session = ""
        for name, value in self.attributes:
            if name == "Acct-Status-Type":
                status = str(value)
            elif name == "Acct-Session-Id":
                session = str(value)
        return f"{status} {session}".strip()

    def to_json(self) -> str:
        """One spool line."""
        pairs: list[list[object]] = []
        for name, value in self.attributes:
            if isinstance(value, bytes):
                pairs.append([name, "b", value.hex()])
            elif isinstance(value, int):
                pairs.append([name, "i", value])
            else:
                pairs.append([name, "s", str(value)])
        data: dict[str, object] = {"t": self.event_time, "a": pairs}
        if self.barrier:
            data["barrier"] = True
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> AcctEntry:
        """Parse a spool line; ValueError (or KeyError/TypeError) when it is damaged."""
        data = json.loads(line)
        attributes: list[tuple[str, Value]] = []
        for name, kind, value in data["a"]:
            if kind == "b":
                attributes.append((str(name), bytes.fromhex(value)))
            elif kind == "i":
                attributes.append((str(name), int(value)))
            elif kind == "s":
                attributes.append((str(name), str(value)))
            else:
                raise ValueError(f"unknown value kind {kind!r}")
        return cls(attributes, float(data["t"]), bool(data.get("barrier", False)))


@attrs.define
class AcctCounters:
    """Accounting queue totals for ``kl2tpctl show summary``."""

    queued: int = 0
    """Records accepted into the queue."""
    sent: int = 0
    """Records a server acknowledged."""
    retried: int = 0
    """Times a record went back to the queue because no server answered."""
    dropped: int = 0
    """Records dropped (queue full, damaged spool line)."""
    spooled: int = 0
    """Records written to the spool file at shutdown."""
    unspooled: int = 0
    """Records read back from the spool file at start."""


class AccountingQueue:
    """The accounting sender.

    Args:
        client: the RADIUS client (already running while `run` runs).
        maxlen: most records waiting (in flight ones not counted).
        spool: the spool file; None: records unsent at shutdown are dropped (logged).
        senders: concurrent Accounting-Requests.
        retry_pause: seconds before a record no server took is tried again.
        clock: wall clock for Event-Timestamp / Acct-Delay-Time (epoch seconds).
    """

    def __init__(
        self,
        client: RadiusClient,
        *,
        maxlen: int = 100_000,
        spool: Path | None = None,
        senders: int = 32,
        retry_pause: float = 5.0,
        clock: Any = time.time,
    ) -> None:
        self.client = client
        self.maxlen = maxlen
        self.spool = spool
        self.senders = senders
        self.retry_pause = retry_pause
        self.clock = clock
        self.counters = AcctCounters()
        self._queue: deque[AcctEntry] = deque()
        self._in_flight: dict[int, AcctEntry] = {}
        """Records a sender is sending, by ``id()``."""
        self._changed = trio.Event()
        self._barrier_in_flight = False

    def __len__(self) -> int:
        return len(self._queue) + len(self._in_flight)

    def put(
        self,
        attributes: Sequence[tuple[str, Value]],
        event_time: float | None = None,
        *,
        barrier: bool = False,
    ) -> bool:
        """Queue a record (never blocks); False when it had to be dropped (logged).

        ``barrier``: send it alone, after all before it and before all after it.
        """
        entry = AcctEntry(
            list(attributes), self.clock() if event_time is None else event_time, barrier
        )
        if len(self._queue) >= self.maxlen and not barrier:
            self._drop(entry, f"the queue is full ({self.maxlen} records waiting)")
            return False
        self._queue.append(entry)
        self.counters.queued += 1
        self._notify()
        return True

    def _notify(self) -> None:
        """Wake every task waiting for a change (senders, `drain`)."""
        self._changed.set()
        self._changed = trio.Event()

    def _can_take(self) -> bool:
        if not self._queue or self._barrier_in_flight:
            return False
        # A barrier waits until nothing else is in flight.
        return not (self._queue[0].barrier and self._in_flight)

    def _drop(self, entry: AcctEntry, reason: str) -> None:
        self.counters.dropped += 1
        log.error("RADIUS accounting record %s dropped: %s", entry.label, reason)

    # -- running --------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send until cancelled (`drain` first for a clean stop, then `spool_unsent`)."""
        async with trio.open_nursery() as nursery:
            for _ in range(self.senders):
                nursery.start_soon(self._sender)
            task_status.started()

    async def _sender(self) -> None:
        while True:
            while not self._can_take():
                await self._changed.wait()
            entry = self._queue.popleft()
            key = id(entry)
            self._in_flight[key] = entry
            self._barrier_in_flight = entry.barrier
            try:
                ok = await self._send(entry)
            except BaseException:
                self._queue.appendleft(entry)  # cancelled (shutdown): spooled with the rest
                raise
            finally:
                self._in_flight.pop(key, None)
                if entry.barrier:
                    self._barrier_in_flight = False
                self._notify()
            if ok:
                self.counters.sent += 1
                continue
            # No server took it: back to the front, and wait before the next try.
            self.counters.retried += 1
            self._queue.appendleft(entry)
            self._notify()
            await trio.sleep(self.retry_pause)

    async def _send(self, entry: AcctEntry) -> bool:
        packet = self.client.create_acct_packet()
        add = self.client.add_attribute
        for name, value in entry.attributes:
            add(packet, name, str(value) if isinstance(value, IPv4Address) else value)
        add(packet, "Acct-Delay-Time", max(0, int(self.clock() - entry.event_time)))
        reply = await self.client.acct(packet)
        return reply is not None

    async def drain(self, within: float) -> bool:
        """Wait up to ``within`` seconds for every record to be sent; True when none is left."""
        with trio.move_on_after(within):
            while len(self):
                await self._changed.wait()
        return not len(self)

    # -- spool ------------------------------------------------------------------------------------

    def spool_unsent(self) -> int:
        """Write what is still queued or in flight to the spool file (blocking: call it
        at shutdown, after the senders stopped); returns how many records were written."""
        entries = [*self._in_flight.values(), *self._queue]
        self._queue.clear()
        self._in_flight.clear()
        if not entries:
            return 0
        if self.spool is None:
            for entry in entries:
                self._drop(entry, "unsent at shutdown and no spool file is configured")
            return 0
        try:
            self.spool.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.spool, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as out:
                for entry in entries:
                    out.write(entry.to_json() + "\n")
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            for entry in entries:
                self._drop(entry, f"unsent at shutdown and the spool file failed: {exc}")
            return 0
        self.counters.spooled += len(entries)
        log.warning(
            "RADIUS accounting: %d records unsent at shutdown written to %s",
            len(entries),
            self.spool,
        )
        return len(entries)

    def load_spool(self) -> int:
        """Queue the records an earlier run spooled, ahead of anything else, and remove the
        file (blocking: call it at start); returns how many were queued."""
        if self.spool is None:
            return 0
        try:
            text = self.spool.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            log.error("RADIUS accounting spool %s unreadable, left in place: %s", self.spool, exc)
            return 0
        entries: list[AcctEntry] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entries.append(AcctEntry.from_json(line))
            except (ValueError, KeyError, TypeError) as exc:
                self.counters.dropped += 1
                log.error(
                    "RADIUS accounting spool %s line %d dropped: damaged (%s)",
                    self.spool,
                    number,
                    exc,
                )
        self._queue.extendleft(reversed(entries))
        self.counters.unspooled += len(entries)
        try:
            self.spool.unlink()
        except OSError as exc:
            log.error("RADIUS accounting spool %s not removed: %s", self.spool, exc)
        if entries:
            self._notify()
            log.info(
                "RADIUS accounting: %d spooled records queued from %s", len(entries), self.spool
            )
        return len(entries)

    def summary(self) -> Mapping[str, int]:
        """Counters plus the current queue length."""
        out = attrs.asdict(self.counters)
        out["waiting"] = len(self)
        return out
