"""What a protocol handler may use of its link, and the signals it reports back.

The handlers (:mod:`ppp.lcp`, :mod:`ppp.ipcp`, :mod:`ppp.ipv6cp`, :mod:`ppp.auth`) never import
:mod:`ppp.link`: each gets a services object (the :class:`ppp.link.Link`, structurally, as
:class:`ppp.fsm.Fsm` gets its :class:`ppp.fsm.OptionHandler`) and its own configuration, and
tells the link what happened with small values for the link to act on. Where the link calls a
handler (a received PAP or CHAP packet, a timer, the AAA verdict), the handler returns that
value. The RFC 1661 layer signals (This-Layer-Up/-Down/-Finished, and LCP's Protocol-Reject)
happen in the middle of an automaton transition instead, and what the link does about them
(trace lines, the phase change, the NCP automatons) must happen right there, before the rest of
the transition's actions, so that the trace and the frames keep their order: those go through
:meth:`ControlServices.signal` at once.
"""

from __future__ import annotations

import random
from typing import Protocol

import attrs

from ppp.config import AuthMethod, LinkConfig
from ppp.fsm import State

__all__ = [
    "AuthServices",
    "ControlServices",
    "LayerDown",
    "LayerFinished",
    "LayerUp",
    "LcpServices",
    "ProtocolRejected",
    "Services",
    "Signal",
]


class Services(Protocol):
    """What every handler may use."""

    @property
    def rng(self) -> random.Random:
        """Randomness for magic numbers, challenges and interface identifiers."""
        ...

    @property
    def tracing(self) -> bool:
        """Debug trace on (guard any costly formatting with it)."""
        ...

    def trace(self, category: str, text: str) -> None:
        """One trace line ``<link name> <category>: <text>``."""
        ...


class AuthServices(Services, Protocol):
    """What the PAP and CHAP handlers may use: they trace their packets themselves."""

    @property
    def config(self) -> LinkConfig:
        """Their configuration: our name and password, the CHAP hostname and re-challenge
        interval, LCP's restart timer and Max-Configure (which pace their retransmissions)."""
        ...

    def drop(self, reason: str) -> None:
        """Count a packet from the peer dropped as malformed (``reason`` names why)."""
        ...

    def auth_send(self, protocol: int, code: int, ident: int, data: bytes) -> None:
        """Queue a PAP or CHAP packet."""
        ...


class ControlServices(Services, Protocol):
    """What the LCP, IPCP and IPv6CP handlers may use."""

    def control_send(self, protocol: int, state: State, code: int, ident: int, data: bytes) -> None:
        """Queue a control packet; ``state`` is the one the trace line shows."""
        ...

    def signal(self, signal: Signal, now: float) -> None:
        """Report a layer signal; the link acts on it before this returns."""
        ...


class LcpServices(ControlServices, Protocol):
    """LCP also negotiates the Authentication-Protocol option: which methods are in play."""

    @property
    def demanded_auth(self) -> tuple[AuthMethod, ...]:
        """Methods we demand of the peer, preferred first (authenticator role)."""
        ...

    @property
    def willing_auth(self) -> tuple[AuthMethod, ...]:
        """Methods we agree to authenticate ourselves with (peer role): none without a name
        and a password."""
        ...

    @property
    def insisted_auth(self) -> tuple[AuthMethod, ...]:
        """Methods we authenticate ourselves with only when the peer insists on one (asks
        for it again after our Nak): none without a name and a password."""
        ...


@attrs.frozen(slots=True)
class LayerUp:
    """This-Layer-Up: the automaton of ``protocol`` reached Opened."""

    protocol: int
    """The control protocol (LCP, IPCP, IPv6CP)."""


@attrs.frozen(slots=True)
class LayerDown:
    """This-Layer-Down: the automaton of ``protocol`` left Opened."""

    protocol: int
    """The control protocol."""


@attrs.frozen(slots=True)
class LayerFinished:
    """This-Layer-Finished: the automaton of ``protocol`` gave up or was closed."""

    protocol: int
    """The control protocol."""


@attrs.frozen(slots=True)
class ProtocolRejected:
    """The peer sent an LCP Protocol-Reject for one of our protocols (RFC 1661 5.7)."""

    protocol: int
    """The protocol the peer rejected (not LCP: that one is RXJ- inside LCP's automaton)."""


Signal = LayerUp | LayerDown | LayerFinished | ProtocolRejected
"""Any layer signal."""
