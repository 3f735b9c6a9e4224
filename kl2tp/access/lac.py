"""kl2tp-lac's access side: PPPoE subscribers, their LCP and authentication, their calls.

Per subscriber, the call flow of a real LAC (../shared/reference/cisco-l2tp-call-flow.txt):

1. PPPoE Discovery (:class:`kl2tp.access.pppoe.PppoeServer`) gives the subscriber a session.
2. The LAC runs LCP and starts authentication with it (:class:`ppp.lac.LacNegotiation`): the
   Challenge goes out (or the PAP request comes in) and the subscriber's response names the
   user.
3. Tunnel selection (:class:`kl2tp.lac.tunnels.TunnelPicker`: ``[[lac.route]]``, a RADIUS
   lookup, or ``[[lac.lns]]``) gives a tunnel to an LNS; the LAC places the call: ICRQ, and
   an ICCN carrying proxy LCP and proxy authentication (AVPs 26-33).
4. From the ICCN on the LAC only relays frames: the LNS answers the response (CHAP Success
   or PAP Ack), runs IPCP with the subscriber and keeps its LCP alive. With the kernel data
   plane the frames cross the session's own PPPoL2TP socket (``SessionSpec.ppp_unit``
   False), with the null one they travel as L2TP data messages from userspace.
5. A PADT from the subscriber clears the call (CDN, result 3: the subscriber asked for it);
   a CDN from the LNS, a tunnel going down, a failed negotiation or a setup that outlasts
   ``[pppoe] setup_timeout`` ends the PPPoE session with a PADT.

Until the relay starts, the LAC's own link keeps answering the subscriber (LCP
Echo-Requests) but runs no timers, so a slow tunnel setup never makes it send an LCP
Terminate-Request under the LNS's feet.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable

import attrs
import trio

from kl2tp.access.port import Port
from kl2tp.access.pppoe import (
    AcConfig,
    PppoeServer,
    SessionClosed,
    SessionFrame,
    SessionOpened,
    mac_text,
)
from kl2tp.config import Config
from kl2tp.daemon.handle import SessionInfo, TunnelHandle
from kl2tp.daemon.sessions import DataPlaneSessions, SessionRecord
from kl2tp.dataplane.base import DataPlane, PppChannel
from kl2tp.l2tp.constants import BearerCapability, CdnResult, FramingCapability
from kl2tp.l2tp.events import CallParams, ConnectInfo
from kl2tp.l2tp.session import CommandError
from kl2tp.lac.tunnels import NoTunnel
from kl2tp.log import escape
from ppp.config import AuthMethod, IpcpConfig, LcpConfig, LinkConfig
from ppp.fsm import FsmConfig
from ppp.lac import LacNegotiation
from ppp.proxy import ProxyAuth, ProxyLcp

__all__ = [
    "AccessCall",
    "AccessSettings",
    "PppoeAccess",
    "RelaySessions",
    "access_from_config",
    "access_link_config",
    "proxy_connect_info",
]

log = logging.getLogger("kl2tp.daemon")

PPPOE_MRU = 1492
"""An Ethernet payload of 1500 less PPPoE's 6-byte header and PPP's 2-byte protocol field
(RFC 2516 section 7)."""

TunnelFor = Callable[[str, CallParams], Awaitable[TunnelHandle]]
"""Tunnel selection: the tunnel for a user and call (``TunnelPicker.tunnel_for``); raises
:class:`kl2tp.lac.tunnels.NoTunnel`."""


def access_link_config(
    method: AuthMethod,
    hostname: str,
    *,
    mru: int = PPPOE_MRU,
    fsm: FsmConfig | None = None,
    timeout: float = 30.0,
) -> LinkConfig:
    """The LAC's side of the subscriber's LCP: ``method`` demanded, MRU at most ``mru``
    both ways, no keepalive (the LNS keeps the link alive once it has it), no NCP, frames
    without ff 03 (PPPoE carries none)."""
    return LinkConfig(
        lcp=LcpConfig(
            mru=mru, max_peer_mru=mru, echo_interval=0, fsm=fsm if fsm is not None else FsmConfig()
        ),
        auth=(method,),
        hostname=hostname,
        ipcp=IpcpConfig(enabled=False),
        establish_timeout=timeout,
        auth_timeout=timeout,
        send_address_control=False,
    )


def proxy_connect_info(lcp: ProxyLcp, auth: ProxyAuth) -> ConnectInfo:
    """The ICCN values that hand the LAC's LCP and authentication to the LNS (RFC 2661
    4.4.5, AVPs 26-33)."""
    return ConnectInfo(
        initial_rx_lcp_confreq=lcp.initial_received,
        last_sent_lcp_confreq=lcp.last_sent,
        last_rx_lcp_confreq=lcp.last_received,
        proxy_authen_type=int(auth.type),
        proxy_authen_name=auth.name,
        proxy_authen_challenge=auth.challenge or None,
        proxy_authen_id=auth.ident,
        proxy_authen_response=auth.response,
    )


@attrs.frozen
class AccessSettings:
    """How the access side treats subscribers."""

    link: LinkConfig
    """The LAC's side of LCP and authentication (:func:`access_link_config`)."""
    setup_timeout: float = 30.0
    """Seconds from the PADS until the L2TP call is established; then PADT."""
    inbox: int = 64
    """Frames from one subscriber queued while its call is set up; more are dropped."""


class RelaySessions(DataPlaneSessions):
    """The LAC's session handler when subscribers dial in: each L2TP session relays the
    frames of one PPPoE session (no PPP here, no pppN)."""

    ppp_unit = False

    def __init__(self, dataplane: DataPlane) -> None:
        super().__init__(dataplane, lns=False)
        self.access: PppoeAccess | None = None
        """The access side, for its figures in ``show summary``."""

    async def run_session(self, rec: SessionRecord) -> None:
        """Relay the session's frames to and from its subscriber until either side goes."""
        key = (rec.tunnel.local_tunnel_id, rec.sid)
        call = self.access.relays.get(key) if self.access is not None else None
        if call is None or rec.channel is None:
            rec.tunnel.hangup(rec.sid, CdnResult.GENERAL_ERROR, message="no subscriber")
            return
        await call.relay(rec.channel)

    def summary(self) -> dict[str, object]:
        out = super().summary()
        if self.access is not None:
            out["pppoe"] = self.access.summary()
        return out


class PppoeAccess:
    """The access side on one interface: Discovery, then one :class:`AccessCall` task per
    subscriber."""

    def __init__(
        self,
        server: PppoeServer,
        port: Port,
        tunnel_for: TunnelFor,
        settings: AccessSettings,
        *,
        defer_connect: bool,
        rng: random.Random | None = None,
    ) -> None:
        self.server = server
        self.port = port
        self.tunnel_for = tunnel_for
        self.settings = settings
        self.defer_connect = defer_connect
        """Place calls with ``defer_connect`` (the kernel data plane): the ICCN waits until
        the session is programmed."""
        self.rng = rng or random.Random()
        self.calls: dict[int, AccessCall] = {}
        """Subscribers with a PPPoE session, by session id."""
        self.relays: dict[tuple[int, int], AccessCall] = {}
        """Subscribers with an L2TP call, by (local tunnel id, local session id)."""
        self.counters: Counter[str] = Counter()
        """``calls_up``, ``calls_failed``, ``drop_inbox_full``."""
        self.failures: Counter[str] = Counter()
        """Calls that never came up, by stage."""
        self._nursery: trio.Nursery | None = None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve subscribers until cancelled (each then gets a PADT)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.port.run, self.deliver)
            task_status.started()

    def deliver(self, frame: bytes) -> None:
        """One frame from the interface."""
        self.server.receive_frame(frame, trio.current_time())
        self._flush()

    def send_ppp(self, sid: int, ppp: bytes) -> None:
        """A PPP frame to subscriber ``sid`` (dropped if its session is gone)."""
        frame = self.server.encapsulate(sid, ppp)
        if frame is not None:
            self.port.send(frame)

    def summary(self) -> dict[str, object]:
        """Figures for ``kl2tpctl show summary``."""
        return {
            "sessions": len(self.server.sessions),
            **dict(self.counters),
            **{f"failed_{k}": v for k, v in self.failures.items()},
            **dict(self.server.counters),
        }

    def _flush(self) -> None:
        for frame in self.server.frames_to_send():
            self.port.send(frame)
        while (event := self.server.next_event()) is not None:
            if isinstance(event, SessionFrame):
                call = self.calls.get(event.session_id)
                if call is not None:
                    try:
                        call.inbox.send_nowait(event.ppp)
                    except trio.WouldBlock:
                        self.counters["drop_inbox_full"] += 1
                    except (trio.ClosedResourceError, trio.BrokenResourceError):
                        pass
            elif isinstance(event, SessionOpened):
                self._open(event)
            elif isinstance(event, SessionClosed) and event.by_peer:
                call = self.calls.get(event.session_id)
                if call is not None:
                    call.padt_received(event.message)

    def _open(self, event: SessionOpened) -> None:
        if self._nursery is None:  # pragma: no cover - frames arrive only once serving
            self.server.terminate(event.session_id, "not serving")
            return
        send, receive = trio.open_memory_channel[bytes](self.settings.inbox)
        call = AccessCall(self, event.session_id, event.peer, event.service_name, send, receive)
        self.calls[event.session_id] = call
        log.debug(
            "PPPoE %d: session for %s (service %r)",
            event.session_id,
            mac_text(event.peer),
            escape(event.service_name),
        )
        self._nursery.start_soon(call.run)

    def ended(self, call: AccessCall, reason: str) -> None:
        """``call``'s task is over: its PPPoE session ends too (PADT unless the subscriber
        sent one)."""
        self.calls.pop(call.sid, None)
        if call.tunnel is not None and call.info is not None:
            self.relays.pop((call.tunnel.local_tunnel_id, call.info.local_sid), None)
        call.inbox.close()
        if not call.gone.is_set():
            self.server.terminate(call.sid, reason)
            self._flush()


@attrs.define(eq=False)
class AccessCall:
    """One subscriber from its PADS to its PADT."""

    access: PppoeAccess
    sid: int
    """PPPoE session id."""
    peer: bytes
    """The subscriber's MAC."""
    service: str
    """The Service-Name it asked for."""
    inbox: trio.MemorySendChannel[bytes]
    """Its PPP frames, from :meth:`PppoeAccess.deliver`."""
    frames: trio.MemoryReceiveChannel[bytes]
    """The other end of ``inbox``."""
    gone: trio.Event = attrs.field(factory=trio.Event)
    """Set by the subscriber's PADT."""
    stage: str = "lcp"
    """``lcp`` (LCP and authentication with the LAC), ``tunnel`` (selecting and placing the
    call), ``relay`` (frames cross to the LNS)."""
    username: str = ""
    """Who the subscriber said it is."""
    info: SessionInfo | None = None
    """The L2TP call once placed."""
    tunnel: TunnelHandle | None = None
    """Its tunnel."""
    _keeper: trio.CancelScope | None = None

    def padt_received(self, message: str) -> None:
        """The subscriber hung up: no more frames; the task clears the call."""
        if message:
            log.debug("PPPoE %d: PADT says %s", self.sid, escape(message))
        self.gone.set()
        self.inbox.close()

    async def run(self) -> None:
        """The subscriber's whole life; its PPPoE session ends with it."""
        reason = "cancelled"
        try:
            reason = await self._life()
        finally:
            self.access.ended(self, reason)
            if self.tunnel is not None and self.info is not None and self.info.closed is None:
                self.tunnel.hangup(
                    self.info.local_sid,
                    CdnResult.ADMINISTRATIVE if self.gone.is_set() else CdnResult.LOSS_OF_CARRIER,
                    message=reason,
                )

    async def _life(self) -> str:
        access = self.access
        settings = access.settings
        now = trio.current_time()
        nego = LacNegotiation(settings.link, now, rng=access.rng, name=f"PPPoE {self.sid}")
        failure: str | None = None
        with trio.move_on_at(now + settings.setup_timeout) as scope:
            failure = await self._set_up(nego)
        if scope.cancelled_caught:
            failure = f"setup timed out at {self.stage}"
        if failure is not None:
            return self._failed(failure)
        assert self.info is not None
        if self.info.established is None:
            return self._failed(self._cdn_text(self.info))
        reason = await self._held(self.info)
        log.info("PPPoE %d (%s): ended: %s", self.sid, mac_text(self.peer), reason)
        return reason

    async def _set_up(self, nego: LacNegotiation) -> str | None:
        """LCP, authentication, tunnel, call; None once the call is established or the LNS
        cleared it (``info`` says which), else why not."""
        result = await self._negotiate(nego)
        if result is None:
            if self.gone.is_set():
                return "subscriber left (PADT)"
            down = nego.down
            return f"LCP/auth with the subscriber: {down.reason.value if down else 'failed'}"
        username, lcp, auth = result
        self.username = username
        self.stage = "tunnel"
        call = CallParams(
            serial=self.sid,
            bearer_type=int(BearerCapability.DIGITAL),
            framing_type=int(FramingCapability.SYNC),
            calling_number=mac_text(self.peer),
            called_number=self.service or None,
        )
        keeper = self._keeper = trio.CancelScope()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keep, nego, keeper)
            try:
                return await self._place(call, proxy_connect_info(lcp, auth))
            finally:
                keeper.cancel()

    async def _place(self, call: CallParams, connect: ConnectInfo) -> str | None:
        access = self.access
        try:
            tunnel = await access.tunnel_for(self.username, call)
        except NoTunnel as exc:
            return f"no tunnel for {escape(self.username)}: {exc}"
        try:
            info = tunnel.place_call(call, connect, defer_connect=access.defer_connect)
        except CommandError:
            return "tunnel closing"
        self.tunnel, self.info = tunnel, info
        access.relays[(tunnel.local_tunnel_id, info.local_sid)] = self
        info.extra.update(
            username=self.username,
            pppoe_session=self.sid,
            mac=mac_text(self.peer),
        )
        log.info(
            "PPPoE %d: %s from %s, Tnl/Cl %d/%d",
            self.sid,
            escape(self.username),
            mac_text(self.peer),
            tunnel.local_tunnel_id,
            info.local_sid,
        )
        await _either(info.done, self.gone)
        if self.gone.is_set() and info.established is None:
            return "subscriber left (PADT)"
        return None

    async def _negotiate(self, nego: LacNegotiation) -> tuple[str, ProxyLcp, ProxyAuth] | None:
        """Run the LAC's link until the subscriber has answered the authentication."""
        self._send(nego)
        while nego.result is None and nego.down is None:
            deadline = nego.get_timer()
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                try:
                    frame = await self.frames.receive()
                except trio.EndOfChannel:
                    return None
                nego.receive_frame(frame, trio.current_time())
                self._send(nego)
                continue
            nego.handle_timer(trio.current_time())
            self._send(nego)
        return nego.result

    async def _keep(self, nego: LacNegotiation, scope: trio.CancelScope) -> None:
        """While the call is set up the LAC's link still answers the subscriber."""
        with scope:
            async for frame in self.frames:
                nego.receive_frame(frame, trio.current_time())
                self._send(nego)

    def _send(self, nego: LacNegotiation) -> None:
        for frame in nego.frames_to_send():
            self.access.send_ppp(self.sid, frame)

    async def relay(self, channel: PppChannel) -> None:
        """Frames both ways between the subscriber and the L2TP session (the handler's
        session task runs this); returns when the subscriber is gone."""
        if self._keeper is not None:
            self._keeper.cancel()
        self.stage = "relay"
        async with trio.open_nursery() as nursery:

            async def upstream() -> None:
                async for frame in self.frames:
                    await channel.send(frame)
                nursery.cancel_scope.cancel()

            nursery.start_soon(upstream)
            while True:
                self.access.send_ppp(self.sid, await channel.receive())

    async def _held(self, info: SessionInfo) -> str:
        """The call is up: hold it until the subscriber or the LNS ends it."""
        self.access.counters["calls_up"] += 1
        if info.closed is None:
            info.done = trio.Event()  # the endpoint sets it again when the call closes
            await _either(info.done, self.gone)
        if info.closed is None:
            return "subscriber left (PADT)"
        return self._cdn_text(info)

    def _failed(self, reason: str) -> str:
        self.access.counters["calls_failed"] += 1
        self.access.failures[self.stage] += 1
        log.warning("PPPoE %d (%s): call failed: %s", self.sid, mac_text(self.peer), reason)
        return reason

    @staticmethod
    def _cdn_text(info: SessionInfo) -> str:
        closed = info.closed
        if closed is None:
            return "call not established"
        who = "LNS" if closed.by_peer else "LAC"
        return f"call cleared by the {who} (CDN result {closed.result})"


def access_from_config(
    cfg: Config, port: Port, tunnel_for: TunnelFor, *, defer_connect: bool
) -> PppoeAccess:
    """The access side ``[pppoe]`` describes, on an opened ``port``."""
    pppoe = cfg.pppoe
    server = PppoeServer(
        AcConfig(
            ac_name=pppoe.ac_name or cfg.l2tp.hostname,
            service_names=pppoe.service_names,
            max_sessions=pppoe.max_sessions,
        ),
        port.mac,
        rng=random.Random(),
        secret=secrets.token_bytes(32),
    )
    settings = AccessSettings(
        link=access_link_config(
            AuthMethod(pppoe.auth),
            cfg.l2tp.hostname,
            fsm=FsmConfig(
                restart_timer=cfg.ppp.restart_timer,
                max_configure=cfg.ppp.max_configure,
            ),
            timeout=pppoe.setup_timeout,
        ),
        setup_timeout=pppoe.setup_timeout,
    )
    return PppoeAccess(
        server, port, tunnel_for, settings, defer_connect=defer_connect, rng=random.Random()
    )


async def _either(a: trio.Event, b: trio.Event) -> None:
    """Return once ``a`` or ``b`` is set."""
    async with trio.open_nursery() as nursery:

        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(wait, a)
        nursery.start_soon(wait, b)
