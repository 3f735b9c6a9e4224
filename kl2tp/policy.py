"""Per-peer policy (``[[peer]]``): which policy a LAC's tunnel gets, decided from its SCCRQ.

Sans-IO, like the cores: the endpoint core asks :meth:`PolicyTable.match` with the SCCRQ's
source address and Host Name AVP *before* it creates the tunnel core, so the tunnel is made
with that policy's secret (the Challenge in the SCCRQ is answered with it, and ours is checked
with it) and counted against that policy's ``max_tunnels``. Every tunnel then carries its
policy's name (``TunnelEntry.policy``, ``TunnelRunner.policy``, the ``policy`` column of
``kl2tpctl show tunnels``); sessions take their PPP values from the policy of their tunnel.

The rules are tried in configuration order and the first whose every condition holds wins
(IOS: the first vpdn-group that names the LAC). A rule with both ``match_address`` and
``match_hostname`` needs both. A LAC no rule matches takes the top-level settings (policy
``"default"``), or is refused with a StopCCN when ``[l2tp] default_peer = "refuse"``.

Matching costs O(rules) per SCCRQ, never anything per tunnel or session.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from kl2tp.l2tp.tunnel import TunnelConfig

__all__ = ["DEFAULT_POLICY", "Match", "Network", "Policy", "PolicyTable", "address_in"]

DEFAULT_POLICY = "default"
"""The name of the top-level settings, the policy of a LAC no ``[[peer]]`` matches."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def address_in(host: str, networks: Iterable[Network]) -> bool:
    """True if the address literal ``host`` is in one of ``networks`` (False for a host
    that is no address literal)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _hostname_pattern(globs: Sequence[str]) -> re.Pattern[str] | None:
    """One compiled pattern for a list of exact names and shell globs (case does not count:
    host names are compared as DNS compares them)."""
    if not globs:
        return None
    return re.compile("|".join(fnmatch.translate(g) for g in globs), re.IGNORECASE)


@attrs.frozen
class Match:
    """The conditions of one ``[[peer]]``: every condition given must hold."""

    networks: tuple[Network, ...] = ()
    """``match_address``: the SCCRQ's source address is in one of these (empty: any)."""
    hostnames: tuple[str, ...] = ()
    """``match_hostname``: the Host Name AVP equals one of these or matches one of these
    shell globs (``lac-*.example.net``), case-insensitively (empty: any)."""
    _pattern: re.Pattern[str] | None = attrs.field(
        init=False,
        eq=False,
        repr=False,
        default=attrs.Factory(lambda self: _hostname_pattern(self.hostnames), takes_self=True),
    )

    def matches(self, host: str, hostname: str) -> bool:
        """True if a LAC at address ``host`` calling itself ``hostname`` meets every
        condition (a match with no condition matches nothing)."""
        if not self.networks and self._pattern is None:
            return False
        if self.networks and not address_in(host, self.networks):
            return False
        return self._pattern is None or self._pattern.match(hostname) is not None


@attrs.frozen
class Policy:
    """What one ``[[peer]]`` (or the top level) gives the tunnels it matches."""

    name: str
    """``[[peer]] name``; ``"default"`` for the top level."""
    tunnel: TunnelConfig
    """The tunnel core's values: secret, hide_avps, hello_interval, receive_window, ..."""
    max_tunnels: int = 0
    """Most tunnels of this policy at once, those being set up included (0: no limit); a
    further SCCRQ is answered with StopCCN result 2, error 4 (insufficient resources)."""
    max_sessions: int = 0
    """Most sessions over this policy's tunnels (0: no limit); a further ICRQ is answered
    with CDN result 4 (temporary lack of facilities)."""
    match: Match = Match()
    """Who gets it (the default policy: whoever no rule matches)."""
    session: Any = None
    """The daemon's per-session values of the policy (PPP offer, pool, AAA): opaque here."""


@attrs.frozen
class PolicyTable:
    """The rules in order and the default; immutable (a reload builds a new table)."""

    default: Policy
    """The top-level settings."""
    rules: tuple[Policy, ...] = ()
    """The ``[[peer]]`` policies, in configuration order."""
    refuse_unmatched: bool = False
    """``[l2tp] default_peer = "refuse"``: a LAC no rule matches gets a StopCCN."""
    by_name: dict[str, Policy] = attrs.field(init=False, eq=False, repr=False)
    """Every policy by name, the default included."""

    def __attrs_post_init__(self) -> None:
        names = {self.default.name: self.default, **{p.name: p for p in self.rules}}
        object.__setattr__(self, "by_name", names)

    def match(self, host: str, hostname: str) -> Policy | None:
        """The policy of a LAC at address ``host`` whose SCCRQ carries Host Name
        ``hostname``: the first rule that matches, else the default, or None (refuse it)
        when no rule matches and unmatched LACs are refused."""
        for rule in self.rules:
            if rule.match.matches(host, hostname):
                return rule
        return None if self.refuse_unmatched else self.default

    def get(self, name: str) -> Policy | None:
        """The policy called ``name``, if this table has one."""
        return self.by_name.get(name)

    @property
    def secrets(self) -> frozenset[bytes | None]:
        """Every tunnel secret in the table (more than one: SCCRQs with hidden AVPs are
        decoded again with the matched policy's)."""
        return frozenset(p.tunnel.secret for p in (self.default, *self.rules))

    @classmethod
    def single(cls, tunnel: TunnelConfig) -> PolicyTable:
        """A table with the default policy only (no ``[[peer]]``)."""
        return cls(Policy(DEFAULT_POLICY, tunnel))
