"""The sans-IO L2TP endpoint: one UDP port, many tunnels (RFC 2661 sections 4.4.3, 5.7, 8.1).

Everything a daemon decides about a datagram before a tunnel core sees it lives here, with no
sockets, tasks or clock: the header peek and demux by tunnel id, the tunnel table and its ids,
accepting SCCRQs (decoded with the tunnel secret, so hidden AVPs work), recognising a
retransmitted SCCRQ, the tie breaker, allowed peers, the tunnel and session limits, pinning a
tunnel to its peer's address and port, drop counters by reason, and closed tunnels lingering
to re-ack a late StopCCN.

Concurrency model (the driver's side of it): every live tunnel has a bounded inbox here. The
driver's receive loop calls :meth:`EndpointCore.receive_datagram`, which never blocks and
never runs a tunnel core for a live tunnel: it appends to that tunnel's inbox (a full inbox
drops and counts ``drop_queue_full``) and lists the tunnel in :meth:`EndpointCore.ready`. One
driver task per tunnel drains its inbox with :meth:`EndpointCore.feed` and may await between
inputs (the kernel data plane's ``open_tunnel``) without stalling other tunnels, so each
tunnel's events stay in order with its kernel programming. Closed tunnels need no task: their
cores linger here, fed directly, their acks in :meth:`EndpointCore.datagrams_to_send` and their
hold deadlines behind :meth:`EndpointCore.get_timer`.

Every operation is O(1) in the number of tunnels and sessions.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import logging
import random
from array import array
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from functools import partial

import attrs

from kl2tp.l2tp.constants import AvpType, ErrorCode, MessageType, StopCcnResult
from kl2tp.l2tp.errors import DecodeError, ProtocolError, UnsupportedVersion
from kl2tp.l2tp.message import ControlMessage, decode, inspect, peek
from kl2tp.l2tp.tunnel import Stop, Tunnel, TunnelConfig, TunnelState, tie_breaker_loses
from kl2tp.policy import DEFAULT_POLICY, Policy, PolicyTable, address_in
from kl2tp.ratelimit import WarnLimiter, suppressed_note

log = logging.getLogger("kl2tp.l2tp")

Address = tuple[str, int]
"""A UDP peer: (host, port)."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

REFUSE_UNMATCHED = Stop(
    StopCcnResult.NOT_AUTHORIZED, ErrorCode.NO_ERROR, "no [[peer]] matches this LAC"
)
"""The StopCCN of a LAC no ``[[peer]]`` matches under ``default_peer = "refuse"``."""
REFUSE_PEER_TUNNELS = Stop(
    StopCcnResult.GENERAL_ERROR, ErrorCode.INSUFFICIENT_RESOURCES, "peer tunnel limit reached"
)
"""The StopCCN of an SCCRQ over its policy's ``max_tunnels``."""

MAX_TUNNEL_ID = 0xFFFF

_UP = (TunnelState.ESTABLISHED, TunnelState.NO_SESSIONS_LEFT)

HALF_OPEN_TIMERS_PER_CALL = 64
"""Half-open tunnels' timers one :meth:`EndpointCore.handle_timer` call runs at most: the
driver lets other work (a legitimate SCCRQ) in between, so thousands of them falling due
together (a spoofed SCCRQ flood expiring) never hold the event loop for long."""

ROLLED_UP = (
    "data_early",
    "data_early_overflow",
    "malformed",
    "out_of_window",
    "duplicates",
    "protocol_errors",
    "unknown_session",
    "data_dropped",
    "ignored_unknown_type",
    "rejected_requests",
    "duplicate_requests",
    "auth_failures",
    "setup_timeouts",
    "session_setup_timeouts",
    "calls_refused_setup_limit",
    "retransmits",
    "retries_exhausted",
)
"""Tunnel-core counters the endpoint also reports endpoint-wide (see ``totals``): what peers
send that a tunnel drops or refuses shows in ``kl2tpctl show summary``."""


REFUSAL_COUNTERS = {
    "max_sessions": "calls_refused_overload",
    "max_sessions_per_tunnel": "calls_refused_tunnel_session_limit",
    "max_setup_sessions": "calls_refused_setup_limit",
    "peer_max_sessions": "calls_refused_peer_limit",
    "max_negotiating_sessions": "calls_refused_negotiating_limit",
}
"""The endpoint's session caps (``[l2tp]`` key names; ``peer_max_sessions``: the tunnel's
``[[peer]]`` ``max_sessions``) and the counter each refusal goes to
(``kl2tpctl show summary``); every one is answered with CDN result 4."""


def refusal_text(limit: str) -> str:
    """The CDN text of a call refused by ``limit`` (a ``REFUSAL_COUNTERS`` key): whether
    the LAC's own ``[[peer]]`` ``max_sessions`` or a daemon-wide limit refused it."""
    return "peer session limit reached" if limit == "peer_max_sessions" else "session limit reached"


def add_live_totals(out: dict[str, int], entries: Iterable[TunnelEntry]) -> None:
    """Add the ``ROLLED_UP`` counters of ``entries`` (live tunnels) to ``out``."""
    for entry in entries:
        counters = entry.tunnel.counters
        for key in ROLLED_UP:
            value = counters.get(key, 0)
            if value:
                out[key] = out.get(key, 0) + value


class TunnelIdsExhausted(Exception):
    """Every tunnel id (1..65535) is in use, lingering tunnels included."""


class TunnelIds:
    """Random tunnel ids, allocated and released in O(1), in constant memory.

    A Fisher-Yates shuffle of 1..65535 kept in one array of 16-bit ids (128 KiB, made once):
    the first ``free`` slots hold the free ids. Allocation swaps a random free slot with the
    last free one and shrinks the range; release puts the id in the slot after the last free
    one. No retry loop, no scan, and the same 128 KiB however many tunnels come and go (a
    lazily filled table of moved slots grew with the churn, up to the whole id space).
    """

    __slots__ = ("_ids", "_rng", "free")

    def __init__(
        self, rng: random.Random, top: int = MAX_TUNNEL_ID, id_class: tuple[int, int] = (0, 1)
    ) -> None:
        """``top``: the largest id (another 16-bit id space, e.g. PPPoE's 1..65534).
        ``id_class`` ``(index, count)``: only ids with ``id % count == index`` (a worker's
        class, ``[l2tp] workers``: the steering program sends their datagrams to it)."""
        self._rng = rng
        index, count = id_class
        self._ids = array("H", (i for i in range(1, top + 1) if i % count == index))
        self.free = len(self._ids)
        """How many ids are free."""

    def allocate(self) -> int:
        """A random free id.

        Raises:
            TunnelIdsExhausted: none is free.
        """
        n = self.free
        if n == 0:
            raise TunnelIdsExhausted("no free tunnel id")
        ids = self._ids
        i = self._rng.randrange(n)
        last = n - 1
        tid = ids[i]
        ids[i] = ids[last]
        ids[last] = tid
        self.free = last
        return tid

    def release(self, tid: int) -> None:
        """Give ``tid`` back (it must have come from :meth:`allocate`)."""
        n = self.free
        self._ids[n] = tid
        self.free = n + 1


@attrs.frozen
class Limits:
    """Endpoint-wide bounds on peer-created state (``[l2tp]`` keys of the same names); the
    per-tunnel ones are in :class:`kl2tp.l2tp.tunnel.TunnelConfig`."""

    max_setup_tunnels: int = 2000
    """Most tunnels opened by peers and not yet established (half-open) at once; further
    SCCRQs are dropped and counted ``drop_setup_tunnel_limit`` (0: no limit). Each is also
    bounded in time (``TunnelConfig.setup_timeout``)."""
    max_setup_sessions: int = 10000
    """Most sessions not yet established over all tunnels; further calls are refused with
    CDN result 4 and counted ``calls_refused_setup_limit`` (0: no limit)."""
    max_lingering: int = 10000
    """Most closed tunnels kept to re-ack a late StopCCN (RFC 2661 5.7); beyond it the oldest
    is forgotten early, counted ``linger_evicted``. Each is also bounded in time (a
    retransmission cycle)."""
    sccrq_rate: float = 10.0
    """SCCRQs per second one source host may open tunnels with (a token bucket; answering
    spoofed sources is an amplifier); beyond it they are dropped, ``drop_sccrq_rate``
    (0: no limit)."""
    sccrq_burst: int = 50
    """SCCRQs one source host may send back to back before ``sccrq_rate`` applies."""
    max_sources: int = 4096
    """Source hosts whose SCCRQ rate is tracked at once (least recently seen forgotten
    first: memory stays bounded under spoofed floods)."""
    sccrq_total_rate: float = 0.0
    """SCCRQs per second all sources together may open tunnels with (one token bucket,
    checked after the per-source one); beyond it they are dropped, ``drop_sccrq_total_rate``
    (0: no limit)."""
    sccrq_total_burst: int = 100
    """SCCRQs all sources together may send back to back before ``sccrq_total_rate``
    applies."""
    max_negotiating_sessions: int = 0
    """Most sessions admitted and not up yet (L2TP setup plus PPP negotiation: LCP,
    authentication, IPCP) over all tunnels; further calls are refused with CDN result 4 and
    counted ``calls_refused_negotiating_limit`` (0: no limit). Bounds the work (AAA
    requests, PPP timers) a burst of calls puts in flight, so calls beyond what the LNS
    completes in time are refused at once instead of all timing out together."""
    max_sessions_per_tunnel: int = 0
    """Most sessions in one tunnel; further calls in it are refused with CDN result 4 and
    counted ``calls_refused_tunnel_session_limit`` (0: no limit)."""


@attrs.frozen
class EndpointConfig:
    """Endpoint-wide policy."""

    lns: bool = True
    """The LNS answers SCCRQs; a LAC only when ``accept_incoming``."""
    accept_incoming: bool = False
    """A LAC accepts SCCRQs too."""
    allowed_peers: tuple[Network, ...] = ()
    """Networks allowed to open tunnels (empty: any)."""
    max_tunnels: int = 0
    """Most live tunnels opened by peers (0: no limit)."""
    max_sessions: int = 0
    """Most sessions over all tunnels (0: no limit); see :meth:`EndpointCore.admit_session`."""
    queue_depth: int = 256
    """Datagrams a tunnel's inbox holds before further ones are dropped."""
    limits: Limits = Limits()
    """Bounds on what peers can make the endpoint hold."""
    warn_burst: int = 5
    """Peer-caused warnings of one reason logged back to back (then rate-limited)."""
    warn_interval: float = 60.0
    """Seconds per further peer-caused warning of one reason once the burst is spent."""
    tunnel_id_class: tuple[int, int] = (0, 1)
    """``(index, count)``: allocate only tunnel ids with ``id % count == index`` (worker
    ``index`` of ``count``, ``[l2tp] workers``); ``(0, 1)``: any id."""


@attrs.frozen
class TunnelOpened:
    """A peer's SCCRQ created a tunnel: the driver starts its task."""

    tunnel_id: int
    """Our Assigned Tunnel ID of the new tunnel."""


class TunnelEntry:
    """One tunnel in the endpoint's table: its core, its peer, its inbox."""

    __slots__ = (
        "counters",
        "dialing",
        "half_open",
        "in_policy",
        "inbox",
        "lingering",
        "negotiating",
        "peer_addr",
        "peer_key",
        "pinned",
        "policy",
        "ready",
        "released",
        "sessions",
        "setting_up",
        "timer_at",
        "tunnel",
    )

    def __init__(self, tunnel: Tunnel, peer_addr: Address, *, pinned: bool) -> None:
        self.tunnel = tunnel
        """The tunnel core."""
        self.peer_addr = peer_addr
        """Where the tunnel's datagrams go, and (once pinned) the only source accepted."""
        self.pinned = pinned
        """False for a tunnel we dialled until its first control message (the SCCRP) comes
        back: until then any port of the peer's host is accepted (RFC 2661 8.1)."""
        self.inbox: deque[bytes] = deque()
        """Datagrams routed to the tunnel, not yet fed to its core."""
        self.counters: Counter[str] = Counter()
        """Per-tunnel endpoint figures (``data_rx``, ``data_unknown_session``, ``core_errors``)."""
        self.peer_key: tuple[Address, int] | None = None
        """(peer address, peer's Assigned Tunnel ID) of a tunnel a peer's SCCRQ opened."""
        self.dialing = False
        """Our SCCRQ is outstanding (a dialled tunnel not yet pinned)."""
        self.ready = False
        """Listed in the endpoint's ready list."""
        self.lingering = False
        """Closed; kept to re-ack a late StopCCN."""
        self.released = False
        """Gone from every table; its id is free again."""
        self.sessions = 0
        """Sessions admitted in this tunnel (``admit_session`` minus ``release_session``)."""
        self.setting_up = 0
        """Of those, the ones not established yet (``session_established``)."""
        self.negotiating = 0
        """Of those admitted, the ones not up yet (``session_up``)."""
        self.half_open = False
        """A peer opened it and it is not established yet (counted in ``half_open``): the
        endpoint core feeds it and runs its timers itself; it has no task until it is up."""
        self.timer_at: float | None = None
        """Half-open: the deadline it is filed under in the endpoint's timer heap."""
        self.policy = DEFAULT_POLICY
        """The name of the tunnel's policy (``[[peer]] name``, ``"default"`` for the top
        level), chosen from its SCCRQ; ``""`` for an SCCRQ the policy refused."""
        self.in_policy = False
        """Counted in the endpoint's ``policy_tunnels`` (until it is unlinked)."""

    @property
    def tunnel_id(self) -> int:
        """Our tunnel id."""
        return self.tunnel.local_tunnel_id


class EndpointCore:
    """The tunnel table of one UDP endpoint and everything decided per datagram.

    Args:
        config: endpoint-wide policy.
        tunnel_config: the values for tunnels peers open (and the secret SCCRQs are decoded
            with) when no ``policies`` are given.
        rng: source of tunnel ids (and of every tunnel core's randomness).
        policies: per-peer policy (``[[peer]]``); None: everyone gets ``tunnel_config``.
    """

    def __init__(
        self,
        config: EndpointConfig,
        tunnel_config: TunnelConfig,
        *,
        rng: random.Random,
        policies: PolicyTable | None = None,
    ) -> None:
        self.config = config
        self.policies = policies if policies is not None else PolicyTable.single(tunnel_config)
        """The per-peer policies SCCRQs are matched against (replaced whole on reload: live
        tunnels keep their values, their limits follow the policy of the same name)."""
        self.policy_tunnels: Counter[str] = Counter()
        """Live tunnels (those being set up included) by policy name."""
        self.policy_sessions: Counter[str] = Counter()
        """Sessions by the policy name of their tunnel."""
        self.policy_refusals: Counter[tuple[str, str]] = Counter()
        """Tunnels and calls refused by a policy's limit, by (policy name, ``max_tunnels``
        or ``max_sessions``)."""
        self.rng = rng
        self.tunnels: dict[int, TunnelEntry] = {}
        """Live tunnels by our tunnel id."""
        self.lingering: dict[int, TunnelEntry] = {}
        """Closed tunnels whose cores still re-ack a retransmitted StopCCN (RFC 2661 5.7)."""
        self.counters: Counter[str] = Counter()
        """``rx_datagrams``, ``data_rx``, ``drop_<reason>``, ``core_errors``, ..."""
        self.session_count = 0
        """Sessions admitted over all tunnels."""
        self.setup_count = 0
        """Of those, the ones not established yet."""
        self.negotiating = 0
        """Of those admitted, the ones not up yet (:meth:`session_up`): L2TP setup and PPP
        negotiation."""
        self.half_open = 0
        """Tunnels opened by peers and not yet established."""
        self.ids = TunnelIds(rng, id_class=config.tunnel_id_class)
        self.warnings = WarnLimiter(config.warn_burst, config.warn_interval)
        """Rate limit of the warnings peers cause (finding: 2,000 spoofed SCCRQs, 2,000
        lines); the driver logs through it too (:meth:`warn`)."""
        self._by_peer: dict[tuple[Address, int], TunnelEntry] = {}
        self._dialing: dict[str, dict[int, TunnelEntry]] = {}
        self._ready: list[int] = []
        self._events: deque[TunnelOpened] = deque()
        self._outbox: list[tuple[bytes, Address]] = []
        self._linger_queue: deque[TunnelEntry] = deque()
        self._linger_due: dict[int, TunnelEntry] = {}
        self._half_open_timers: list[tuple[float, int, TunnelEntry]] = []
        """Heap of (deadline, tie, entry) of half-open tunnels; stale rows (the entry moved
        on or was re-filed) are skipped when they reach the top."""
        self._tie = itertools.count()
        self._sources: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """Per source host: (SCCRQ tokens, when last updated); least recently seen first."""
        self._total_bucket: tuple[float, float] | None = None
        """All sources' SCCRQ tokens and when last updated (None: full)."""

    @property
    def tunnel_config(self) -> TunnelConfig:
        """The default policy's tunnel values (a LAC dials with them unless told others)."""
        return self.policies.default.tunnel

    @tunnel_config.setter
    def tunnel_config(self, value: TunnelConfig) -> None:
        policies = self.policies
        self.policies = attrs.evolve(policies, default=attrs.evolve(policies.default, tunnel=value))

    # --- aioquic surface ----------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Route one UDP payload from ``addr``: to a live tunnel's inbox, to a lingering
        core, to a new tunnel (an acceptable SCCRQ), or to a drop counter.

        Never raises: a failure while handling one datagram (a bug a peer found) costs that
        datagram only, counted ``drop_internal_error`` and logged rate-limited."""
        try:
            self._route(data, addr, now)
        except Exception as exc:
            self.counters["drop_internal_error"] += 1
            # By kind of failure too (a class name: a fixed set, never peer-chosen).
            self.counters[f"internal_error_{type(exc).__name__}"] += 1
            self.warn(
                "internal_error",
                now,
                "internal error on a %d-byte datagram from %s; dropped",
                len(data),
                addr[0],
                exc=True,
            )

    def _route(self, data: bytes, addr: Address, now: float) -> None:
        counters = self.counters
        counters["rx_datagrams"] += 1
        try:
            is_control, tid, sid = peek(data)
        except UnsupportedVersion as exc:
            counters[f"drop_version_{exc.version}"] += 1
            return
        except DecodeError:
            counters["drop_malformed"] += 1
            return
        if not is_control:
            # Every data message that reaches userspace is counted: with the kernel data
            # plane this stays 0 once the kernel owns the sessions.
            counters["data_rx"] += 1
        if not tid:
            self._tunnel_zero(data, addr, now)
            return
        entry = self.tunnels.get(tid)
        if entry is None:
            entry = self.lingering.get(tid)
            if entry is None:
                counters["drop_unknown_tunnel"] += 1
            elif addr != entry.peer_addr:
                counters["drop_wrong_peer"] += 1
            else:
                self._feed_lingering(entry, data, now)
            return
        if not is_control:
            entry.counters["data_rx"] += 1
            if sid not in entry.tunnel.sessions:
                entry.counters["data_unknown_session"] += 1
                counters["drop_data_unknown_session"] += 1
                return
        if entry.pinned:
            if addr != entry.peer_addr:
                counters["drop_wrong_peer"] += 1
                return
        elif addr[0] != entry.peer_addr[0]:
            counters["drop_wrong_peer"] += 1
            return
        elif is_control:
            # RFC 2661 8.1: the peer may answer from another port; the tunnel stays there.
            self._pin(entry, addr)
        if entry.half_open:
            self._feed_half_open(entry, data, now)
            return
        inbox = entry.inbox
        if len(inbox) >= self.config.queue_depth:
            counters["drop_queue_full"] += 1
            return
        inbox.append(data)
        if not entry.ready:
            entry.ready = True
            self._ready.append(tid)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """What the endpoint itself sends (lingering tunnels' acks), with destinations. Live
        tunnels' datagrams come from their own cores, sent by their tasks."""
        out = self._outbox
        if out:
            self._outbox = []
        return out

    @property
    def has_output(self) -> bool:
        """:meth:`datagrams_to_send` has something."""
        return bool(self._outbox)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next: the earliest deadline of a lingering
        tunnel (its hold, or an ack it still owes)."""
        best: float | None = None
        heap = self._half_open_timers
        while heap and _stale(heap[0]):
            heapq.heappop(heap)
        if heap:
            best = heap[0][0]
        queue = self._linger_queue
        while queue and queue[0].released:
            queue.popleft()
        if queue:
            t = queue[0].tunnel.get_timer()
            if t is not None and (best is None or t < best):
                best = t
        for entry in self._linger_due.values():
            t = entry.tunnel.get_timer()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def handle_timer(self, now: float) -> None:
        """Run half-open tunnels' due timers (at most ``HALF_OPEN_TIMERS_PER_CALL``: if more
        are due, :meth:`get_timer` still says so and the driver calls again after letting
        other work run) and lingering tunnels' due timers; forget those whose hold is over."""
        heap = self._half_open_timers
        budget = HALF_OPEN_TIMERS_PER_CALL
        while heap and budget and heap[0][0] <= now:
            row = heapq.heappop(heap)
            if _stale(row):
                continue
            budget -= 1
            entry = row[2]
            entry.timer_at = None
            if self._half_open_input(entry, now, partial(entry.tunnel.handle_timer, now)):
                self._half_open_after(entry, now)
        due = list(self._linger_due.values())
        self._linger_due.clear()
        for entry in due:
            self._run_lingering_timer(entry, now)
        queue = self._linger_queue
        while queue:
            entry = queue[0]
            if entry.released:
                queue.popleft()
                continue
            t = entry.tunnel.get_timer()
            if t is not None and t > now:
                break
            self._run_lingering_timer(entry, now)
            if not entry.released:
                break  # not done yet: its next deadline is later

    def next_event(self) -> TunnelOpened | None:
        """The next endpoint event, or None."""
        return self._events.popleft() if self._events else None

    # --- the driver's per-tunnel surface ------------------------------------------------

    def ready(self) -> list[int]:
        """Ids of live tunnels given input (or a command from the endpoint) since the last
        call: their tasks must run."""
        ready = self._ready
        if not ready:
            return ready
        self._ready = []
        tunnels = self.tunnels
        for tid in ready:
            entry = tunnels.get(tid)
            if entry is not None:
                entry.ready = False
        return ready

    def feed(self, entry: TunnelEntry, now: float) -> None:
        """Feed a live tunnel's inbox into its core. An exception escaping the core is a bug:
        it costs that datagram only (logged and counted ``core_errors``)."""
        inbox = entry.inbox
        receive = entry.tunnel.receive_datagram
        while inbox:
            data = inbox.popleft()
            try:
                receive(data, now)
            except Exception:
                entry.counters["core_errors"] += 1
                self.counters["core_errors"] += 1
                self.warn(
                    "core_error",
                    now,
                    "Tnl %d: internal error on a %d-byte datagram; dropped",
                    entry.tunnel_id,
                    len(data),
                    exc=True,
                )

    def connect(self, addr: Address, now: float, config: TunnelConfig | None = None) -> TunnelEntry:
        """Open a tunnel to ``addr`` (our SCCRQ is queued in its core).

        Raises:
            TunnelIdsExhausted: no tunnel id is free.
        """
        tid = self.ids.allocate()
        tunnel = Tunnel(config or self.tunnel_config, tid, initiator=True, rng=self.rng, now=now)
        entry = TunnelEntry(tunnel, addr, pinned=False)
        self.tunnels[tid] = entry
        entry.in_policy = True
        self.policy_tunnels[entry.policy] += 1
        entry.dialing = True
        self._dialing.setdefault(addr[0], {})[tid] = entry
        tunnel.connect(now)
        return entry

    def tunnel_closed(self, entry: TunnelEntry, now: float) -> None:
        """The tunnel's core reported it closed and the driver is tearing down what was above
        it: the tunnel leaves the live table; its core lingers here until it is done (RFC 2661
        5.7), fed and timed by the endpoint. Datagrams still in its inbox are fed now."""
        if entry.released or entry.lingering:
            return
        tid = entry.tunnel_id
        self._unlink(entry)
        self._roll_up(entry)
        del self.tunnels[tid]
        entry.lingering = True
        entry.ready = False
        self.lingering[tid] = entry
        inbox = entry.inbox
        while inbox:
            self._feed_lingering(entry, inbox.popleft(), now)
        self._collect(entry, now)
        if entry.tunnel.done:
            self._release(entry)
            return
        cap = self.config.limits.max_lingering
        if cap:
            queue = self._linger_queue
            while len(self.lingering) > cap and queue:
                oldest = queue.popleft()
                if not oldest.released:
                    self.counters["linger_evicted"] += 1
                    self._release(oldest)
        self._linger_queue.append(entry)

    def discard(self, entry: TunnelEntry) -> None:
        """Forget a tunnel at once, without lingering (its core is not to be trusted)."""
        if entry.released:
            return
        self._unlink(entry)
        if entry.lingering:
            self._linger_due.pop(entry.tunnel_id, None)
        else:
            self._roll_up(entry)
            del self.tunnels[entry.tunnel_id]
        self._release(entry)

    def totals(self) -> dict[str, int]:
        """The endpoint's counters plus the tunnel cores' ``ROLLED_UP`` ones (closed tunnels'
        are folded in when they close; live ones are summed here, O(tunnels): for show)."""
        out = self.base_totals()
        add_live_totals(out, self.tunnels.values())
        return out

    def base_totals(self) -> dict[str, int]:
        """The endpoint's own counters and gauges, without the live tunnels' (O(1)): add
        those with :func:`add_live_totals` over ``tunnels`` as listed at the same moment
        (a tunnel that closes meanwhile is still counted once: from its own counters)."""
        out = dict(self.counters)
        # How full the bounds on peer-created state are now (gauges, not counters).
        out["half_open_tunnels"] = self.half_open
        out["sessions_in_setup"] = self.setup_count
        out["sessions_negotiating"] = self.negotiating
        out["lingering_tunnels"] = len(self.lingering)
        return out

    def warn(self, reason: str, now: float, fmt: str, *args: object, exc: bool = False) -> None:
        """Log a warning a peer caused, rate-limited per ``reason`` (a fixed word, never a
        peer-supplied value); the line logged after a quiet spell says how many were
        suppressed. ``exc``: log the current exception's traceback too (a bug surfaced)."""
        ok, suppressed = self.warnings.should_log(reason, now)
        if ok:
            log.warning(fmt + "%s", *args, suppressed_note(suppressed), exc_info=exc)

    # --- sessions -----------------------------------------------------------------------

    def admit_session(self, entry: TunnelEntry, *, limit: bool = True) -> bool:
        """Count a new session of ``entry`` (in setup until :meth:`session_established`,
        negotiating until :meth:`session_up`); False (nothing counted) when ``limit`` and a
        cap is reached (:meth:`try_admit` says which)."""
        if limit:
            return self.try_admit(entry) is None
        self._admit(entry)
        return True

    def try_admit(self, entry: TunnelEntry) -> str | None:
        """Admit a new session of ``entry`` as :meth:`admit_session` does; None when it is
        admitted, else the cap that refuses it (see :meth:`refusal`), counted."""
        reason = self.counted_refusal(entry)
        if reason is None:
            self._admit(entry)
        return reason

    def counted_refusal(self, entry: TunnelEntry) -> str | None:
        """:meth:`refusal`, counted when it refuses (the call is refused, not admitted)."""
        reason = self.refusal(entry)
        if reason is not None:
            self.counters[REFUSAL_COUNTERS[reason]] += 1
            if reason == "peer_max_sessions":
                self.policy_refusals[(entry.policy, "max_sessions")] += 1
        return reason

    def _admit(self, entry: TunnelEntry) -> None:
        self.policy_sessions[entry.policy] += 1
        entry.sessions += 1
        entry.setting_up += 1
        entry.negotiating += 1
        self.session_count += 1
        self.setup_count += 1
        self.negotiating += 1

    def refusal(self, entry: TunnelEntry) -> str | None:
        """The limit (a ``REFUSAL_COUNTERS`` key) a new call in ``entry`` would exceed, or
        None: ``max_sessions`` over all tunnels, ``max_sessions_per_tunnel``,
        ``max_setup_sessions`` in L2TP setup, the tunnel's ``[[peer]]`` ``max_sessions``
        (``peer_max_sessions``), ``max_negotiating_sessions`` not up yet. O(1)."""
        limits = self.config.limits
        for limit, cap, count in (
            ("max_sessions", self.config.max_sessions, self.session_count),
            ("max_sessions_per_tunnel", limits.max_sessions_per_tunnel, entry.sessions),
            ("max_setup_sessions", limits.max_setup_sessions, self.setup_count),
        ):
            if cap and count >= cap:
                return limit
        if self.over_peer_session_limit(entry):
            return "peer_max_sessions"
        cap = limits.max_negotiating_sessions
        if cap and self.negotiating >= cap:
            return "max_negotiating_sessions"
        return None

    def session_up(self, entry: TunnelEntry) -> None:
        """A session counted by :meth:`admit_session` is up (PPP's network phase, or the
        bare L2TP call connected): no longer negotiating. Once per session."""
        if entry.negotiating:
            entry.negotiating -= 1
            self.negotiating -= 1

    def over_peer_session_limit(self, entry: TunnelEntry) -> bool:
        """The policy of ``entry`` holds its ``max_sessions`` already (O(1))."""
        policy = self.policies.get(entry.policy)
        cap = policy.max_sessions if policy is not None else 0
        return bool(cap) and self.policy_sessions[entry.policy] >= cap

    def session_established(self, entry: TunnelEntry) -> None:
        """A session counted by :meth:`admit_session` is established: no longer in setup."""
        if entry.setting_up:
            entry.setting_up -= 1
            self.setup_count -= 1

    def release_session(
        self, entry: TunnelEntry, *, established: bool = True, up: bool = True
    ) -> None:
        """A session counted by :meth:`admit_session` is gone (``established``: after
        :meth:`session_established`; ``up``: after :meth:`session_up`)."""
        if entry.sessions:
            entry.sessions -= 1
            self.session_count -= 1
            self._uncount(self.policy_sessions, entry.policy)
        if not established:
            self.session_established(entry)
        if not up:
            self.session_up(entry)

    # --- internals ----------------------------------------------------------------------

    def _tunnel_zero(self, data: bytes, addr: Address, now: float) -> None:
        """A datagram for tunnel 0: an SCCRQ (or junk)."""
        counters = self.counters
        policies = self.policies
        secret = policies.default.tunnel.secret
        try:
            # With the secret: an SCCRQ may carry hidden AVPs (RFC 2661 4.3).
            msg = decode(data, secret)
        except DecodeError:
            found = self._decode_with_peer_secret(data, addr)
            if found is None:
                counters["drop_malformed"] += 1
                return
            msg, secret = found
        except ProtocolError:  # e.g. an unknown mandatory AVP: no tunnel to answer it in
            counters["drop_bad_sccrq"] += 1
            return
        if not isinstance(msg, ControlMessage) or msg.msg_type != MessageType.SCCRQ:
            counters["drop_not_sccrq_for_tunnel_0"] += 1
            return
        if msg.ns or msg.nr:
            # The SCCRQ is the first message of a tunnel (RFC 2661 5.8: Ns 0, nothing to
            # acknowledge): any other is not one we can answer, and a tunnel made from it
            # would wait for a message 0 that never comes.
            counters["drop_sccrq_bad_ns"] += 1
            return
        config = self.config
        if not config.lns and not config.accept_incoming:
            counters["drop_sccrq_refused"] += 1
            return
        peer_tid = msg.get(AvpType.ASSIGNED_TUNNEL_ID)
        if not isinstance(peer_tid, int) or not peer_tid:
            counters["drop_bad_sccrq"] += 1
            return
        key = (addr, peer_tid)
        existing = self._by_peer.get(key)
        if existing is not None:
            # A retransmitted SCCRQ: the tunnel it opened re-acks (or re-answers) it.
            if existing.half_open:
                self._feed_half_open(existing, data, now)
                return
            if len(existing.inbox) >= config.queue_depth:
                counters["drop_queue_full"] += 1
                return
            existing.inbox.append(data)
            if not existing.ready:
                existing.ready = True
                self._ready.append(existing.tunnel_id)
            return
        if not self._peer_allowed(addr[0]):
            counters["drop_peer_not_allowed"] += 1
            self.warn(
                "peer_not_allowed", now, "SCCRQ from %s refused: not in allowed_peers", addr[0]
            )
            return
        if config.limits.sccrq_rate and not self._source_allowed(addr[0], now):
            counters["drop_sccrq_rate"] += 1
            self.warn("sccrq_rate", now, "SCCRQs from %s over the rate limit; dropped", addr[0])
            return
        if config.limits.sccrq_total_rate and not self._total_allowed(now):
            counters["drop_sccrq_total_rate"] += 1
            self.warn(
                "sccrq_total_rate", now, "SCCRQ from %s over the total rate; dropped", addr[0]
            )
            return
        if not self._tie_breaker(msg, addr, now):
            counters["drop_tie_breaker"] += 1
            return
        if config.max_tunnels and len(self.tunnels) >= config.max_tunnels:
            counters["drop_tunnel_limit"] += 1
            self.warn("tunnel_limit", now, "SCCRQ from %s refused: max_tunnels reached", addr[0])
            return
        if config.limits.max_setup_tunnels and self.half_open >= config.limits.max_setup_tunnels:
            counters["drop_setup_tunnel_limit"] += 1
            self.warn(
                "setup_tunnel_limit",
                now,
                "SCCRQ from %s refused: max_setup_tunnels tunnels are being set up",
                addr[0],
            )
            return
        policy, refuse = self._policy_for(msg, addr, now)
        if policy.tunnel.secret != secret and any(a.hidden for a in msg.avps):
            try:
                msg = decode(data, policy.tunnel.secret)
            except DecodeError:
                counters["drop_malformed"] += 1
                return
            except ProtocolError:
                counters["drop_bad_sccrq"] += 1
                return
        try:
            tid = self.ids.allocate()
        except TunnelIdsExhausted:
            counters["drop_tunnel_ids_exhausted"] += 1
            self.warn("tunnel_ids", now, "SCCRQ from %s refused: no free tunnel id", addr[0])
            return
        tunnel = Tunnel(policy.tunnel, tid, initiator=False, rng=self.rng, now=now, refuse=refuse)
        tunnel.peer_address = addr[0]
        entry = TunnelEntry(tunnel, addr, pinned=True)  # RFC 2661 8.1: pinned at the SCCRQ
        entry.peer_key = key
        if refuse is None:
            entry.policy = policy.name
            entry.in_policy = True
            self.policy_tunnels[policy.name] += 1
        else:
            entry.policy = ""
        entry.half_open = True
        self.half_open += 1
        self.tunnels[tid] = entry
        self._by_peer[key] = entry
        # Until it is established the endpoint serves it (no task: a spoofed SCCRQ costs a
        # table entry and a timer); TunnelOpened follows when it is up.
        if self._half_open_input(entry, now, lambda: tunnel.receive_message(msg, now, data)):
            self._half_open_after(entry, now)

    def _decode_with_peer_secret(
        self, data: bytes, addr: Address
    ) -> tuple[ControlMessage, bytes | None] | None:
        """An SCCRQ the default secret cannot decode may hide AVPs under its ``[[peer]]``'s
        secret: read it leniently for the Host Name (never hidden), match, and decode it with
        that policy's secret (one more decode, only for such SCCRQs). None: still no good."""
        policies = self.policies
        if len(policies.secrets) < 2:
            return None
        try:
            seen = inspect(data, None).message
        except DecodeError:
            return None
        hostname = seen.get(AvpType.HOST_NAME) if isinstance(seen, ControlMessage) else None
        policy = policies.match(addr[0], hostname if isinstance(hostname, str) else "")
        secret = (policy or policies.default).tunnel.secret
        if secret == policies.default.tunnel.secret:
            return None
        try:
            msg = decode(data, secret)
        except (DecodeError, ProtocolError):
            return None
        return (msg, secret) if isinstance(msg, ControlMessage) else None

    def _policy_for(
        self, msg: ControlMessage, addr: Address, now: float
    ) -> tuple[Policy, Stop | None]:
        """The policy of an SCCRQ, and the StopCCN that refuses it (None: accepted).

        A refused SCCRQ still gets a tunnel core (with the default policy's values when no
        rule matched): it answers with the StopCCN, retransmits it until acked, then lingers
        like any closed tunnel; it counts against no policy and is bounded like every
        half-open tunnel (``max_setup_tunnels``, ``sccrq_rate``)."""
        policies = self.policies
        hostname = msg.get(AvpType.HOST_NAME)
        hostname = hostname if isinstance(hostname, str) else ""
        policy = policies.match(addr[0], hostname)
        if policy is None:
            self.counters["tunnels_refused_unmatched"] += 1
            self.warn(
                "peer_unmatched",
                now,
                "SCCRQ from %s (host name %r) refused: no [[peer]] matches and "
                'default_peer = "refuse"',
                addr[0],
                hostname,
            )
            return policies.default, REFUSE_UNMATCHED
        cap = policy.max_tunnels
        if cap and self.policy_tunnels[policy.name] >= cap:
            self.counters["tunnels_refused_peer_limit"] += 1
            self.policy_refusals[(policy.name, "max_tunnels")] += 1
            self.warn(
                "peer_tunnel_limit",
                now,
                "SCCRQ from %s refused: [[peer]] %s has max_tunnels (%d) tunnels",
                addr[0],
                policy.name,
                cap,
            )
            return policy, REFUSE_PEER_TUNNELS
        return policy, None

    def _tie_breaker(self, msg: ControlMessage, addr: Address, now: float) -> bool:
        """RFC 2661 4.4.3, an SCCRQ from a peer we have our own SCCRQ outstanding to: the lower
        Tie Breaker wins; the loser silently discards its tunnel; equal values, both do; a
        Tie Breaker beats none; without any, both tunnels go ahead. False: drop the SCCRQ."""
        ours = self._dialing.get(addr[0])
        if not ours:
            return True
        theirs = msg.get(AvpType.TIE_BREAKER)
        if not isinstance(theirs, bytes):
            theirs = None
        accept = True
        for entry in list(ours.values()):
            mine = entry.tunnel.tie_breaker
            if mine is None and theirs is None:
                continue
            if mine is None:
                lose, keep_theirs = True, True
            elif theirs is None:
                lose, keep_theirs = False, False
            else:
                lose = tie_breaker_loses(mine, theirs)
                keep_theirs = lose and mine != theirs
            if lose:
                log.info(
                    "Tnl %d: %s's SCCRQ won the tie break; discarding ours",
                    entry.tunnel_id,
                    addr[0],
                )
                self.counters["tie_breaker_lost"] += 1
                self._undial(entry)
                # No SCCRP yet: the core closes at once, without a StopCCN ("silently").
                entry.tunnel.close(now)
                if not entry.ready:
                    entry.ready = True
                    self._ready.append(entry.tunnel_id)
            if not keep_theirs:
                accept = False
        return accept

    def _source_allowed(self, host: str, now: float) -> bool:
        """Take one token of ``host``'s SCCRQ bucket (O(1); least recently seen sources are
        forgotten beyond ``max_sources``, a forgotten source starts with a full burst)."""
        config = self.config.limits
        sources = self._sources
        state = sources.pop(host, None)
        if state is None:
            while len(sources) >= config.max_sources:
                sources.popitem(last=False)
        allowed, sources[host] = _take_token(state, now, config.sccrq_rate, config.sccrq_burst)
        return allowed

    def _total_allowed(self, now: float) -> bool:
        """Take one token of the all-sources SCCRQ bucket."""
        config = self.config.limits
        allowed, self._total_bucket = _take_token(
            self._total_bucket, now, config.sccrq_total_rate, config.sccrq_total_burst
        )
        return allowed

    def _peer_allowed(self, host: str) -> bool:
        allowed = self.config.allowed_peers
        return not allowed or address_in(host, allowed)

    def _pin(self, entry: TunnelEntry, addr: Address) -> None:
        entry.peer_addr = addr
        entry.pinned = True
        self._undial(entry)

    def _undial(self, entry: TunnelEntry) -> None:
        if not entry.dialing:
            return
        entry.dialing = False
        host = entry.peer_addr[0]
        ours = self._dialing.get(host)
        if ours is not None:
            ours.pop(entry.tunnel_id, None)
            if not ours:
                del self._dialing[host]

    def _unlink(self, entry: TunnelEntry) -> None:
        """Out of the SCCRQ tables and the session count (O(1): the entry knows its keys)."""
        self._undial(entry)
        key = entry.peer_key
        if key is not None and self._by_peer.get(key) is entry:
            del self._by_peer[key]
        entry.peer_key = None
        self.session_count -= entry.sessions
        self._uncount(self.policy_sessions, entry.policy, entry.sessions)
        entry.sessions = 0
        if entry.in_policy:
            entry.in_policy = False
            self._uncount(self.policy_tunnels, entry.policy)
        self.setup_count -= entry.setting_up
        entry.setting_up = 0
        self.negotiating -= entry.negotiating
        entry.negotiating = 0
        if entry.half_open:
            entry.half_open = False
            self.half_open -= 1

    @staticmethod
    def _uncount(counts: Counter[str], name: str, n: int = 1) -> None:
        """Take ``n`` from a per-policy count; a count that reaches 0 goes (no zero rows
        left behind by policies a reload removed)."""
        if not n:
            return
        left = counts[name] - n
        if left > 0:
            counts[name] = left
        else:
            counts.pop(name, None)

    def _roll_up(self, entry: TunnelEntry) -> None:
        counters = entry.tunnel.counters
        for key in ROLLED_UP:
            value = counters.get(key, 0)
            if value:
                self.counters[key] += value

    def _release(self, entry: TunnelEntry) -> None:
        entry.released = True
        entry.inbox.clear()
        tid = entry.tunnel_id
        self.lingering.pop(tid, None)
        self._linger_due.pop(tid, None)
        self.ids.release(tid)

    def _feed_half_open(self, entry: TunnelEntry, data: bytes, now: float) -> None:
        tunnel = entry.tunnel
        if self._half_open_input(entry, now, lambda: tunnel.receive_datagram(data, now)):
            self._half_open_after(entry, now)

    def _half_open_input(self, entry: TunnelEntry, now: float, step: Callable[[], None]) -> bool:
        """Run one input of a half-open tunnel's core (see `_guarded`)."""
        return self._guarded(entry, now, step, "a tunnel being set up", self.discard)

    def _guarded(
        self,
        entry: TunnelEntry,
        now: float,
        step: Callable[[], None],
        what: str,
        forget: Callable[[TunnelEntry], None],
    ) -> bool:
        """Run one input of a tunnel core the endpoint itself drives (half-open, lingering).
        An exception escaping it is a bug: the tunnel is forgotten with ``forget`` (counted
        ``core_errors``, logged rate-limited) and the loop goes on. False when that happened."""
        try:
            step()
        except Exception:
            self.counters["core_errors"] += 1
            self.warn(
                "core_error",
                now,
                "Tnl %d: internal error in %s; forgotten",
                entry.tunnel_id,
                what,
                exc=True,
            )
            forget(entry)
            return False
        return True

    def _half_open_after(self, entry: TunnelEntry, now: float) -> None:
        """After an input of a half-open tunnel: send what it says, and hand it to a task
        once it is established, to lingering once it is closed, else re-file its timer."""
        tunnel = entry.tunnel
        addr = entry.peer_addr
        for data in tunnel.datagrams_to_send(now):
            self._outbox.append((data, addr))
        state = tunnel.state
        if state in _UP:
            # Its TunnelEstablished stays queued in the core for the task the driver starts.
            entry.half_open = False
            self.half_open -= 1
            self._events.append(TunnelOpened(entry.tunnel_id))
            return
        if state is TunnelState.CLOSED:
            while tunnel.next_event() is not None:
                pass  # nothing above a half-open tunnel to tell
            self.tunnel_closed(entry, now)
            return
        t = tunnel.get_timer()
        if t is not None and t != entry.timer_at:
            entry.timer_at = t
            heapq.heappush(self._half_open_timers, (t, next(self._tie), entry))

    def _feed_lingering(self, entry: TunnelEntry, data: bytes, now: float) -> None:
        if self._lingering_step(entry, now, lambda: entry.tunnel.receive_datagram(data, now)):
            self._collect(entry, now)

    def _lingering_step(self, entry: TunnelEntry, now: float, step: Callable[[], None]) -> bool:
        """Run one input of a closed tunnel's core (see `_guarded`)."""
        return self._guarded(entry, now, step, "a closed tunnel", self._release)

    def _collect(self, entry: TunnelEntry, now: float) -> None:
        """Queue a lingering core's datagrams; keep it on the due list while it owes one."""
        tunnel = entry.tunnel
        addr = entry.peer_addr
        for data in tunnel.datagrams_to_send(now):
            self._outbox.append((data, addr))
        while tunnel.next_event() is not None:
            pass  # a closed core has nothing more to say to the layers above
        t = tunnel.get_timer()
        hold = tunnel.hold_until
        if t is not None and (hold is None or t < hold):
            self._linger_due[entry.tunnel_id] = entry

    def _run_lingering_timer(self, entry: TunnelEntry, now: float) -> None:
        tunnel = entry.tunnel

        def step() -> None:
            t = tunnel.get_timer()
            if t is not None and t <= now:
                tunnel.handle_timer(now)

        if not self._lingering_step(entry, now, step):
            return
        self._collect(entry, now)
        if tunnel.done:
            self._release(entry)


def _take_token(
    state: tuple[float, float] | None, now: float, rate: float, burst: int
) -> tuple[bool, tuple[float, float]]:
    """One token bucket step: (allowed, new (tokens, time)); ``state`` None is a full bucket."""
    if state is None:
        tokens = float(burst)
    else:
        tokens, then = state
        if now > then:
            tokens = min(float(burst), tokens + (now - then) * rate)
    allowed = tokens >= 1.0
    if allowed:
        tokens -= 1.0
    return allowed, (tokens, now)


def _stale(row: tuple[float, int, TunnelEntry]) -> bool:
    """A half-open timer row whose entry moved on (up, closed, gone) or was re-filed."""
    entry = row[2]
    return not entry.half_open or entry.released or entry.timer_at != row[0]
