"""PPP on top of L2TP sessions: the LNS terminates it, the LAC plays subscribers.

Each established session gets a task that drives one sans-IO :class:`ppp.link.Link` over the
session's :class:`~kl2tp.dataplane.base.PppChannel`: frames in, frames out, timers, and the
link's events turned into AAA calls, pool allocations, data-plane configuration and, when the
link dies, a CDN whose result says why. Whatever ends the session, its address goes back to
the pool and accounting is stopped.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from kl2tp.aaa import base as aaa
from kl2tp.aaa.addresses import AddressBook, owner_token
from kl2tp.aaa.pool import AddressPool, worker_share
from kl2tp.aaa.radius import (
    ATTR_CLASS,
    ATTR_FRAMED_NETMASK,
    ATTR_FRAMED_POOL,
    ATTR_FRAMED_ROUTES,
    ATTR_IDLE_TIMEOUT,
    ATTR_INTERIM_INTERVAL,
    ATTR_SESSION_TIMEOUT,
)
from kl2tp.config import Config, PeerConfig
from kl2tp.daemon import oplog
from kl2tp.daemon.handle import SessionInfo, TunnelHandle
from kl2tp.daemon.sessions import DataPlaneSessions, SessionRecord, at_once
from kl2tp.daemon.timerheap import TIMER_SLACK, TimerHeap
from kl2tp.dataplane.base import (
    Counters,
    DataPlane,
    DataPlaneError,
    InlineChannel,
    NetworkSpec,
    PppChannel,
    as_inline,
)
from kl2tp.l2tp.constants import CdnResult, ErrorCode
from kl2tp.l2tp.events import CallClosed, ConnectInfo
from kl2tp.log import escape
from kl2tp.values import FramedRoute, netmask_route, parse_framed_route
from ppp import events as pev
from ppp.config import AuthMethod, IpcpConfig, Ipv6cpConfig, LcpConfig, LinkConfig, ProxyMode
from ppp.fsm import FsmConfig
from ppp.lac import pre_negotiate
from ppp.link import Link, Phase
from ppp.proxy import ProxyAuth, ProxyLcp

if TYPE_CHECKING:
    from kl2tp.aaa.radius.coa import CoaCore, SessionIndex

log = logging.getLogger("kl2tp.daemon")

CDN_FOR_REASON: dict[pev.DownReason, tuple[CdnResult, str]] = {
    pev.DownReason.ADMIN: (CdnResult.ADMINISTRATIVE, "PPP closed by administrator"),
    pev.DownReason.LOWER_LAYER_DOWN: (CdnResult.LOSS_OF_CARRIER, "L2TP session down"),
    pev.DownReason.PEER_TERMINATED: (CdnResult.ADMINISTRATIVE, "PPP terminated by peer"),
    # Not 10 ("not established within time allotted by LAC": the LAC's own timer): the call
    # was connected and no PPP framing we could agree on came (docs/INTEROP.md).
    pev.DownReason.LCP_TIMEOUT: (CdnResult.NO_FRAMING, "PPP LCP timeout"),
    pev.DownReason.LCP_FAILED: (CdnResult.GENERAL_ERROR, "PPP LCP negotiation failed"),
    pev.DownReason.LOOPBACK: (CdnResult.GENERAL_ERROR, "PPP loopback detected"),
    pev.DownReason.AUTH_FAILED: (CdnResult.GENERAL_ERROR, "PPP authentication failed"),
    pev.DownReason.AUTH_REFUSED: (CdnResult.GENERAL_ERROR, "PPP authentication protocol refused"),
    pev.DownReason.AUTH_TIMEOUT: (CdnResult.TIMEOUT, "PPP authentication timeout"),
    pev.DownReason.NO_ADDRESS: (CdnResult.NO_FACILITIES_TEMPORARY, "PPP no address available"),
    pev.DownReason.NCP_FAILED: (
        CdnResult.GENERAL_ERROR,
        "PPP network protocol negotiation failed",
    ),
    pev.DownReason.NCP_TIMEOUT: (CdnResult.TIMEOUT, "PPP network protocol timeout"),
    pev.DownReason.ECHO_TIMEOUT: (CdnResult.LOSS_OF_CARRIER, "PPP LCP echo timeout"),
    pev.DownReason.SETUP_TIMEOUT: (CdnResult.TIMEOUT, "PPP setup timeout"),
    pev.DownReason.IDENTITY_CHANGED: (CdnResult.GENERAL_ERROR, "PPP peer changed identity"),
    pev.DownReason.TOO_MANY_RESTARTS: (CdnResult.GENERAL_ERROR, "PPP restarted too often"),
}
"""The CDN Result Code (RFC 2661 4.4.2) and message for each way a PPP link can die."""

FAILURE_NAME: dict[pev.DownReason, str] = {
    pev.DownReason.LCP_TIMEOUT: "LCP timeout",
    pev.DownReason.LCP_FAILED: "LCP failed",
    pev.DownReason.LOOPBACK: "loopback",
    pev.DownReason.AUTH_FAILED: "auth failed",
    pev.DownReason.AUTH_REFUSED: "auth refused",
    pev.DownReason.AUTH_TIMEOUT: "auth timeout",
    pev.DownReason.NO_ADDRESS: "no address",
    pev.DownReason.NCP_FAILED: "IPCP failed",
    pev.DownReason.NCP_TIMEOUT: "IPCP timeout",
    pev.DownReason.ECHO_TIMEOUT: "echo timeout",
    pev.DownReason.PEER_TERMINATED: "terminated by peer",
    pev.DownReason.SETUP_TIMEOUT: "setup timeout",
    pev.DownReason.IDENTITY_CHANGED: "identity changed",
    pev.DownReason.TOO_MANY_RESTARTS: "too many restarts",
}
"""How ``kl2tp-lac --simulate`` names a failed call."""

TERMINATE_CAUSE: dict[pev.DownReason, str] = {
    pev.DownReason.ADMIN: "admin-reset",
    pev.DownReason.PEER_TERMINATED: "user-request",
    pev.DownReason.ECHO_TIMEOUT: "lost-carrier",
    pev.DownReason.LCP_TIMEOUT: "lost-carrier",
    pev.DownReason.LCP_FAILED: "user-error",
    pev.DownReason.LOOPBACK: "port-error",
    pev.DownReason.AUTH_FAILED: "user-error",
    pev.DownReason.AUTH_REFUSED: "user-error",
    pev.DownReason.AUTH_TIMEOUT: "user-error",
    pev.DownReason.NO_ADDRESS: "service-unavailable",
    pev.DownReason.NCP_FAILED: "user-error",
    pev.DownReason.NCP_TIMEOUT: "user-error",
    pev.DownReason.SETUP_TIMEOUT: "user-error",
    pev.DownReason.IDENTITY_CHANGED: "user-error",
    pev.DownReason.TOO_MANY_RESTARTS: "user-error",
}
"""RADIUS Acct-Terminate-Cause (RFC 2866 5.10) for a PPP link that went down on its own.
Ends the daemon causes (timeouts, shutdown, an operator's clear) are set where they happen;
a CDN from the LAC is mapped by `cause_of_cdn`."""


def cause_of_cdn(event: CallClosed) -> str:
    """Acct-Terminate-Cause for a call the CDN (or the tunnel's end) cleared before PPP said
    why: the LAC's loss of carrier, the subscriber hanging up (administrative), our own
    shutdown or an operator's clear."""
    if event.by_peer:
        if event.result == CdnResult.LOSS_OF_CARRIER:
            return "lost-carrier"
        if event.result == CdnResult.ADMINISTRATIVE:
            return "user-request"
        return "lost-service"
    if "shutting down" in event.message:
        return "admin-reboot"
    return "admin-reset"


async def _send_frames(channel: PppChannel, frames: list[bytes]) -> None:
    """Send ``frames``; none once the channel is closed. The tunnel can go (the peer's
    StopCCN) while PPP still answers the peer's last frame (its Terminate-Request): seen
    against xl2tpd hanging up, where the Terminate-Ack's send raised and took the whole
    daemon down. The session is ending anyway; the frame has nowhere to go."""
    for frame in frames:
        try:
            await channel.send(frame)
        except trio.ClosedResourceError:
            return


class Stage(enum.Enum):
    """How far a subscriber's PPP got, as the LAC names failures by it."""

    LCP = "lcp"
    """LCP is not open yet (or the link waits for the LNS's first frame)."""
    AUTH = "auth"
    """Authenticating."""
    UNAUTHENTICATED = "unauthenticated"
    """LCP opened without any authentication: the LNS asked for none we could give."""
    NETWORK = "network"
    """Authenticated; the NCPs (IPCP) are negotiating."""


def stage_of(link: Link) -> Stage | None:
    """The subscriber ``link``'s stage by its phase; None when the phase does not say (the
    link is dead, not yet opened or already closed, or terminating)."""
    phase = link.phase
    if phase is Phase.ESTABLISH:
        return Stage.LCP
    if phase is Phase.AUTHENTICATE:
        return Stage.AUTH
    if phase is Phase.NETWORK:
        return Stage.NETWORK if link.auth_method is not None else Stage.UNAUTHENTICATED
    return None


_PHASE_SHOWN = {phase: phase.value.lower() for phase in Phase}
"""``show session``'s phase: one string per phase shared by every session, not one each."""

_NAME = FAILURE_NAME
_R = pev.DownReason
FAILURE_AT_CDN: dict[tuple[Stage, CdnResult], str] = {
    (Stage.LCP, CdnResult.TIMEOUT): _NAME[_R.LCP_TIMEOUT],
    (Stage.LCP, CdnResult.NO_FRAMING): _NAME[_R.LCP_TIMEOUT],
    (Stage.LCP, CdnResult.GENERAL_ERROR): _NAME[_R.LCP_FAILED],
    (Stage.AUTH, CdnResult.TIMEOUT): _NAME[_R.AUTH_TIMEOUT],
    (Stage.AUTH, CdnResult.GENERAL_ERROR): _NAME[_R.AUTH_FAILED],
    (Stage.AUTH, CdnResult.LOSS_OF_CARRIER): _NAME[_R.ECHO_TIMEOUT],
    (Stage.UNAUTHENTICATED, CdnResult.GENERAL_ERROR): _NAME[_R.AUTH_REFUSED],
    (Stage.UNAUTHENTICATED, CdnResult.TIMEOUT): _NAME[_R.NCP_TIMEOUT],
    (Stage.UNAUTHENTICATED, CdnResult.NO_FACILITIES_TEMPORARY): _NAME[_R.NO_ADDRESS],
    (Stage.UNAUTHENTICATED, CdnResult.LOSS_OF_CARRIER): _NAME[_R.ECHO_TIMEOUT],
    (Stage.NETWORK, CdnResult.TIMEOUT): _NAME[_R.NCP_TIMEOUT],
    (Stage.NETWORK, CdnResult.GENERAL_ERROR): _NAME[_R.NCP_FAILED],
    (Stage.NETWORK, CdnResult.NO_FACILITIES_TEMPORARY): _NAME[_R.NO_ADDRESS],
    (Stage.NETWORK, CdnResult.LOSS_OF_CARRIER): _NAME[_R.ECHO_TIMEOUT],
}
"""LAC: why the LNS cleared a call that never came up, from how far the subscriber's own PPP
got when the CDN arrived and the CDN's Result Code, never from the peer's free-text message.

The CDN usually overtakes the PPP frames that would have told the subscriber (a CHAP
Failure, a Terminate-Request), but never the ones the subscriber's own progress answered: a
subscriber still authenticating was refused; one whose LCP opened without authentication
did not agree with the LNS on a protocol; one negotiating IPCP that is told "no facilities"
got no address. A pair not in the table is reported by its result code."""


def failure_at_cdn(stage: Stage, result: int) -> str | None:
    """The ``--simulate`` failure name for a CDN ``result`` that found the subscriber at
    ``stage``, or None when the pair says nothing more than the result code."""
    try:
        return FAILURE_AT_CDN.get((stage, CdnResult(result)))
    except ValueError:  # a result code RFC 2661 does not define
        return None


def _lcp_config(cfg: Config) -> LcpConfig:
    p = cfg.ppp
    return LcpConfig(
        mru=p.mru,
        echo_interval=p.lcp_echo_interval,
        echo_failure=p.lcp_echo_failure,
        echo_adaptive=p.lcp_echo_adaptive,
        fsm=FsmConfig(
            restart_timer=p.restart_timer,
            max_configure=p.max_configure,
            max_terminate=p.max_terminate,
            max_failure=p.max_failure,
        ),
    )


def lns_link_config(cfg: Config, peer: PeerConfig | None = None) -> LinkConfig:
    """The LNS side: demand ``[ppp] auth``, assign addresses, offer DNS (with the overrides
    of one ``[[peer]]`` when given)."""
    p = cfg.ppp
    if peer is not None:
        p = attrs.evolve(
            p,
            **{
                key: getattr(peer, key)
                for key in ("auth", "dns", "mru", "proxy_lcp", "proxy_auth")
                if getattr(peer, key) is not None
            },
        )
    return LinkConfig(
        lcp=_lcp_config(attrs.evolve(cfg, ppp=p)),
        auth=tuple(AuthMethod(m) for m in p.auth),
        hostname=cfg.l2tp.hostname,
        ipcp=IpcpConfig(local_address=p.local_address, assign_peer_address=True, dns=p.dns),
        ipv6cp=Ipv6cpConfig(enabled=p.ipv6),
        proxy_lcp=ProxyMode(p.proxy_lcp),
        proxy_auth=ProxyMode(p.proxy_auth),
        send_address_control=False,
        setup_timeout=p.setup_timeout,
        max_restarts=p.max_restarts,
    )


@attrs.frozen
class SessionPolicy:
    """What one ``[[peer]]`` gives the sessions of its tunnels (LNS); sessions of tunnels
    of the default policy use the handler's own values."""

    link: LinkConfig
    """The PPP offer: authentication, DNS, MRU, proxy LCP and authentication."""
    pool: str | None = None
    """The ``[[pool]]`` addresses come from unless AAA names one; None: ``[ppp] pool``."""
    session_timeout: float = 0.0
    """Used when AAA gives no Session-Timeout; 0: none."""
    idle_timeout: float = 0.0
    """Used when AAA gives no Idle-Timeout; 0: none."""
    aaa: str = "local"
    """The AAA back end (a key of ``PppSessions.authenticators``)."""
    interface_template: str | None = None
    """The kernel interface name template; None: the data plane's."""


def session_policies(cfg: Config) -> dict[str, SessionPolicy]:
    """Every ``[[peer]]``'s session values by policy name."""
    p = cfg.ppp
    return {
        peer.name: SessionPolicy(
            link=lns_link_config(cfg, peer),
            pool=peer.pool,
            session_timeout=p.session_timeout
            if peer.session_timeout is None
            else peer.session_timeout,
            idle_timeout=p.idle_timeout if peer.idle_timeout is None else peer.idle_timeout,
            aaa=peer.aaa or cfg.aaa.backend,
            interface_template=peer.interface_template,
        )
        for peer in cfg.peer
    }


CHALLENGE_METHODS = (AuthMethod.CHAP, AuthMethod.MSCHAPV2)
"""What a subscriber takes when the LNS insists, whatever it prefers: it can answer either
challenge with its password, and neither hands the password over in clear (PAP only when
``[subscriber] auth = "pap"``)."""


def subscriber_link_config(cfg: Config, username: str, password: str) -> LinkConfig:
    """A simulated subscriber: authenticate with the template credentials, ask an address.

    It asks for ``[subscriber] auth`` (a Nak when the LNS offers another), and takes the
    other challenge method when the LNS insists on it (l2tpns: CHAP-MD5 only)."""
    s = cfg.subscriber
    preferred = AuthMethod(s.auth)
    return LinkConfig(
        lcp=_lcp_config(cfg),
        hostname=username,
        username=username,
        password=password,
        accept_auth=(preferred,),
        fallback_auth=tuple(m for m in CHALLENGE_METHODS if m is not preferred),
        ipcp=IpcpConfig(local_address=None, assign_peer_address=False, request_dns=True),
        ipv6cp=Ipv6cpConfig(enabled=cfg.ppp.ipv6),
        send_address_control=False,
    )


_PEER_CHOOSES = ipaddress.IPv4Address("255.255.255.255")
"""A Framed-IP-Address that lets the peer pick its address: the pool decides here, preferring
what the peer asks for if no live session holds it."""


_NO_REPLY: dict[str, object] = {}
"""The `_SessionState.reply` of sessions whose back end sent no attributes (local users):
never written to (`set_limits` makes a session its own)."""

_NO_COUNTERS = Counters()
"""The counts of a session whose data plane keeps none (or could not say)."""


LNS_FIRST_WAIT = 1.0
"""Seconds a simulated subscriber on the null data plane waits for the LNS's first frame
before it starts LCP itself (``make_handler``)."""


_CONNECT_POLL = 0.05
"""Seconds between looks at whether our ICCN has left, for a subscriber that has nothing
to wait for but that."""


_PREDECESSOR_WAIT = 10.0
"""Seconds a replacing session waits for the replaced one's data-plane removal."""


class PppSessions(DataPlaneSessions):
    """Runs PPP for every session: terminating (LNS) or as a subscriber (LAC)."""

    defers_established = True

    def __init__(
        self,
        dataplane: DataPlane,
        *,
        lns: bool,
        link_config: Callable[[int], LinkConfig],
        authenticator: aaa.Authenticator | None = None,
        pool: AddressPool | None = None,
        addresses: AddressBook[_SessionState] | None = None,
        duplicate_session: str = "refuse",
        data_sequencing: bool = False,
        rng: random.Random | None = None,
        proxy: AuthMethod | None = None,
        hostname: str = "lac",
        silent_start: float = 0.0,
        session_timeout: float = 0.0,
        idle_timeout: float = 0.0,
        interim_interval: float = 0.0,
        policies: Mapping[str, SessionPolicy] | None = None,
        authenticators: Mapping[str, aaa.Authenticator] | None = None,
    ) -> None:
        super().__init__(dataplane, lns=lns, data_sequencing=data_sequencing)
        self.policies: Mapping[str, SessionPolicy] = policies or {}
        """LNS: the ``[[peer]]`` policies' session values by name (a reload replaces them);
        a session of a tunnel whose policy is not here uses the values below."""
        self.authenticators: Mapping[str, aaa.Authenticator] = authenticators or {}
        """LNS: every AAA back end a policy may name, by ``[aaa] backend`` value."""
        self.session_timeout = session_timeout
        """``[ppp] session_timeout``: used when AAA gives no Session-Timeout; 0: none."""
        self.idle_timeout = idle_timeout
        """``[ppp] idle_timeout``: used when AAA gives no Idle-Timeout; 0: none."""
        self.interim_interval = interim_interval
        """``[radius] interim_interval``: used when AAA gives no Acct-Interim-Interval."""
        self.boot_id = f"{int(time.time()) & 0xFFFFFFFF:08X}"
        """This run's start time: with the NAS-Port it makes Acct-Session-Ids unique across
        restarts."""
        self.timeouts: dict[str, int] = {}
        """Sessions ended by Session-Timeout / Idle-Timeout."""
        self.silent_start = silent_start
        """Seconds a link waits for the peer's first frame before it sends its own (pppd's
        ``silent``); 0 starts LCP at once. Every LAC subscriber waits (``make_handler``):
        the LNS then speaks first, once it has our ICCN (and its kernel session exists),
        and no frame overtakes the LNS's programming."""
        self.link_config = link_config
        self.authenticator = authenticator
        if addresses is None:
            reserved = []
            if lns:
                local = link_config(0).ipcp.local_address
                reserved = [local] if local is not None else []
            addresses = AddressBook({"": pool} if pool is not None else {}, reserved=reserved)
        self.addresses = addresses
        """Every address a live session holds, pool or static (the only way to get one)."""
        self.pool = self.addresses.pools.get(self.addresses.default)
        """The default pool (``[ppp] pool``), for the summary."""
        self.duplicate_session = duplicate_session
        """``[aaa] duplicate_session``: what a second login of a user holding a static
        address gets (``refuse``: authentication fails; ``replace``: the old session ends)."""
        self.refused: dict[str, int] = {}
        """Logins refused after the back end accepted them, by reason."""
        self.drops: dict[str, int] = {}
        """PPP packets from peers dropped as malformed, by reason (every link counts here)."""
        self.setup_timeouts: dict[str, int] = {}
        """Links ended by ``[ppp] setup_timeout``, by the stage they were stuck in."""
        self.identity_changes = 0
        """Links ended because re-authentication named another user."""
        self.restart_limits = 0
        """Links ended for restarting LCP more than ``[ppp] max_restarts`` times."""
        self.echo_timeouts = 0
        """Links ended for unanswered LCP Echo-Requests (``[ppp] lcp_echo_failure``)."""
        self.timers = TimerHeap(TIMER_SLACK)
        """The link timers of every session run without a task (`_SessionState.fire`)."""
        # CHAP and MS-CHAPv2 challenges come from here and must not be predictable from the
        # magic numbers and challenges a subscriber sees: the OS generator, not a seeded one.
        self.rng = rng or random.SystemRandom()
        self.proxy = proxy
        self.hostname = hostname
        self.prepared: dict[int, Link] = {}
        """Subscriber links the LAC already took through LCP and auth (proxy), by call number."""
        self.running: Mapping[tuple[int, int], _SessionState] = _Running(self.records)
        """Every session whose PPP runs, by (tunnel id, session id): a view of `records`
        (their `upper`), not a table of its own (a key and an entry per held session)."""
        # Worker k of N ([l2tp] workers) numbers its ports k+1, k+1+N, ...: NAS-Port and
        # Acct-Session-Id stay unique across the workers of one LNS.
        self._nas_index, self._nas_step = worker_share()
        self._nas_port = self._nas_index - self._nas_step + 1
        self.coa_index: SessionIndex | None = None
        """LNS with a CoA server (RFC 5176): sessions whose network is up, by Acct-Session-Id,
        user and address; set by the daemon."""
        self.coa: CoaCore | None = None
        """That server's core, for its counters in ``summary``."""

    def prepare_call(self, n: int) -> ConnectInfo | None:
        """LAC with proxy: negotiate LCP and start authentication with subscriber ``n`` here,
        and return the ICCN values that hand the result to the LNS (RFC 2661 4.4.5)."""
        if self.proxy is None:
            return None
        result = pre_negotiate(
            self.link_config(n),
            self.proxy,
            trio.current_time(),
            rng=self.rng,
            lac_hostname=self.hostname,
            name=f"subscriber {n}",
        )
        self.prepared[n] = result.subscriber
        return ConnectInfo(
            initial_rx_lcp_confreq=result.lcp.initial_received,
            last_sent_lcp_confreq=result.lcp.last_sent,
            last_rx_lcp_confreq=result.lcp.last_received,
            proxy_authen_type=int(result.auth.type),
            proxy_authen_name=result.auth.name,
            proxy_authen_challenge=result.auth.challenge or None,
            proxy_authen_id=result.auth.ident,
            proxy_authen_response=result.auth.response,
        )

    def call_closed(self, tunnel: TunnelHandle, event: CallClosed) -> None:
        info = tunnel.sessions.get(event.sid)
        key = (tunnel.local_tunnel_id, event.sid)
        state = self.running.get(key)
        # A subscriber prepared for proxy whose call never reached its session task.
        prepared = (
            self.prepared.pop(int(info.extra["n"]), None) if info and "n" in info.extra else None
        )
        stage: Stage | None = None
        if state is not None:
            stage = state.stage
        elif prepared is not None:
            stage = stage_of(prepared) or Stage.LCP
        elif key in self.records:
            stage = Stage.LCP  # the session's PPP had not started yet
        if not self.lns and event.by_peer and info is not None and info.established is None:
            self._note_failure(info, stage, event.result)
        if state is not None and not state.end_cause:
            state.end_cause = cause_of_cdn(event)
        super().call_closed(tunnel, event)

    @staticmethod
    def _note_failure(info: SessionInfo, stage: Stage | None, result: int) -> None:
        """LAC: name why the LNS cleared a call that never came up (``FAILURE_AT_CDN``).

        A subscriber's own verdict stands, except "terminated by peer": the LNS terminates
        LCP whenever it gives up, and the CDN right behind the Terminate-Request says more.
        """
        known = info.extra.get("failure")
        if known is not None and known != FAILURE_NAME[pev.DownReason.PEER_TERMINATED]:
            return
        failure = failure_at_cdn(stage, result) if stage is not None else None
        if failure is not None:
            info.extra["failure"] = failure

    def summary(self) -> dict[str, object]:
        out = super().summary()
        if self.pool is not None:
            out["pool"] = {
                "size": self.pool.size,
                "in_use": self.pool.in_use,
                "free": self.pool.free,
            }
        out["addresses"] = self.addresses.summary()
        out["logins_refused"] = dict(self.refused)
        out["ppp_drops"] = dict(self.drops)
        out["setup_timeouts"] = dict(self.setup_timeouts)
        out["identity_changes"] = self.identity_changes
        out["restart_limits"] = self.restart_limits
        out["echo_timeouts"] = self.echo_timeouts
        out["pools"] = {
            name or "default": {"size": pool.size, "in_use": pool.in_use}
            for name, pool in self.addresses.pools.items()
        }
        out["timeouts"] = dict(self.timeouts)
        if self.coa is not None:
            out["coa"] = dict(self.coa.counters)
        radius = getattr(self.authenticator, "summary", None)
        if callable(radius):
            out["radius"] = radius()
        counters = getattr(self.authenticator, "counters", None)
        if counters is not None:
            out["aaa"] = attrs.asdict(counters)
        return out

    def policy_of(self, tunnel: TunnelHandle) -> SessionPolicy | None:
        """The session values of ``tunnel``'s policy; None: the handler's own (default)."""
        return self.policies.get(tunnel.policy) if self.policies else None

    def interface_template(self, tunnel: TunnelHandle) -> str | None:
        policy = self.policy_of(tunnel)
        return policy.interface_template if policy is not None else None

    def channel_opened(self, rec: SessionRecord) -> None:
        """Make the session's PPP state before the core hands over the first frame; over a
        data plane that carries frames in userspace they go straight to its link."""
        info = self.session_info(rec)
        n = int(info.extra.get("n", 0)) if info is not None else 0
        link = self.prepared.pop(n, None)
        opened = link is not None
        policy = self.policy_of(rec.tunnel)
        if link is None:
            link = Link(
                policy.link if policy is not None else self.link_config(n),
                rng=self.rng,
                name=rec,  # str(rec): "Tnl/Cl TID/SID", made when a line is written
                drops=self.drops,
            )
        state = _SessionState(self, rec, link, info, opened=opened, policy=policy)
        rec.upper = state
        inline = as_inline(rec.channel) if rec.channel is not None else None
        if inline is not None:
            state.inline = inline
            inline.receiver = state  # its __call__ is frame_in

    # A session over a channel that takes frames inline (the null data plane) runs without a
    # task: its frames come in the tunnel's task, its link's timer is `timers`', AAA and the
    # data plane are called at once when they answer at once, else from short tasks. One
    # over a channel it must read (the kernel's) has a task (`run_session`).

    runs_inline = True

    def start_inline(self, rec: SessionRecord) -> bool:
        state = self.running[(rec.tunnel.local_tunnel_id, rec.sid)]
        if state.inline is None:
            return False
        state.start(trio.current_time())
        return True

    def end_inline(self, rec: SessionRecord) -> None:
        state = _leave(rec)
        if state is None or state.stop():
            self.remove_inline(rec)
        else:
            rec.tunnel.start_soon(self._end, rec, state)

    async def _end(self, rec: SessionRecord, state: _SessionState) -> None:
        """A session without a task whose cleanup waits (accounting, kernel counters)."""
        with trio.CancelScope(shield=True):
            await state.cleanup()
        self.remove_inline(rec)

    async def run_session(self, rec: SessionRecord) -> None:
        state = self.running[(rec.tunnel.local_tunnel_id, rec.sid)]
        try:
            await state.run()
        finally:
            _leave(rec)
            with trio.CancelScope(shield=True):
                await state.cleanup()

    def session_removed(self, rec: SessionRecord) -> None:
        state = rec.upper
        if isinstance(state, _SessionState):
            state.removed()


def _leave(rec: SessionRecord) -> _SessionState | None:
    """The session's PPP no longer runs (`PppSessions.running`); its state, if it ran."""
    state = rec.upper
    if not isinstance(state, _SessionState) or not state.running:
        return None
    state.running = False
    return state


class _Running(Mapping[tuple[int, int], "_SessionState"]):
    """`PppSessions.running`: the records whose PPP runs, as their `_SessionState`."""

    __slots__ = ("_records",)

    def __init__(self, records: dict[tuple[int, int], SessionRecord]) -> None:
        self._records = records

    def __getitem__(self, key: tuple[int, int]) -> _SessionState:
        state = self._records[key].upper
        if isinstance(state, _SessionState) and state.running:
            return state
        raise KeyError(key)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for key, rec in list(self._records.items()):
            state = rec.upper
            if isinstance(state, _SessionState) and state.running:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _SessionState:
    """One session's PPP driver (the glue loop plus what must be undone)."""

    # One per live session: slots keep it at a third of its size with a __dict__.
    __slots__ = (
        "_early",
        "_gone",
        "_idle_reset",
        "_phase",
        "_removed",
        "_scopes",
        "_started",
        "_timers",
        "accounting",
        "acct_session_id",
        "address",
        "armed",
        "authenticator",
        "dead",
        "end_cause",
        "framed_routes",
        "info",
        "inline",
        "interface",
        "limits_changed",
        "link",
        "nas_port",
        "nursery",
        "opened",
        "owner",
        "peer_chooses",
        "policy",
        "predecessor",
        "rec",
        "replaced",
        "reply",
        "routes",
        "running",
        "stage",
        "up_at",
        "username",
        "wake",
    )

    def __init__(
        self,
        owner: PppSessions,
        rec: SessionRecord,
        link: Link,
        info: SessionInfo | None,
        *,
        opened: bool,
        policy: SessionPolicy | None = None,
    ) -> None:
        self.opened = opened
        self.owner = owner
        self.policy = policy
        """The session values of the tunnel's ``[[peer]]`` (None: the owner's)."""
        self.authenticator = (
            owner.authenticators.get(policy.aaa, owner.authenticator)
            if policy is not None
            else owner.authenticator
        )
        """The AAA back end of the session's policy."""
        self.rec = rec
        self.link = link
        self.info = info
        self.running = True
        """The session's PPP runs (`PppSessions.running`): until its end is acted on."""
        self.nursery: trio.Nursery | None = None
        """The session's task's nursery; None for a session without a task (`start`)."""
        self.wake: trio.Event | None = None
        """Wakes the session's task (`run`): a timer moved earlier, the link died, or
        (frames from a channel) there is work."""
        self.inline: InlineChannel | None = None
        """Set: frames from the peer come from the tunnel task (`frame_in`) and are
        answered there through this channel (the null data plane); else the session's task
        reads them from its channel."""
        self._early: list[bytes] | None = []
        """Inline frames that arrived before the link started (None once it has)."""
        self.armed = math.inf
        """When the link's timer runs next: the session's task wakes then, or (without a
        task) the owner's `TimerHeap` calls `fire`."""
        self._started = False
        """`start` ran: the session has no task."""
        self._scopes: set[trio.CancelScope] | None = None
        """The short tasks of a session without a task (`_spawn`), cancelled by `stop`."""
        self.dead = False
        """The link is dead: the task ends and cleans up."""
        self.address: ipaddress.IPv4Address | None = None
        self.username = ""
        self.up_at: float | None = None
        self.accounting = False
        self.interface = ""
        """The session's network interface once the data plane named one."""
        self.replaced = False
        """A new login of the same user took this session's place."""
        self._gone: trio.Event | None = None
        """Made when a replacing session waits for this one (`gone`)."""
        self._removed = False
        """The session is out of the data plane (`removed`)."""
        self.predecessor: trio.Event | None = None
        """The ``gone`` of the session this one replaced: its interface (same peer address,
        same host route) must be removed before this one's is configured."""
        self.stage = stage_of(link) or Stage.LCP
        """How far the subscriber got before its link began to terminate."""
        self._phase: Phase | None = None
        """The phase last shown (``_note_phase``)."""
        owner._nas_port += owner._nas_step
        self.nas_port = owner._nas_port
        self.acct_session_id = f"{owner.boot_id}{self.nas_port:08X}"
        """RADIUS Acct-Session-Id: the same in the Access-Request and every record."""
        self.end_cause = ""
        """Acct-Terminate-Cause (lower case) once the session's end is known; first wins."""
        self.reply: dict[str, object] = _NO_REPLY
        """The accepted login's back-end attributes (`AuthResult.attributes`); a CoA's
        limits (`set_limits`) are added. Shared and empty until there are any."""
        self.framed_routes: tuple[FramedRoute, ...] = ()
        """The accepted login's Framed-Routes that parse (`_parse_routes`)."""
        self.routes: tuple[FramedRoute, ...] = ()
        """The routes handed to the data plane when IPCP last opened (``show session``)."""
        self.peer_chooses = False
        """AAA said 255.255.255.255: the subscriber's own address, if nobody holds it."""
        self._timers = False
        self.limits_changed: trio.Event | None = None
        """Set when `set_limits` (a CoA-Request) changed a limit: the timers re-read them."""
        self._idle_reset = False
        """A new Idle-Timeout counts from now (`set_limits`)."""
        if owner.lns:
            self._extra(acct_session_id=self.acct_session_id)
        call = rec.call
        if call.calling_number:
            self._extra(calling_number=call.calling_number)
        if call.called_number:
            self._extra(called_number=call.called_number)

    @property
    def context(self) -> aaa.SessionContext:
        """Where this session's AAA requests come from (RADIUS NAS-* attributes)."""
        tunnel = self.rec.tunnel
        call = self.rec.call
        return aaa.SessionContext(
            tunnel_id=tunnel.local_tunnel_id,
            session_id=self.rec.sid,
            peer_address=f"{tunnel.peer_addr[0]}:{tunnel.peer_addr[1]}",
            peer_hostname=tunnel.peer_hostname,
            calling_number=call.calling_number or "",
            called_number=call.called_number or "",
            nas_port=self.nas_port,
            interface=self.interface,
            acct_session_id=self.acct_session_id,
        )

    def _note_phase(self) -> None:
        """Show the link's phase; remember its stage unless the link is going down. Runs for
        every frame: only a phase change costs anything."""
        phase = self.link.phase
        if phase is self._phase:
            return
        self._phase = phase
        self.stage = stage_of(self.link) or self.stage
        self._extra(phase=_PHASE_SHOWN[phase])

    def _extra(self, **values: Any) -> None:
        if self.info is not None:
            self.info.extra.update(values)

    # -- without a task (an inline channel opened at once) -----------------------------------

    def start(self, now: float) -> None:
        """Run the session without a task: its frames come through `frame_in`, its link's
        timer from the owner's `TimerHeap` (`fire`). Waits ``silent_start`` for the peer's
        first frame (a subscriber), as `run` does."""
        self._started = True
        if self.opened or self._early or self.owner.silent_start <= 0:
            self._begin_unless_pending(now, heard=bool(self._early))
        else:
            self._arm(now + self.owner.silent_start)

    def _begin_unless_pending(self, now: float, *, heard: bool) -> None:
        if not heard and not self.owner.lns and self.rec.tunnel.connect_pending(self.rec.sid):
            # As in `run`: our ICCN still waits for the LNS's window; look again shortly.
            self._arm(now + _CONNECT_POLL)
            return
        early, self._early = (
            self._early or [],
            None,
        )  # from now on frame_in feeds the link
        self._open_link(now, early)
        self._poke()

    def _arm(self, when: float | None) -> None:
        # Most calls (after every frame of a held session) leave the deadline as it is
        # armed: skip the heap's call and the bound method it takes.
        if when is not None and when < self.armed:
            self.owner.timers.arm(self, when, self.rec.tunnel.start_soon)

    def fire(self, now: float) -> None:
        """`TimerHeap`: the link's timer (or the wait for the first frame) is due."""
        try:
            if self._early is not None:
                self._begin_unless_pending(now, heard=False)
                return
            # The link runs whatever of its deadlines is due (maybe none: a deadline that
            # moved later since it was armed); `_poke` arms the next.
            self.link.handle_timer(now)
            self._note_phase()
            self._poke()
        except Exception as exc:
            self.owner._crashed(self.rec, exc)

    def stop(self) -> bool:
        """The session is gone (its CDN, or its tunnel's end): the link stops, short tasks
        are cancelled; then what the session got is given back, at once if nothing must be
        waited for (True), else the caller awaits `cleanup` (False)."""
        self.dead = True
        self.owner.timers.disarm(self)
        for scope in self._scopes or ():
            scope.cancel()
        return self._cleanup_at_once()

    def _spawn(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run ``fn(*args)`` beside the link: in the session's task's nursery, or (without
        a task) as a short task that `stop` cancels."""
        if self.nursery is not None:
            self.nursery.start_soon(fn, *args)
        else:
            self.rec.tunnel.start_soon(self._short, fn, args)

    async def _short(self, fn: Callable[..., Awaitable[object]], args: tuple[object, ...]) -> None:
        if self.dead:
            return
        scope = trio.CancelScope()
        if self._scopes is None:
            self._scopes = set()
        self._scopes.add(scope)
        try:
            with scope:
                await fn(*args)
        except Exception as exc:
            self.owner._crashed(self.rec, exc)
        finally:
            self._scopes.discard(scope)
            if not self._scopes:
                self._scopes = None

    def gone(self) -> trio.Event:
        """Set once the session is out of the data plane (a replacing session waits)."""
        if self._gone is None:
            self._gone = trio.Event()
            if self._removed:
                self._gone.set()
        return self._gone

    def removed(self) -> None:
        """The session is out of the data plane."""
        self._removed = True
        if self._gone is not None:
            self._gone.set()

    # -- with a task (a channel to read, or one a data plane opened later) -------------------

    def _open_link(self, now: float, early: list[bytes]) -> None:
        """Open the link (unless the LAC took it through LCP already) and give it the frames
        that came before."""
        if not self.opened:
            lns = self.owner.lns
            proxy_lcp, proxy_auth = _proxy_values(self.rec.info) if lns else (None, None)
            self.link.open(now, proxy_lcp=proxy_lcp, proxy_auth=proxy_auth)
        for frame in early:
            self.link.receive_frame(frame, now)
        self._note_phase()

    async def run(self) -> None:
        channel = self.rec.channel
        assert channel is not None
        self.wake = trio.Event()
        first: bytes | None = None
        if not self.opened and self.owner.silent_start > 0:
            with trio.move_on_after(self.owner.silent_start):
                first = await self._first_frame(channel)
        tunnel, sid = self.rec.tunnel, self.rec.sid
        while first is None and not self.owner.lns and tunnel.connect_pending(sid):
            # The LNS has not spoken and our ICCN still waits for its window: nothing of
            # ours may reach it first (over the null data plane the core holds our frames
            # behind the ICCN anyway; the kernel's bypass it). Rare: look again shortly.
            with trio.move_on_after(_CONNECT_POLL):
                first = await self._first_frame(channel)
        self._open_link(
            trio.current_time(),
            [*([first] if first is not None else []), *(self._early or ())],
        )
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                if self.inline:
                    self._early = None  # from now on frame_in feeds the link
                else:
                    nursery.start_soon(self._reader)
                await self._loop(channel)
                nursery.cancel_scope.cancel()
        finally:
            self.dead = True  # however it ended: frame_in and _poke leave the link alone

    async def _loop(self, channel: PppChannel) -> None:
        """Flush, sleep until the link's timer or a wake-up, run the timer; until the link
        is dead."""
        link = self.link
        while True:
            if self.inline:
                self._pump()
            elif await self._flush(channel):
                self.dead = True
            if self.dead:
                return
            self._note_phase()
            timer = link.get_timer()
            self.armed = math.inf if timer is None else timer
            with trio.move_on_at(self.armed):
                await self._wake().wait()
            self.wake = trio.Event()
            now = trio.current_time()
            timer = link.get_timer()
            if timer is not None and timer <= now:
                link.handle_timer(now)
                self._note_phase()

    def _wake(self) -> trio.Event:
        assert self.wake is not None
        return self.wake

    async def _first_frame(self, channel: PppChannel) -> bytes:
        """The peer's first frame (``silent_start``), from the channel or `frame_in`."""
        if not self.inline:
            return await channel.receive()
        while not self._early:
            await self._wake().wait()
            self.wake = trio.Event()
        return self._early.pop(0)

    # -- both --------------------------------------------------------------------------------

    def frame_in(self, frame: bytes) -> None:
        """A frame from the peer, in the tunnel task (``inline``): the link answers it at
        once; a session's task wakes only when its timer moved earlier or the link died."""
        if self._early is not None:  # the link has not started yet
            self._early.append(frame)
            if self._started:
                self._begin_unless_pending(trio.current_time(), heard=True)
            elif self.wake is not None:
                self.wake.set()
            return
        if self.dead:
            return
        self.link.receive_frame(frame, trio.current_time())
        self._note_phase()
        self._poke()

    def _poke(self) -> None:
        """The link changed: inline, send and act on what it wants now, then arm its timer
        (without a task) or wake the task when the timer moved earlier or the link died;
        frames from a channel: wake the task."""
        if self._started:
            if self._early is None:
                self._pump()
                if self.dead:
                    self.owner.timers.disarm(self)
                else:
                    self._arm(self.link.get_timer())
            return
        if self.wake is None:
            return  # the task has not started yet: it looks at the link first thing
        if not self.inline or self._early is not None:
            self.wake.set()
            return
        self._pump()
        timer = self.link.get_timer()
        if self.dead or (timer is not None and timer < self.armed):
            self.wake.set()

    def _pump(self) -> None:
        """Inline: send every pending frame through the tunnel and act on every event,
        until neither is left; ``dead`` once the link is."""
        link = self.link
        channel = self.inline
        assert channel is not None
        while not self.dead:
            frames = link.frames_to_send()
            for frame in frames:
                channel.send_nowait(frame)
            event = link.next_event()
            if event is None:
                if not frames:
                    return
                continue
            if self._handle(event):
                self.dead = True
                for frame in link.frames_to_send():  # e.g. the last Terminate-Ack
                    channel.send_nowait(frame)

    async def _flush(self, channel: PppChannel) -> bool:
        """Send every pending frame and act on every event, until neither is left (acting
        on an event may produce frames and events). True when the link is dead."""
        while True:
            frames = self.link.frames_to_send()
            await _send_frames(channel, frames)
            event = self.link.next_event()
            if event is None:
                if not frames:
                    return False
                continue
            if self._handle(event):
                # e.g. the last Terminate-Ack
                await _send_frames(channel, self.link.frames_to_send())
                return True

    async def _reader(self) -> None:
        channel = self.rec.channel
        assert channel is not None
        while True:
            try:
                frame = await channel.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return
            self.link.receive_frame(frame, trio.current_time())
            self._note_phase()
            self._wake().set()

    def _handle(self, event: pev.PppEvent) -> bool:
        """Act on one link event; True when the link is dead."""
        if isinstance(event, pev.AuthRequest):
            self.username = event.username
            self._extra(username=event.username)
            self._on_auth_request(event)
        elif isinstance(event, pev.Authenticated):
            self.username = event.username or self.username
            self._extra(
                username=self.username,
                auth=event.method.value if event.method is not None else "none",
            )
        elif isinstance(event, pev.AddressRequest):
            self._assign_address(event)
        elif isinstance(event, pev.LinkUp):
            self._on_link_up(event)
        elif isinstance(event, pev.NetworkUp):
            self._on_network_up(event)
        elif isinstance(event, pev.Ipv6Up):
            self._extra(ipv6_interface_id=f"{event.peer_interface_id:016x}")
            self._on_ipv6_up(event)
        elif isinstance(event, pev.LinkDown):
            self._link_down(event)
            return True
        return False

    # Each link event that needs the AAA back end or the data plane is acted on at once when
    # the back end can answer without waiting (`at_once`: local users, the null data plane),
    # in the task that handed the event over; otherwise by a short task of the session. The
    # synchronous path does not `_poke`: the loop that handed the event over goes on to send
    # and act on what the link then wants.

    def _on_auth_request(self, event: pev.AuthRequest) -> None:
        backend = self.authenticator
        if backend is None:
            self.link.auth_result(trio.current_time(), False, message="no AAA back end")
            return
        request = aaa.AuthRequest(event.username, event.credentials, self.context)
        policy = self.policy
        if policy is not None and request.method not in policy.link.auth:
            # The back ends accept every policy's methods; this tunnel's policy decides.
            result = aaa.AuthResult(False, "Authentication failed", reason="method-not-allowed")
            self._auth_decided(event, request, result)
            return
        decide = at_once(backend, "authenticate")
        if decide is None:
            self._spawn(self._authenticate, event, request)
            return
        try:
            result = decide(request)
        except Exception as exc:  # a back-end failure refuses the subscriber, never the daemon
            result = self._aaa_failed(event, exc)
        if self._shared_static(result) is not None:  # workers: the claim must be awaited
            self._spawn(self._decide_shared, event, request, result)
            return
        self._auth_decided(event, request, result)

    async def _authenticate(self, event: pev.AuthRequest, request: aaa.AuthRequest) -> None:
        assert self.authenticator is not None
        try:
            result = await self.authenticator.authenticate(request)
        except Exception as exc:  # a back-end failure refuses the subscriber, never the daemon
            result = self._aaa_failed(event, exc)
        if self._shared_static(result) is not None:
            await self._decide_shared(event, request, result)
            return
        self._auth_decided(event, request, result)
        self._poke()

    def _shared_static(self, result: aaa.AuthResult) -> ipaddress.IPv4Address | None:
        """``[l2tp] workers = N``: the static address an accepted login must first claim
        from the supervisor (None: no worker, no static address, or a re-authentication)."""
        static = result.framed_address
        if (
            self.owner.addresses.shared is None
            or not result.accepted
            or self.address is not None
            or static is None
            or static == _PEER_CHOOSES
        ):
            return None
        return static

    async def _decide_shared(
        self, event: pev.AuthRequest, request: aaa.AuthRequest, result: aaa.AuthResult
    ) -> None:
        """The supervisor gives the static address to this worker first (another worker's
        session may hold it: refused whatever ``duplicate_session`` says, the holder is not
        ours to end); the claim is given back unless the session took the address."""
        shared = self.owner.addresses.shared
        static = self._shared_static(result)
        assert shared is not None and static is not None
        token = owner_token(self)
        try:
            granted = await shared.claim(static, token)
        except trio.Cancelled:  # the session ended while we asked: the answer may be yes
            shared.release(static, token)
            raise
        if self.dead:
            shared.release(static, token)
            return
        if not granted:
            result = aaa.AuthResult(False, "Address unavailable", reason="address-in-use")
            self._refuse("address-in-use-by-worker", "Address unavailable")
        self._auth_decided(event, request, result)
        if granted and self.address != static:
            shared.release(static, token)
        self._poke()

    def _aaa_failed(self, event: pev.AuthRequest, exc: Exception) -> aaa.AuthResult:
        name = escape(event.username)
        log.error('%s: AAA failed for "%s": %s', self.link.name, name, escape(exc))
        return aaa.AuthResult(False, "Authentication failed", reason="aaa-error")

    def _auth_decided(
        self, event: pev.AuthRequest, request: aaa.AuthRequest, result: aaa.AuthResult
    ) -> None:
        """Claim a static address, note a refusal, tell the link."""
        if self.dead:
            # The session ended while its back end answered (its short task had its answer
            # before `stop` cancelled it): its cleanup has run, an address claimed now would
            # never be given back.
            return
        backend = self.authenticator
        if result.accepted:
            refusal = self._claim_static(event.username, result.framed_address)
            if refusal is not None:
                result = aaa.AuthResult(False, refusal[1], reason=refusal[0])
        if result.accepted:
            self.reply = dict(result.attributes) if result.attributes else _NO_REPLY
            self.framed_routes = self._parse_routes()
            self.peer_chooses = result.framed_address == _PEER_CHOOSES
        if not result.accepted:
            self._extra(failure="auth failed")
            oplog.auth_failed(
                self.rec.tunnel,
                self.rec.sid,
                event.username,
                request.method,
                result.reason or "rejected",
            )
        self.link.auth_result(
            trio.current_time(),
            result.accepted,
            message=result.message,
            authenticator_response=result.authenticator_response,
            address=None,
            dns=self._dns(result.dns, backend),
        )

    def _dns(self, dns: tuple[ipaddress.IPv4Address, ...], backend: Any) -> tuple[Any, ...]:
        """The DNS servers to offer: the back end's answer, unless it is only the back end's
        default (``[ppp] dns``) and the session has a policy (then the policy's, configured
        in its link)."""
        if self.policy is not None and dns == tuple(getattr(backend, "dns", ())):
            return ()
        return dns

    def _claim_static(
        self, username: str, address: ipaddress.IPv4Address | None
    ) -> tuple[str, str] | None:
        """Claim the static address AAA gave an accepted login, before the peer hears it is
        in; None when it is ours, else the (reason, message) that refuses the login.

        A second login of a user whose static address a live session holds gets what
        ``[aaa] duplicate_session`` says: refused, or the old session ends and this one
        takes the address. An address held by a *different* user (two users given the same
        static address, or a pool inside which a static one lies) is refused whatever the
        setting: the holder is not this user's to end.
        """
        book = self.owner.addresses
        if self.address is not None:
            return None  # re-authentication of the same identity: it keeps its address
        if address is None or address == _PEER_CHOOSES:
            return None  # from the pool, in IPCP
        holding = book.holding(address)
        if holding is not None and holding.owner is not self:
            if holding.user != username or not holding.static:
                return self._refuse("address-in-use", "Address unavailable")
            if self.owner.duplicate_session != "replace":
                return self._refuse("duplicate-session", "Session limit reached")
            holding.owner.replaced_by(self)
            book.release(holding.owner)
        claimed = book.assign(self, static=address, user=username)
        if claimed is None:
            return self._refuse("address-unavailable", "Address unavailable")
        self.address = claimed
        return None

    def _refuse(self, reason: str, message: str) -> tuple[str, str]:
        refused = self.owner.refused
        refused[reason] = refused.get(reason, 0) + 1
        log.warning("%s: login refused (%s)", self.link.name, reason)
        return reason, message

    def replaced_by(self, other: _SessionState) -> None:
        """``duplicate_session = "replace"``: a new login of our user takes our address; the
        session ends now (CDN; the cleanup sends the accounting Stop)."""
        self.replaced = True
        other.predecessor = self.gone()
        log.info("%s: replaced by a new login on %s", self.link.name, other.link.name)
        rec = self.rec
        self._extra(failure="replaced")
        rec.tunnel.hangup(
            rec.sid,
            CdnResult.ADMINISTRATIVE,
            ErrorCode.NO_ERROR,
            "session replaced by a new login of the same user",
        )

    def _assign_address(self, event: pev.AddressRequest) -> None:
        if self.dead:
            return  # as in `_auth_decided`: nothing may be taken after the cleanup
        now = trio.current_time()
        address = self.address
        book = self.owner.addresses
        requested = event.requested
        if address is None and self.peer_chooses and requested is not None and int(requested):
            # Framed-IP-Address 255.255.255.255: the address the subscriber asks for, as in
            # the reference trace ("allowing negotiated framed address"), unless it is held.
            address = book.assign(self, static=requested, user=self.username)
        if address is None:
            # No static address: the pool AAA named (Framed-Pool) or the default, preferring
            # the address the peer asked for if no live session holds it.
            pool = self.reply.get(ATTR_FRAMED_POOL)
            if pool is None and self.policy is not None:
                pool = self.policy.pool
            if pool is not None and str(pool) not in book.pools:
                log.warning(
                    '%s: Framed-Pool "%s" is no [[pool]] of ours', self.link.name, escape(pool)
                )
            name = None if pool is None else str(pool)
            address = book.assign(self, requested=requested, user=self.username, pool=name)
            if address is None and book.wait_for_block(name, lambda: self._block_came(event)):
                return  # the link holds the peer's IPCP request until `address_result`
        if address is None:
            self._extra(failure="no address")
        self.address = address
        self.link.address_result(now, address)

    def _block_came(self, event: pev.AddressRequest) -> None:
        """This worker's pool had no free address for the call and now has its next block
        (or heard that none is left): ask again, as `fire` does from the timer's task."""
        try:
            self._assign_address(event)
            self._poke()
        except Exception as exc:
            self.owner._crashed(self.rec, exc)

    def _on_link_up(self, event: pev.LinkUp) -> None:
        """LCP is open: the unit accepts frames up to the MRU we negotiated (pppd does too)."""
        set_mru = at_once(self.owner.dataplane, "set_mru")
        if set_mru is None:
            self._spawn(self._link_up, event)
            return
        try:
            set_mru(self.rec.tunnel.local_tunnel_id, self.rec.sid, event.mru)
        except DataPlaneError as exc:
            self._mru_failed(exc)

    async def _link_up(self, event: pev.LinkUp) -> None:
        try:
            await self.owner.dataplane.set_mru(
                self.rec.tunnel.local_tunnel_id, self.rec.sid, event.mru
            )
        except DataPlaneError as exc:
            self._mru_failed(exc)

    def _mru_failed(self, exc: DataPlaneError) -> None:
        self.rec.tunnel.count("dataplane_errors_set_mru")
        log.error("%s: could not set the MRU: %s", self.link.name, exc)

    async def _configure(self, net: NetworkSpec) -> bool:
        """Configure the session's interface for one NCP; False (link closing) on failure."""
        rec = self.rec
        try:
            outcome: str | DataPlaneError | None = await self.owner.dataplane.session_up(
                rec.tunnel.local_tunnel_id, rec.sid, net
            )
        except DataPlaneError as exc:
            outcome = exc
        if self._configured(outcome):
            return True
        self._poke()
        return False

    def _configure_at_once(self, net: NetworkSpec) -> bool | None:
        """`_configure` when the data plane answers at once (without `_poke`); None when it
        must be awaited (nothing done)."""
        session_up = at_once(self.owner.dataplane, "session_up")
        if session_up is None:
            return None
        rec = self.rec
        try:
            outcome: str | DataPlaneError | None = session_up(
                rec.tunnel.local_tunnel_id, rec.sid, net
            )
        except DataPlaneError as exc:
            outcome = exc
        return self._configured(outcome)

    def _configured(self, outcome: str | DataPlaneError | None) -> bool:
        """The data plane's answer to ``session_up``: the interface's name (None: it has
        none), or its error, which closes the link (False)."""
        if isinstance(outcome, DataPlaneError):
            self.rec.tunnel.count("dataplane_errors_session_up")
            log.error("%s: could not configure the interface: %s", self.link.name, outcome)
            self.end_cause = self.end_cause or "nas-error"
            self.link.close(trio.current_time(), pev.DownReason.ADMIN, "data plane error")
            return False
        if outcome:
            self.interface = outcome
            self._extra(interface=outcome)
        return True

    def _on_ipv6_up(self, event: pev.Ipv6Up) -> None:
        net = NetworkSpec(
            local_ip=None,
            peer_ip=None,
            mtu=self.link.lcp.peer_mru,
            local_ifid=event.interface_id.to_bytes(8, "big"),
            peer_ifid=event.peer_interface_id.to_bytes(8, "big"),
        )
        if self._configure_at_once(net) is None:
            self._spawn(self._configure, net)

    def _on_network_up(self, event: pev.NetworkUp) -> None:
        """IPCP is open: configure the interface, start accounting, the session is up. At
        once when nothing must be waited for (no replaced session's removal, a data plane
        and an accounting back end that answer at once)."""
        account = None
        if self._needs_start():
            assert self.authenticator is not None
            account = at_once(self.authenticator, "account")
            if account is None:
                self._spawn(self._network_up, event)
                return
        if self.predecessor is not None or at_once(self.owner.dataplane, "session_up") is None:
            self._spawn(self._network_up, event)
            return
        if not self._configure_at_once(self._network_spec(event)):
            return
        start = self._network_configured(event)
        if start is not None and account is not None:
            account(start)
        self._network_ready()

    async def _network_up(self, event: pev.NetworkUp) -> None:
        if self.predecessor is not None:
            # Bounded: a data plane that never finishes removing the old session must not
            # hold this one forever (its configuration then fails and says so).
            with trio.move_on_after(_PREDECESSOR_WAIT):
                await self.predecessor.wait()
            self.predecessor = None
        if not await self._configure(self._network_spec(event)):
            return
        start = self._network_configured(event)
        if start is not None and self.authenticator is not None:
            await self.authenticator.account(start)
        self._network_ready()

    def _network_spec(self, event: pev.NetworkUp) -> NetworkSpec:
        """The session's interface once IPCP is open (the session counts as up from now).

        Both ends configure their interface: our address, the peer's, a host route to it
        and the MTU the peer's MRU allows (the LNS: the subscriber's address; the LAC
        client: the address the LNS gave it, with the LNS's address as the peer)."""
        self.up_at = trio.current_time()
        if self.owner.lns:
            self.routes = self._routes_for(event.peer_address)
        return NetworkSpec(
            local_ip=event.local_address,
            peer_ip=event.peer_address,
            mtu=self.link.lcp.peer_mru,
            routes=self.routes,
        )

    def _needs_start(self) -> bool:
        """An accounting Start is due when the network comes up: IPCP reopens after every
        LCP restart; the session (same identity, same address) goes on, and so does its
        accounting: one Start per session."""
        return self.owner.lns and self.authenticator is not None and not self.accounting

    def _network_configured(self, event: pev.NetworkUp) -> aaa.AccountingRecord | None:
        """The interface is configured: show the address; the accounting Start to send,
        if one is due."""
        if not self.owner.lns:
            self._extra(address=str(event.local_address))
            return None
        self._extra(address=str(event.peer_address))
        if not self._needs_start():
            return None
        self.accounting = True
        return aaa.AccountingRecord(
            aaa.AccountingKind.START,
            self.username,
            self.context,
            address=event.peer_address,
            classes=self._classes(),
        )

    def _network_ready(self) -> None:
        """The session is up: its timers, the CoA index, the "session up" line."""
        scope = self.rec.scope
        if self.dead or (scope is not None and scope.cancel_called):
            # Its CDN came while a back end was answering: it was logged as failed, and an
            # up now would have no down.
            return
        if self.owner.lns:
            self._start_timers()
            if self.owner.coa_index is not None:
                self.owner.coa_index.add(self)
        if self.info is not None:
            self.info.established = self.up_at
            self.info.set_done()
        self.rec.tunnel.session_up(self.rec.sid, self.info)

    def _link_down(self, event: pev.LinkDown) -> None:
        rec = self.rec
        if event.reason is pev.DownReason.LOWER_LAYER_DOWN:
            return
        failure = FAILURE_NAME.get(event.reason)
        if failure and self.info is not None and "failure" not in self.info.extra:
            self._extra(failure=failure)
        self.end_cause = self.end_cause or TERMINATE_CAUSE.get(event.reason, "nas-request")
        owner = self.owner
        if event.reason is pev.DownReason.SETUP_TIMEOUT:
            stage = self.stage.value
            owner.setup_timeouts[stage] = owner.setup_timeouts.get(stage, 0) + 1
        elif event.reason is pev.DownReason.IDENTITY_CHANGED:
            owner.identity_changes += 1
        elif event.reason is pev.DownReason.TOO_MANY_RESTARTS:
            owner.restart_limits += 1
        elif event.reason is pev.DownReason.ECHO_TIMEOUT:
            owner.echo_timeouts += 1
        result, message = CDN_FOR_REASON[event.reason]
        log.info(
            "%s: PPP down (%s%s); clearing the session",
            self.link.name,
            event.reason.value,
            f": {escape(event.message)}" if event.message else "",
        )
        rec.tunnel.hangup(rec.sid, result, ErrorCode.NO_ERROR, message)

    def _parse_routes(self) -> tuple[FramedRoute, ...]:
        """The Framed-Routes of the reply; one that does not parse is logged and skipped (the
        session goes on without it), so is a bad Framed-IP-Netmask."""
        texts = self.reply.get(ATTR_FRAMED_ROUTES, ())
        routes: list[FramedRoute] = []
        for text in texts if isinstance(texts, tuple) else ():
            try:
                route = parse_framed_route(str(text))
            except ValueError as exc:
                log.warning(
                    '%s: Framed-Route "%s" ignored: %s; fix it on the RADIUS server',
                    self.link.name,
                    escape(str(text)),
                    escape(str(exc)),
                )
                continue
            if route not in routes:
                routes.append(route)
        netmask = self.reply.get(ATTR_FRAMED_NETMASK)
        if isinstance(netmask, ipaddress.IPv4Address):
            try:
                netmask_route(ipaddress.IPv4Address(0), netmask)
            except ValueError as exc:
                log.warning(
                    "%s: Framed-IP-Netmask ignored: %s; fix it on the RADIUS server",
                    self.link.name,
                    exc,
                )
                del self.reply[ATTR_FRAMED_NETMASK]
        return tuple(routes)

    def _routes_for(self, peer: ipaddress.IPv4Address | None) -> tuple[FramedRoute, ...]:
        """The Framed-Routes plus the network a Framed-IP-Netmask puts around ``peer``."""
        netmask = self.reply.get(ATTR_FRAMED_NETMASK)
        if peer is None or not isinstance(netmask, ipaddress.IPv4Address):
            return self.framed_routes
        route = netmask_route(peer, netmask)  # checked by _parse_routes
        if route is None or route in self.framed_routes:
            return self.framed_routes
        return (route, *self.framed_routes)

    def _classes(self) -> tuple[bytes, ...]:
        classes = self.reply.get(ATTR_CLASS, ())
        return (
            tuple(c for c in classes if isinstance(c, bytes)) if isinstance(classes, tuple) else ()
        )

    def _limit(self, key: str, default: float) -> float:
        """A per-session limit from AAA (``key`` in the reply attributes), else ``default``;
        0 means none."""
        value = self.reply.get(key)
        if isinstance(value, int | float) and value >= 0:
            return float(value)
        return default

    async def _counters(self) -> Counters:
        """The session's counters from the kernel; zeros when the data plane keeps none (or
        cannot say)."""
        dataplane = self.owner.dataplane
        if not dataplane.kernel_counters:
            return _NO_COUNTERS
        try:
            c = await dataplane.session_counters(self.rec.tunnel.local_tunnel_id, self.rec.sid)
        except DataPlaneError as exc:
            log.debug("%s: no session counters: %s", self.link.name, exc)
            c = None
        return _NO_COUNTERS if c is None else c

    async def _record(self, kind: aaa.AccountingKind, cause: str = "") -> aaa.AccountingRecord:
        return self._record_of(kind, cause, await self._counters())

    def _record_of(self, kind: aaa.AccountingKind, cause: str, c: Counters) -> aaa.AccountingRecord:
        now = trio.current_time()
        if kind is aaa.AccountingKind.STOP and c is not _NO_COUNTERS:
            self.rec.final_counters = c  # for the "session down" line (sessions.py)
        return aaa.AccountingRecord(
            kind,
            self.username,
            self.context,
            address=self.address,
            session_time=now - (self.up_at if self.up_at is not None else now),
            input_octets=c.rx_bytes,
            output_octets=c.tx_bytes,
            input_packets=c.rx_packets,
            output_packets=c.tx_packets,
            terminate_cause=cause,
            classes=self._classes(),
        )

    def _interim(self) -> float:
        interim = self._limit(ATTR_INTERIM_INTERVAL, self.owner.interim_interval)
        if self.authenticator is None or not self.accounting or interim <= 0:
            return 0.0
        return max(interim, 1.0)  # never a busy loop, whatever the server says

    def set_limits(
        self,
        *,
        session_timeout: float | None = None,
        idle_timeout: float | None = None,
        interim_interval: float | None = None,
    ) -> None:
        """Change the session's limits while it runs (RFC 5176 CoA-Request): Session-Timeout
        counts from the session's start (as in an Access-Accept), a new Idle-Timeout from
        now; 0 removes a limit, None leaves it as it is."""
        if self.reply is _NO_REPLY:
            self.reply = {}
        for key, value in (
            (ATTR_SESSION_TIMEOUT, session_timeout),
            (ATTR_IDLE_TIMEOUT, idle_timeout),
            (ATTR_INTERIM_INTERVAL, interim_interval),
        ):
            if value is not None:
                self.reply[key] = value
        if idle_timeout is not None:
            self._idle_reset = True
        if self.limits_changed is not None:
            self.limits_changed.set()
        if self.up_at is not None:
            self._start_timers()

    def _start_timers(self) -> None:
        """Start `_session_timers` once the network is up, when a limit or Interim-Updates
        apply: a session without any has no task waiting for them (most of them)."""
        if self._timers or self.dead:
            return
        if (
            self._interim()
            or self._limit(ATTR_SESSION_TIMEOUT, self._session_timeout)
            or self._limit(ATTR_IDLE_TIMEOUT, self._idle_timeout)
        ):
            self._timers = True
            self._spawn(self._session_timers)

    async def _session_timers(self) -> None:
        """LNS, once the network is up: Interim-Updates, Session-Timeout and Idle-Timeout
        (AAA's values, else the configured defaults; `set_limits` changes them). Sleeps
        until the nearest deadline or a change of limits."""
        start = self.up_at if self.up_at is not None else trio.current_time()
        interim = self._interim()
        next_interim = start + interim if interim else math.inf
        # The kernel's counters only where an Idle-Timeout applies: a session without one
        # asks nothing of netlink when it comes up (a CoA that sets one reads them then).
        idle = self._limit(ATTR_IDLE_TIMEOUT, self._idle_timeout)
        activity = await self._activity() if idle else 0
        active_at = start
        while True:
            if self._idle_reset:
                self._idle_reset = False
                active_at = trio.current_time()
                activity = await self._activity()
            if self._interim() != interim:
                interim = self._interim()
                next_interim = trio.current_time() + interim if interim else math.inf
            # No await from here to the wait: a change cannot slip in between.
            self.limits_changed = trio.Event()
            session_limit = self._limit(ATTR_SESSION_TIMEOUT, self._session_timeout)
            idle_limit = self._limit(ATTR_IDLE_TIMEOUT, self._idle_timeout)
            session_end = start + session_limit if session_limit else math.inf
            idle_end = active_at + idle_limit if idle_limit else math.inf
            with trio.move_on_at(min(next_interim, session_end, idle_end)):
                await self.limits_changed.wait()
                continue
            now = trio.current_time()
            if now >= session_end:
                self._expire("session-timeout", session_limit)
                return
            if now >= idle_end:
                seen = await self._activity()
                if seen == activity:
                    self._expire("idle-timeout", idle_limit)
                    return
                activity, active_at = seen, now
            if now >= next_interim and self.authenticator is not None:
                next_interim = now + interim
                try:
                    await self.authenticator.account(await self._record(aaa.AccountingKind.INTERIM))
                except Exception as exc:
                    log.error("%s: accounting interim failed: %s", self.link.name, exc)

    @property
    def _session_timeout(self) -> float:
        """The configured Session-Timeout: the policy's, else ``[ppp]``'s (read at every
        wake-up: a reload changes it for sessions of the default policy)."""
        policy = self.policy
        return policy.session_timeout if policy is not None else self.owner.session_timeout

    @property
    def _idle_timeout(self) -> float:
        policy = self.policy
        return policy.idle_timeout if policy is not None else self.owner.idle_timeout

    async def _activity(self) -> int:
        """A number that grows with traffic from the subscriber."""
        return (await self._counters()).rx_packets + self.link.frames_in

    def _expire(self, cause: str, limit: float) -> None:
        counts = self.owner.timeouts
        counts[cause] = counts.get(cause, 0) + 1
        self.end_cause = self.end_cause or cause
        log.info("%s: %s (%gs); clearing the session", self.link.name, cause, limit)
        self.link.close(trio.current_time(), pev.DownReason.ADMIN, cause)
        self._poke()

    # -- what the CoA server sees (kl2tp.aaa.radius.coa.CoaSession) ---------------------------

    @property
    def framed_address(self) -> ipaddress.IPv4Address | None:
        """The subscriber's address."""
        return self.address

    @property
    def calling_station_id(self) -> str:
        """The ICRQ's Calling Number."""
        return self.rec.call.calling_number or ""

    def disconnect(self) -> None:
        """RADIUS Disconnect-Request: terminate PPP, then the CDN (administrative); the
        accounting Stop says Admin-Reset."""
        self.end_cause = self.end_cause or "admin-reset"
        log.info("%s: RADIUS Disconnect-Request; clearing the session", self.link.name)
        self.link.close(trio.current_time(), pev.DownReason.ADMIN, "RADIUS Disconnect-Request")
        self._poke()

    def set_timeouts(self, session_timeout: float | None, idle_timeout: float | None) -> None:
        """RADIUS CoA-Request: new limits (None: keep; 0: none) for the session's timers."""
        self.set_limits(session_timeout=session_timeout, idle_timeout=idle_timeout)

    async def cleanup(self) -> None:
        """Undo everything the session got, whatever ended it."""
        if self.owner.coa_index is not None:
            self.owner.coa_index.remove(self)
        self.link.lower_down(trio.current_time())
        if self.accounting and self.authenticator is not None:
            try:
                record = await self._record(aaa.AccountingKind.STOP, self._stop_cause())
                await self.authenticator.account(record)
            except Exception as exc:
                log.error("%s: accounting stop failed: %s", self.link.name, exc)
        self.owner.addresses.release(self)

    def _cleanup_at_once(self) -> bool:
        """`cleanup` when nothing must be waited for (no accounting Stop, or one the back
        end takes at once without the kernel's counters); False: nothing done."""
        account = None
        if self.accounting and self.authenticator is not None:
            account = at_once(self.authenticator, "account")
            if account is None or self.owner.dataplane.kernel_counters:
                return False
        if self.owner.coa_index is not None:
            self.owner.coa_index.remove(self)
        self.link.lower_down(trio.current_time())
        if account is not None:
            try:
                account(self._record_of(aaa.AccountingKind.STOP, self._stop_cause(), _NO_COUNTERS))
            except Exception as exc:
                log.error("%s: accounting stop failed: %s", self.link.name, exc)
        self.owner.addresses.release(self)
        return True

    def _stop_cause(self) -> str:
        return "admin-reset" if self.replaced else (self.end_cause or "nas-request")

    # The session is its inline channel's receiver (``channel_opened``): a bound method
    # ``state.frame_in`` kept per session would cost 64 bytes each.
    __call__ = frame_in


def _proxy_values(info: Any) -> tuple[ProxyLcp | None, ProxyAuth | None]:
    """Proxy LCP and proxy authentication from the ICCN, when the LAC sent them."""
    lcp = None
    if info.last_sent_lcp_confreq is not None and info.last_rx_lcp_confreq is not None:
        lcp = ProxyLcp(
            last_sent=info.last_sent_lcp_confreq,
            last_received=info.last_rx_lcp_confreq,
            initial_received=info.initial_rx_lcp_confreq,
        )
    auth = None
    if info.proxy_authen_type is not None and info.proxy_authen_name is not None:
        auth = ProxyAuth(
            type=info.proxy_authen_type,
            name=info.proxy_authen_name,
            challenge=info.proxy_authen_challenge or b"",
            ident=info.proxy_authen_id,
            response=info.proxy_authen_response or b"",
        )
    return lcp, auth


def address_book(cfg: Config) -> AddressBook[_SessionState]:
    """The LNS's addresses: ``[ppp] pool`` as the default pool ``""`` and every ``[[pool]]``
    by name (RADIUS Framed-Pool picks one), never ``[ppp] local_address``."""
    pools = {"": make_pool(cfg, "")}
    for named in cfg.pool:
        pools[named.name] = make_pool(cfg, named.name)
    return AddressBook(pools, reserved=[cfg.ppp.local_address])


def make_pool(cfg: Config, name: str) -> AddressPool:
    """Pool ``name`` of ``cfg`` (``""``: ``[ppp] pool``; else a ``[[pool]]``), without the
    LNS's own address."""
    if name == "":
        return AddressPool.from_config(cfg.ppp)
    (named,) = (p for p in cfg.pool if p.name == name)
    return AddressPool(named.range, exclude=[cfg.ppp.local_address])


def make_handler(
    role: str,
    cfg: Config,
    dataplane: DataPlane,
    authenticator: aaa.Authenticator | None,
    *,
    subscribers: bool,
    authenticators: Mapping[str, aaa.Authenticator] | None = None,
) -> DataPlaneSessions:
    """The session handler of a daemon.

    The LNS terminates PPP on every session, with the values of its tunnel's ``[[peer]]``
    policy (``authenticators``: every back end a policy names). The LAC runs a subscriber on
    each call when ``subscribers`` (``--simulate``, and ``[lac] mode = "client"``, where the
    one subscriber is this host); otherwise it only carries sessions.
    """
    seq = cfg.dataplane.data_sequencing
    if role == "lns":
        link = lns_link_config(cfg)
        return PppSessions(
            dataplane,
            lns=True,
            link_config=lambda _n: link,
            authenticator=authenticator,
            addresses=address_book(cfg),
            duplicate_session=cfg.aaa.duplicate_session,
            data_sequencing=seq,
            session_timeout=cfg.ppp.session_timeout,
            idle_timeout=cfg.ppp.idle_timeout,
            interim_interval=cfg.radius.interim_interval,
            policies=session_policies(cfg),
            authenticators=authenticators,
        )
    if not subscribers:
        return DataPlaneSessions(dataplane, lns=False, data_sequencing=seq)

    def subscriber(n: int) -> LinkConfig:
        return subscriber_link_config(cfg, *cfg.subscriber.credentials(max(n, 1)))

    client = cfg.lac.mode == "client"
    # Every subscriber lets the LNS speak first, as an LNS expects (RFC 2661 leaves LCP to
    # the LNS once the call is connected; l2tpns drops what precedes its ICCN). Over the
    # kernel data plane the LNS's session is programmed before its first frame, ours
    # before our ICCN, so no frame reaches either side's userspace (the client waits one
    # restart interval). A load generator's burst queues the LNS's kernel programming
    # (hundreds of sessions in a row), so its subscribers wait as long as LCP itself would
    # retry. Simulated calls whose frames travel in userspace (the null data plane) wait a
    # short while (LNS_FIRST_WAIT): a peer that does not speak first costs that much per
    # call, and the tunnel core holds their frames behind the ICCN anyway. The LNS's first
    # frame ends every wait.
    if client:
        silent = cfg.ppp.restart_timer
    elif not dataplane.carries_frames:
        silent = cfg.ppp.restart_timer * cfg.ppp.max_configure
    else:
        silent = min(LNS_FIRST_WAIT, cfg.ppp.restart_timer)
    return PppSessions(
        dataplane,
        lns=False,
        link_config=subscriber,
        data_sequencing=seq,
        # A client runs its own PPP end to end: there is no LCP to hand over as proxy.
        proxy=AuthMethod(cfg.subscriber.auth) if cfg.subscriber.proxy and not client else None,
        hostname=cfg.l2tp.hostname,
        silent_start=silent,
    )
