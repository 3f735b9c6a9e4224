"""Rate limits for log lines a peer can cause.

Anyone who can send a datagram can make the daemon want to log: an SCCRQ from outside
``allowed_peers``, a malformed message, a refused call. Logging each one lets a spoofed flood
fill the disk and drown the lines an operator needs, so every warning a peer causes goes
through a :class:`WarnLimiter`: per reason, a burst is logged, then at most one line per
``interval``, and the next line logged says how many were suppressed in between.

Sans-IO like the cores: the caller passes ``now``; nothing here reads a clock. Memory is
bounded by the number of distinct reasons, which the code (not the peer) chooses: never put a
peer-supplied value (an address, a host name) into a reason.
"""

from __future__ import annotations

__all__ = ["WarnLimiter", "suppressed_note"]


class _Bucket:
    """One reason's state: a token bucket refilled one token per ``interval``."""

    __slots__ = ("suppressed", "tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        """Lines that may be logged now (refills up to the burst)."""
        self.updated = now
        """When ``tokens`` was last brought up to date."""
        self.suppressed = 0
        """Lines refused since the last one logged."""


class WarnLimiter:
    """Per-reason limiter for peer-caused warnings (a token bucket per reason).

    Args:
        per_reason_burst: lines of one reason logged back to back before limiting starts
            (at least 1).
        interval: seconds per further line of one reason once the burst is spent (the bucket
            gains one token per ``interval``, up to ``per_reason_burst``).

    Example::

        ok, suppressed = limiter.should_log("sccrq_not_allowed", now)
        if ok:
            log.warning("SCCRQ from %s refused: not in allowed_peers%s", host,
                        suppressed_note(suppressed))
    """

    __slots__ = ("_buckets", "burst", "interval")

    def __init__(self, per_reason_burst: int = 5, interval: float = 60.0) -> None:
        if per_reason_burst < 1:
            raise ValueError("per_reason_burst must be at least 1")
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.burst = per_reason_burst
        """Lines per reason logged back to back."""
        self.interval = interval
        """Seconds per further line once the burst is spent."""
        self._buckets: dict[str, _Bucket] = {}

    def should_log(self, reason: str, now: float) -> tuple[bool, int]:
        """Whether to log one more line for ``reason`` at ``now``.

        Returns:
            (log it?, lines of this reason suppressed since the last one logged). The count
            is only non-zero when the answer is True (it belongs in that line) and is reset
            by it.
        """
        bucket = self._buckets.get(reason)
        if bucket is None:
            bucket = self._buckets[reason] = _Bucket(float(self.burst), now)
        elif now > bucket.updated:
            bucket.tokens = min(
                float(self.burst), bucket.tokens + (now - bucket.updated) / self.interval
            )
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            suppressed, bucket.suppressed = bucket.suppressed, 0
            return True, suppressed
        bucket.suppressed += 1
        return False, 0

    def suppressed(self, reason: str) -> int:
        """Lines of ``reason`` suppressed since the last one logged (for show commands)."""
        bucket = self._buckets.get(reason)
        return bucket.suppressed if bucket is not None else 0


def suppressed_note(suppressed: int) -> str:
    """The tail a rate-limited line carries: ``" (N similar suppressed)"`` or ``""``."""
    return f" ({suppressed} similar suppressed)" if suppressed else ""
