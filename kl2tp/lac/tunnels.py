"""The LAC's tunnel picker: trio glue around :mod:`kl2tp.lac.selection`.

For each subscriber :meth:`TunnelPicker.tunnel_for` finds the LNSs (static rules, a RADIUS
lookup, or the ``[[lac.lns]]`` default), orders them (:func:`order_candidates`) and returns
a tunnel to the first that answers: an established tunnel with the same tunnel key is
reused, a dial already under way is joined, otherwise it dials with ``failover_timeout``
and, when the LNS does not answer the SCCRQ in time, marks it (:class:`LnsHealth`) and
tries the next. Like Cisco's LAC, a RADIUS answer is kept while a tunnel opened for it
lives (:class:`KeptAnswers`): the next subscriber of the same DNIS or domain is not looked
up again, but still spread over the answer's equal-preference LNSs.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from kl2tp.config import Config
from kl2tp.daemon.endpoint import Endpoint, TunnelRunner, TunnelSetupError
from kl2tp.l2tp.constants import ErrorCode, StopCcnResult
from kl2tp.l2tp.events import CallParams
from kl2tp.l2tp.tunnel import TunnelConfig, TunnelState
from kl2tp.lac.selection import (
    KeptAnswers,
    LnsCandidate,
    LnsHealth,
    ReplyTunnels,
    RouteKey,
    RouteKind,
    StaticRoutes,
    order_candidates,
    route_keys,
)

log = logging.getLogger("kl2tp.daemon")

_TAKES_CALLS = frozenset({TunnelState.ESTABLISHED, TunnelState.NO_SESSIONS_LEFT})

Lookup = Callable[[RouteKey, CallParams], Awaitable[ReplyTunnels | None]]
"""Asks RADIUS which LNSs serve a key; None when the server rejected or did not answer."""

TunnelKey = tuple[str, int, str | None, str, bytes | None]


class NoTunnel(Exception):
    """No LNS could take the subscriber; the message says why (no secret in it)."""


def static_routes(cfg: Config) -> StaticRoutes:
    """``[[lac.route]]`` as an index."""
    entries = []
    for route in cfg.lac.route:
        kind, value = (
            (RouteKind.DNIS, route.dnis)
            if route.dnis is not None
            else (RouteKind.DOMAIN, route.domain or "")
        )
        entries.append(
            (
                RouteKey(kind, value),
                LnsCandidate(
                    host=route.lns.host,
                    port=route.lns.port,
                    preference=route.preference,
                    secret=route.secret,
                    hostname=route.hostname,
                    source="route",
                ),
            )
        )
    return StaticRoutes(entries)


def default_candidates(cfg: Config) -> tuple[LnsCandidate, ...]:
    """``[[lac.lns]]`` as candidates of equal preference (the calls spread over them)."""
    return tuple(
        LnsCandidate(
            host=peer.host,
            port=peer.port,
            secret=peer.secret,
            hostname=peer.hostname,
            source="lns",
        )
        for peer in cfg.lac.lns
    )


def candidate_tunnel_config(base: TunnelConfig, candidate: LnsCandidate) -> TunnelConfig:
    """``base`` (from ``[l2tp]``) with the candidate's Host Name and secret; AVP hiding only
    where there is a secret to hide with."""
    secret = candidate.secret.reveal() if candidate.secret is not None else base.secret
    return attrs.evolve(
        base,
        hostname=candidate.hostname or base.hostname,
        secret=secret,
        hide_avps=base.hide_avps and secret is not None,
    )


@attrs.define
class PickerCounters:
    """What the picker did, for ``show summary`` and tests."""

    lookups: int = 0
    """RADIUS lookups made."""
    lookup_failures: int = 0
    """Lookups rejected or unanswered."""
    dials: int = 0
    """Tunnels dialled."""
    dial_failures: int = 0
    """Dials that got no SCCRP in time (each one a failover)."""
    reused: int = 0
    """Calls that found their tunnel already up."""


@attrs.define
class _Lookup:
    done: trio.Event = attrs.field(factory=trio.Event)
    answer: ReplyTunnels | None = None


class TunnelPicker:
    """Finds a tunnel for each subscriber (see the module docstring)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        base_config: TunnelConfig,
        routes: StaticRoutes,
        search_order: Sequence[str] = ("dnis", "domain"),
        default: Sequence[LnsCandidate] = (),
        lookup: Lookup | None = None,
        failover_timeout: float = 5.0,
        dead_time: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.base_config = base_config
        self.routes = routes
        self.search_order = tuple(search_order)
        self.default = tuple(default)
        """Candidates for a subscriber no rule routes (``[[lac.lns]]``; empty with RADIUS)."""
        self.lookup = lookup
        self.failover_timeout = failover_timeout
        self.health = LnsHealth(dead_time)
        self.rng = rng or random.Random()
        self.counters = PickerCounters()
        self.tunnels: dict[TunnelKey, TunnelRunner] = {}
        """Established tunnels by tunnel key."""
        self._dialling: dict[TunnelKey, trio.Event] = {}
        self._by_address: dict[tuple[str, int], set[TunnelRunner]] = {}
        self._inflight: Counter[tuple[str, int]] = Counter()
        self.answers: KeptAnswers[TunnelRunner] = KeptAnswers()
        """RADIUS answers kept while a tunnel opened for them lives."""
        self._lookups: dict[RouteKey, _Lookup] = {}
        """Lookups under way."""

    @classmethod
    def from_config(
        cls, endpoint: Endpoint, cfg: Config, lookup: Lookup | None = None
    ) -> TunnelPicker:
        """A picker for ``[lac]``'s routes, lookup and timers."""
        return cls(
            endpoint,
            base_config=cfg.tunnel_config(),
            routes=static_routes(cfg),
            search_order=cfg.lac.search_order,
            default=default_candidates(cfg) if cfg.lac.lookup == "static" else (),
            lookup=lookup,
            failover_timeout=cfg.lac.failover_timeout,
            dead_time=cfg.lac.dead_time,
        )

    def load(self, candidate: LnsCandidate) -> int:
        """Calls on (or about to go to) the candidate's LNS."""
        runners = self._by_address.get(candidate.address, ())
        return self._inflight[candidate.address] + sum(len(r.sessions) for r in runners)

    async def candidates(
        self, username: str, call: CallParams
    ) -> tuple[RouteKey | None, tuple[LnsCandidate, ...], bool]:
        """The key that routed the subscriber, its LNSs (unordered), and whether they are
        a RADIUS answer."""
        for key in route_keys(username, call.called_number, self.search_order):
            found = self.routes.lookup(key)
            if found:
                return key, found, False
            if self.lookup is None:
                continue
            kept = self.answers.get(key)
            if kept:
                return key, kept, True
            reply = await self._ask(key, call)
            if reply is None:
                self.counters.lookup_failures += 1
                continue
            for problem in reply.problems:
                log.warning("RADIUS tunnel lookup %s: %s", key.lookup_name, problem)
            if reply.candidates:
                return key, reply.candidates, True
            self.counters.lookup_failures += 1
        return None, self.default, False

    async def _ask(self, key: RouteKey, call: CallParams) -> ReplyTunnels | None:
        """One RADIUS lookup per key at a time: callers that arrive while it is under way
        share its answer (a burst of one DNIS's subscribers makes one Access-Request)."""
        pending = self._lookups.get(key)
        if pending is not None:
            await pending.done.wait()
            return pending.answer
        assert self.lookup is not None
        entry = self._lookups[key] = _Lookup()
        self.counters.lookups += 1
        try:
            entry.answer = await self.lookup(key, call)
        finally:
            del self._lookups[key]
            entry.done.set()
        return entry.answer

    async def tunnel_for(self, username: str, call: CallParams) -> TunnelRunner:
        """A tunnel to the best LNS that answers for this subscriber.

        Raises:
            NoTunnel: nothing routes the subscriber, or no LNS answered.
        """
        key, found, answered = await self.candidates(username, call)
        if not found:
            raise NoTunnel("no tunnel")
        ordered = order_candidates(
            found, now=trio.current_time(), health=self.health, load=self.load, rng=self.rng
        )
        if key is not None and answered:
            # Kept from now on, so subscribers arriving while we dial (or fail over) are not
            # looked up again; dropped below if no tunnel comes of it.
            self.answers.dial_started(key, found)
        try:
            return await self._first_that_answers(key if answered else None, found, ordered)
        finally:
            if key is not None and answered:
                self.answers.dial_ended(key)

    async def _first_that_answers(
        self,
        key: RouteKey | None,
        found: tuple[LnsCandidate, ...],
        ordered: list[LnsCandidate],
    ) -> TunnelRunner:
        for candidate in ordered:
            self._inflight[candidate.address] += 1
            try:
                runner = await self._tunnel(candidate)
            finally:
                self._inflight[candidate.address] -= 1
            if runner is None:
                continue
            if key is not None:
                self.answers.tunnel_up(key, found, runner)
            return runner
        raise NoTunnel("no LNS answered")

    async def _tunnel(self, candidate: LnsCandidate) -> TunnelRunner | None:
        tkey = candidate.tunnel_key
        while True:
            runner = self.tunnels.get(tkey)
            if runner is not None and runner.state in _TAKES_CALLS:
                self.counters.reused += 1
                return runner
            if runner is not None:
                del self.tunnels[tkey]  # closing (e.g. idle): the next call dials afresh
            pending = self._dialling.get(tkey)
            if pending is None:
                break
            await pending.wait()
            if tkey not in self.tunnels:
                return None  # that dial failed: the caller fails over
        done = self._dialling[tkey] = trio.Event()
        try:
            return await self._dial(candidate)
        finally:
            del self._dialling[tkey]
            done.set()

    async def _dial(self, candidate: LnsCandidate) -> TunnelRunner | None:
        self.counters.dials += 1
        config = candidate_tunnel_config(self.base_config, candidate)
        try:
            runner = await self.endpoint.dial(
                candidate.address, config, setup_timeout=self.failover_timeout
            )
        except TunnelSetupError as exc:
            self.counters.dial_failures += 1
            self.health.mark_dead(candidate.address, trio.current_time())
            log.warning("%s; trying the next LNS", exc)
            return None
        if candidate.server_name is not None and runner.peer_hostname != candidate.server_name:
            log.warning(
                "LNS %s:%d calls itself %r, not %r (Tunnel-Server-Auth-ID); trying the next LNS",
                *candidate.address,
                runner.peer_hostname,
                candidate.server_name,
            )
            runner.close(StopCcnResult.NOT_AUTHORIZED, ErrorCode.NO_ERROR, "unexpected host name")
            self.counters.dial_failures += 1
            return None
        self.health.mark_alive(candidate.address)
        self.tunnels[candidate.tunnel_key] = runner
        self._by_address.setdefault(candidate.address, set()).add(runner)
        runner.start_soon(self._forget_when_closed, candidate, runner)
        log.info(
            "Tnl %d: tunnel to LNS %s up (%s)",
            runner.local_tunnel_id,
            candidate,
            candidate.hostname or self.base_config.hostname,
        )
        return runner

    async def _forget_when_closed(self, candidate: LnsCandidate, runner: TunnelRunner) -> None:
        await runner.closed.wait()
        if self.tunnels.get(candidate.tunnel_key) is runner:
            del self.tunnels[candidate.tunnel_key]
        runners = self._by_address.get(candidate.address)
        if runners is not None:
            runners.discard(runner)
            if not runners:
                del self._by_address[candidate.address]
        self.answers.tunnel_closed(runner)

    def live_tunnels(self) -> list[TunnelRunner]:
        """The tunnels the picker opened that are not closed yet."""
        live = {r for runners in self._by_address.values() for r in runners}
        return [r for r in live if not r.closed.is_set()]
