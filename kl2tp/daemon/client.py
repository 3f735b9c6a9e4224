"""kl2tp-lac in client mode: this host is the subscriber (RFC 2661's "LAC Client").

Like xl2tpd + pppd dialling out, or go-l2tp's kl2tpd: one tunnel, one call, PPP run here as
the subscriber (credentials from ``[subscriber]`` with n = 1), and, with the kernel data plane,
our own pppN brought up with the address IPCP gave us, the LNS's address as its peer and a
host route to it (``PppSessions`` calls ``session_up`` on both ends).

:func:`keep_call` is the whole policy: dial the first LNS of ``[[lac.lns]]`` that answers,
place the call, wait for it to come up (IPCP open and the interface configured), and when the
call or its tunnel drops, dial again with exponential backoff. It runs as the daemon's dialer
(:func:`kl2tp.daemon.service.run_daemon`), which cancels it on SIGTERM before clearing the
call (CDN) and the tunnel (StopCCN), and exits 0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs
import trio

from kl2tp.daemon.endpoint import Endpoint, TunnelRunner, TunnelSetupError
from kl2tp.daemon.handle import Address, SessionInfo, TunnelHandle
from kl2tp.l2tp.constants import BearerCapability, CdnResult, FramingCapability
from kl2tp.l2tp.events import CallParams
from kl2tp.l2tp.session import CommandError
from kl2tp.l2tp.tunnel import TunnelConfig
from kl2tp.lac.tunnels import NoTunnel, TunnelPicker

log = logging.getLogger("kl2tp.daemon")

SUBSCRIBER = 1
"""The call number of the one subscriber (``{n}`` in the ``[subscriber]`` templates)."""


@attrs.frozen
class Backoff:
    """Redial delays: ``initial``, doubled after every failure up to ``cap``."""

    initial: float = 1.0
    """Seconds before the first redial."""
    cap: float = 60.0
    """Longest wait between attempts."""

    def next(self, delay: float) -> float:
        """The delay after one that just failed."""
        return min(delay * 2, self.cap)


@attrs.define
class ClientState:
    """What the client is doing (for logs and tests)."""

    attempts: int = 0
    """Calls placed so far."""
    up: int = 0
    """Calls that came up."""
    current: SessionInfo | None = None
    """The call being set up or held."""


async def keep_call(
    endpoint: Endpoint,
    peers: Sequence[tuple[Address, TunnelConfig]],
    call: CallParams,
    *,
    backoff: Backoff = Backoff(),
    setup_timeout: float = 60.0,
    state: ClientState | None = None,
    picker: TunnelPicker | None = None,
    username: str = "",
) -> None:
    """Keep one call up to one of ``peers`` until cancelled.

    With a ``picker`` (``[[lac.route]]`` or ``[lac] lookup = "radius"``) the LNS is the one
    tunnel selection gives the subscriber (``username`` and the call's called number), not
    the first of ``peers`` that answers.

    A call counts as up when its session handler says so (IPCP open, interface configured).
    When the call drops while its tunnel lives, the next call goes over the same tunnel;
    when the tunnel drops, the next attempt dials again. Failures back off exponentially;
    a call that came up resets the delay.
    """
    if not peers and picker is None:
        raise ValueError("client mode needs at least one [[lac.lns]]")
    state = state if state is not None else ClientState()
    delay = backoff.initial
    while True:
        if picker is not None:
            runner = await _pick(picker, username, call)
        else:
            runner = await _dial_first(endpoint, peers, setup_timeout)
        if runner is None:
            log.warning("no LNS answered; dialling again in %.0f s", delay)
            await trio.sleep(delay)
            delay = backoff.next(delay)
            continue
        while not runner.closed.is_set():
            came_up = await _one_call(
                runner, call, setup_timeout, state, defer_connect=endpoint.defers_connect
            )
            if came_up:
                delay = backoff.initial
            if runner.closed.is_set():
                break
            log.info("calling again in %.0f s", delay)
            with trio.move_on_after(delay):
                await runner.closed.wait()
            if not came_up:
                delay = backoff.next(delay)
        if runner.close_event is not None:
            log.warning(
                "tunnel %d to %s:%d closed (result %d%s)",
                runner.local_tunnel_id,
                *runner.peer_addr,
                runner.close_event.result,
                f": {runner.close_event.message}" if runner.close_event.message else "",
            )
        await trio.sleep(delay)


async def _pick(picker: TunnelPicker, username: str, call: CallParams) -> TunnelRunner | None:
    """The tunnel tunnel selection gives the subscriber, None when there is none."""
    try:
        return await picker.tunnel_for(username, call)
    except NoTunnel as exc:
        log.warning("no tunnel for %s: %s", username or "the subscriber", exc)
        return None


async def _dial_first(
    endpoint: Endpoint, peers: Sequence[tuple[Address, TunnelConfig]], setup_timeout: float
) -> TunnelRunner | None:
    """A tunnel to the first LNS, in configured order, that establishes one."""
    for peer, tunnel_config in peers:
        try:
            return await endpoint.dial(peer, tunnel_config, setup_timeout=setup_timeout)
        except TunnelSetupError as exc:
            log.warning("%s", exc)
    return None


async def _one_call(
    runner: TunnelHandle,
    call: CallParams,
    setup_timeout: float,
    state: ClientState,
    *,
    defer_connect: bool,
) -> bool:
    """Place the call, hold it while it lives; True if it came up.

    ``defer_connect``: the ICCN waits until our session is programmed (the kernel data
    plane, ``Endpoint.defers_connect``).
    """
    state.attempts += 1
    try:
        info = runner.place_call(call, defer_connect=defer_connect)
    except CommandError as exc:  # the tunnel started closing while we waited
        log.info("cannot call: %s", exc)
        await runner.closed.wait()
        return False
    info.extra["n"] = SUBSCRIBER
    state.current = info
    try:
        with trio.move_on_after(setup_timeout):
            await info.done.wait()
        if info.established is None:
            if info.closed is None:
                runner.hangup(info.local_sid, CdnResult.ADMINISTRATIVE, message="setup timed out")
                reason = "setup timed out"
            else:
                reason = str(info.extra.get("failure") or _cdn_text(info))
            log.warning(
                "Tnl/Cl %d/%d: call failed: %s", runner.local_tunnel_id, info.local_sid, reason
            )
            return False
        state.up += 1
        log.info(
            "Tnl/Cl %d/%d: up, address %s%s",
            runner.local_tunnel_id,
            info.local_sid,
            info.extra.get("address", "-"),
            f" on {info.extra['interface']}" if "interface" in info.extra else "",
        )
        # The endpoint sets ``done`` again when the call closes: wait on a fresh event.
        if info.closed is None:
            info.done = trio.Event()
            await info.done.wait()
        log.warning(
            "Tnl/Cl %d/%d: call down (%s)", runner.local_tunnel_id, info.local_sid, _cdn_text(info)
        )
        return True
    finally:
        state.current = None


def _cdn_text(info: SessionInfo) -> str:
    closed = info.closed
    if closed is None:
        return "still up"
    text = f"{'by peer' if closed.by_peer else 'locally'}, result {closed.result}"
    if closed.message:
        text += f": {closed.message}"
    return text


def subscriber_call(n: int, calling_number: str = "", called_number: str = "") -> CallParams:
    """The ICRQ values of subscriber ``n``'s call: a digital, synchronous call whose Calling
    and Called Number AVPs come from the ``[subscriber]`` templates (``{n}`` is ``n``);
    an empty template sends no AVP."""
    return CallParams(
        serial=n,
        bearer_type=int(BearerCapability.DIGITAL),
        framing_type=int(FramingCapability.SYNC),
        calling_number=calling_number.format(n=n) or None,
        called_number=called_number.format(n=n) or None,
    )


def client_call(calling_number: str, called_number: str) -> CallParams:
    """The ICRQ values of the client's call (``{n}`` in the templates is 1)."""
    return subscriber_call(SUBSCRIBER, calling_number, called_number)
