"""The LAC's half of proxy LCP and proxy authentication (RFC 2661 4.4.5), sans-IO.

A LAC that proxies answers the subscriber's LCP itself and starts the authentication (sends
the CHAP Challenge, or takes the PAP request) before it knows which LNS serves the call; it
then hands the LNS what it saw in the ICCN (AVPs 26-33) and from there on only forwards
frames. :func:`pre_negotiate` plays that first part between a subscriber :class:`Link` and a
LAC-side :class:`Link` back to back in memory, records the Configure-Requests and the
authentication exchange, and returns the subscriber link, which then continues against the
LNS exactly where a real subscriber would be: LCP Opened, its response sent, waiting for the
LNS's Success.
"""

from __future__ import annotations

import random

import attrs

from ppp.config import AuthMethod, IpcpConfig, LinkConfig
from ppp.credentials import ChapCredentials, PapCredentials
from ppp.events import AuthRequest, LinkDown
from ppp.frame import Code, PppDecodeError, Proto, decode_frame, decode_packet
from ppp.link import Link
from ppp.proxy import ProxyAuth, ProxyAuthType, ProxyLcp

__all__ = [
    "LacNegotiation",
    "ProxyNegotiation",
    "ProxyNegotiationError",
    "pre_negotiate",
    "proxy_method",
]

MAX_ROUNDS = 32
"""Exchanges before giving up (a sane LCP converges in a handful)."""


class ProxyNegotiationError(Exception):
    """The LAC could not get as far as authentication with the subscriber."""


@attrs.frozen
class ProxyNegotiation:
    """What the LAC learnt, and the subscriber that goes on to the LNS."""

    subscriber: Link
    """The subscriber's link: LCP Opened, authentication response sent."""
    lcp: ProxyLcp
    """AVPs 26-28: the Configure-Requests each side last sent (the initial one from the peer)."""
    auth: ProxyAuth
    """AVPs 29-33: the authentication exchange."""


class _Recorder:
    """Keeps the options of the Configure-Requests crossing one direction."""

    __slots__ = ("first", "last")

    def __init__(self) -> None:
        self.first: bytes | None = None
        self.last: bytes | None = None

    def see(self, frame: bytes) -> None:
        try:
            protocol, information = decode_frame(frame)
            if protocol != Proto.LCP:
                return
            packet = decode_packet(information)
        except PppDecodeError:
            return
        if packet.code == Code.CONFREQ:
            if self.first is None:
                self.first = packet.data
            self.last = packet.data


def pre_negotiate(
    subscriber_config: LinkConfig,
    method: AuthMethod,
    now: float,
    *,
    rng: random.Random,
    lac_hostname: str = "lac",
    name: str = "",
) -> ProxyNegotiation:
    """Run LCP and the start of authentication between a subscriber and the LAC.

    Args:
        subscriber_config: the subscriber's link configuration (peer role).
        method: CHAP or PAP (the proxy types RFC 2661 defines for them).
        now: the clock (nothing here waits; every exchange is immediate).
        rng: randomness for the LAC's magic number and challenge.
        lac_hostname: the name in the LAC's CHAP Challenge.
        name: trace prefix of the subscriber link.

    Raises:
        ProxyNegotiationError: the two could not agree, or ``method`` cannot be proxied.
    """
    proxy_type = proxy_method(method)
    lac = Link(
        LinkConfig(
            lcp=subscriber_config.lcp,
            auth=(method,),
            hostname=lac_hostname,
            ipcp=IpcpConfig(enabled=False),
            send_address_control=subscriber_config.send_address_control,
        ),
        rng=rng,
    )
    subscriber = Link(subscriber_config, rng=rng, name=name)
    from_lac, from_subscriber = _Recorder(), _Recorder()
    subscriber.open(now)
    lac.open(now)
    for _ in range(MAX_ROUNDS):
        for frame in lac.frames_to_send():
            from_lac.see(frame)
            subscriber.receive_frame(frame, now)
        for frame in subscriber.frames_to_send():
            from_subscriber.see(frame)
            lac.receive_frame(frame, now)
        while (event := lac.next_event()) is not None:
            if isinstance(event, LinkDown):
                raise ProxyNegotiationError(f"LCP with the subscriber failed: {event.reason.value}")
            if isinstance(event, AuthRequest):
                return _result(subscriber, from_lac, from_subscriber, event, proxy_type)
    raise ProxyNegotiationError("the subscriber never authenticated")


def proxy_method(method: AuthMethod) -> ProxyAuthType:
    """The Proxy Authen Type of ``method``.

    Raises:
        ProxyNegotiationError: RFC 2661 has no type for it (MS-CHAPv2).
    """
    if method is AuthMethod.CHAP:
        return ProxyAuthType.CHAP
    if method is AuthMethod.PAP:
        return ProxyAuthType.PAP
    raise ProxyNegotiationError(f"{method.value} cannot be proxied (RFC 2661 has no type)")


class LacNegotiation:
    """The LAC's LCP and the start of authentication with a real subscriber, sans-IO.

    A LAC whose subscribers dial in (PPPoE) runs this against each of them: a LAC-side
    :class:`Link` (``config``: the authenticator role with ``method``, no NCP) answers the
    subscriber's LCP, sends the Challenge (or takes the PAP request) and, once the
    subscriber's response is in, :attr:`result` holds what goes into the ICCN and the user
    name that picks the tunnel. From then on the driver relays the subscriber's frames to the
    LNS, which answers the response itself (RFC 2661 4.4.5). Driver loop as for any link:
    ``receive_frame`` / ``frames_to_send`` / ``get_timer`` / ``handle_timer``.
    """

    __slots__ = ("_from_lac", "_from_subscriber", "down", "link", "proxy_type", "result")

    def __init__(
        self, config: LinkConfig, now: float, *, rng: random.Random, name: str = ""
    ) -> None:
        """Raises ProxyNegotiationError when ``config.auth[0]`` cannot be proxied."""
        if not config.auth:
            raise ProxyNegotiationError("the LAC must authenticate the subscriber")
        self.proxy_type = proxy_method(config.auth[0])
        self.link = Link(config, rng=rng, name=name)
        self._from_lac, self._from_subscriber = _Recorder(), _Recorder()
        self.result: tuple[str, ProxyLcp, ProxyAuth] | None = None
        """User name, proxy LCP and proxy authentication, once the subscriber answered."""
        self.down: LinkDown | None = None
        """Why the link with the subscriber ended before that."""
        self.link.open(now)
        self._events()

    def receive_frame(self, frame: bytes, now: float) -> None:
        """A PPP frame from the subscriber."""
        self._from_subscriber.see(frame)
        self.link.receive_frame(frame, now)
        self._events()

    def frames_to_send(self) -> list[bytes]:
        """PPP frames for the subscriber."""
        frames = self.link.frames_to_send()
        for frame in frames:
            self._from_lac.see(frame)
        return frames

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run (the link's restart and phase timers)."""
        return self.link.get_timer()

    def handle_timer(self, now: float) -> None:
        """Run the link's timers."""
        self.link.handle_timer(now)
        self._events()

    def _events(self) -> None:
        while (event := self.link.next_event()) is not None:
            if isinstance(event, LinkDown) and self.result is None:
                self.down = event
            elif isinstance(event, AuthRequest) and self.result is None and self.down is None:
                lcp, auth = _proxy_values(
                    self._from_lac, self._from_subscriber, event, self.proxy_type
                )
                self.result = (event.username, lcp, auth)


def _result(
    subscriber: Link,
    from_lac: _Recorder,
    from_subscriber: _Recorder,
    request: AuthRequest,
    proxy_type: ProxyAuthType,
) -> ProxyNegotiation:
    lcp, auth = _proxy_values(from_lac, from_subscriber, request, proxy_type)
    return ProxyNegotiation(subscriber, lcp, auth)


def _proxy_values(
    from_lac: _Recorder,
    from_subscriber: _Recorder,
    request: AuthRequest,
    proxy_type: ProxyAuthType,
) -> tuple[ProxyLcp, ProxyAuth]:
    if from_lac.last is None or from_subscriber.last is None:
        raise ProxyNegotiationError("no Configure-Request seen")
    lcp = ProxyLcp(
        last_sent=from_lac.last,
        last_received=from_subscriber.last,
        initial_received=from_subscriber.first,
    )
    creds = request.credentials
    if isinstance(creds, ChapCredentials):
        auth = ProxyAuth(
            type=proxy_type,
            name=request.username,
            challenge=creds.challenge,
            ident=creds.ident,
            response=creds.response,
        )
    elif isinstance(creds, PapCredentials):
        auth = ProxyAuth(type=proxy_type, name=request.username, response=creds.password)
    else:
        raise ProxyNegotiationError("unexpected credentials")
    return lcp, auth
