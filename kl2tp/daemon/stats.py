"""Call setups and the tunnels and sessions by state, kept as plain counts where events happen
(O(1) each), for ``kl2tpctl show summary`` and the metrics endpoint
(:mod:`kl2tp.daemon.metrics`) to read without walking any session."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kl2tp.histogram import SETUP_BUCKETS, Histogram
from kl2tp.l2tp.constants import CdnResult
from kl2tp.l2tp.tunnel import StateTally


def failure_reason(failure: object, result: int, by_peer: bool) -> str:
    """A bounded label for a call that never came up: the PPP failure name when the session
    knows one ("LCP timeout" -> ``lcp-timeout``), else who cleared it with which CDN Result
    Code (``peer-cdn-3``; unknown codes: ``peer-cdn-other``)."""
    if isinstance(failure, str) and failure:
        return failure.lower().replace(" ", "-")
    try:
        code = str(int(CdnResult(result)))
    except ValueError:
        code = "other"
    return f"{'peer' if by_peer else 'local'}-cdn-{code}"


class SessionStats:
    """Call setups of one daemon, by policy: attempts, successes, failures by reason, setup
    time; and the per-policy state tallies. Every update is O(1)."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}
        """Calls received (ICRQ/OCRQ) or placed, refused ones included, by policy."""
        self.successes: dict[str, int] = {}
        """Calls that came up (PPP network phase, or the bare L2TP call), by policy."""
        self.failures: dict[tuple[str, str], int] = {}
        """Calls refused or cleared before they came up, by (policy, reason)."""
        self.latency = Histogram(SETUP_BUCKETS)
        """Seconds from the call's first message to up, for every success."""
        self.tallies: dict[str, StateTally] = {}
        """Tunnels and sessions by state, by policy."""

    def tally(self, policy: str) -> StateTally:
        """The state tally of ``policy`` (made on first use)."""
        tally = self.tallies.get(policy)
        if tally is None:
            tally = self.tallies[policy] = StateTally()
        return tally

    def attempt(self, policy: str) -> None:
        """A call arrived or was placed."""
        self.attempts[policy] = self.attempts.get(policy, 0) + 1

    def success(self, policy: str, seconds: float) -> None:
        """A call came up ``seconds`` after it started."""
        self.successes[policy] = self.successes.get(policy, 0) + 1
        self.latency.observe(seconds)

    def failure(self, policy: str, reason: str) -> None:
        """A call was refused or cleared before it came up."""
        key = (policy, reason)
        self.failures[key] = self.failures.get(key, 0) + 1

    def summary(self) -> dict[str, Any]:
        """Totals over policies, and per policy, for ``kl2tpctl show summary``."""
        failures: dict[str, int] = {}
        for (_policy, reason), n in self.failures.items():
            failures[reason] = failures.get(reason, 0) + n
        by_policy: dict[str, dict[str, Any]] = {}
        for policy in sorted(set(self.attempts) | set(self.tallies)):
            tally = self.tallies.get(policy)
            by_policy[policy] = {
                "attempts": self.attempts.get(policy, 0),
                "successes": self.successes.get(policy, 0),
                "tunnels": _nonzero(tally.tunnels) if tally else {},
                "sessions": _nonzero(tally.sessions) if tally else {},
            }
        return {
            "attempts": sum(self.attempts.values()),
            "successes": sum(self.successes.values()),
            "failures": failures,
            "latency": self.latency.summary(),
            "by_policy": by_policy,
        }


def _nonzero(counts: Mapping[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}
