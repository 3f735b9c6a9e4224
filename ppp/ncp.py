"""What IPCP and IPv6CP share: the layer signals and the codes NCPs do not extend."""

from __future__ import annotations

import abc

from ppp.fsm import Event, Fsm, FsmConfig
from ppp.services import ControlServices, LayerDown, LayerFinished, LayerUp

__all__ = ["Ncp"]


class Ncp(abc.ABC):
    """Base of the NCP option handlers: an automaton bound to one protocol number.

    Args:
        services: the link's services (sending, trace, randomness, layer signals).
        protocol: the NCP's protocol number.
        config: the automaton's timer and counters.
    """

    __slots__ = ("fsm", "protocol", "services")

    def __init__(self, services: ControlServices, protocol: int, config: FsmConfig) -> None:
        self.services = services
        self.protocol = protocol
        self.fsm = Fsm(self, config)

    def send(self, code: int, identifier: int, data: bytes) -> None:
        """Send a packet of this protocol."""
        self.services.control_send(self.protocol, self.fsm.prior, code, identifier, data)

    @abc.abstractmethod
    def reset(self) -> None:
        """Subclasses: back to the configured wishes."""

    @abc.abstractmethod
    def add_ci(self) -> bytes:
        """Subclasses: our Configure-Request options."""

    @abc.abstractmethod
    def nak_ci(self, data: bytes, treat_as_reject: bool) -> bool:
        """Subclasses: apply a Configure-Nak."""

    @abc.abstractmethod
    def reject_ci(self, data: bytes) -> bool:
        """Subclasses: apply a Configure-Reject."""

    @abc.abstractmethod
    def request_ci(self, data: bytes, reject_if_disagree: bool) -> tuple[int, bytes]:
        """Subclasses: judge the peer's Configure-Request."""

    def ack_ci(self, data: bytes) -> bool:
        """The request was acked as sent."""
        return True

    def up(self, now: float) -> None:
        """This-Layer-Up."""
        self.services.signal(LayerUp(self.protocol), now)

    def down(self, now: float) -> None:
        """This-Layer-Down."""
        self.services.signal(LayerDown(self.protocol), now)

    def starting(self, now: float) -> None:  # noqa: B027 (a hook NCPs leave empty)
        """This-Layer-Started: LCP is our lower layer; the link opens us once it is up."""

    def finished(self, now: float) -> None:
        """This-Layer-Finished."""
        self.services.signal(LayerFinished(self.protocol), now)

    def extended_code(self, code: int, identifier: int, data: bytes, now: float) -> Event | None:
        """NCPs have only codes 1-7: anything else is unknown (Code-Reject)."""
        return None

    def code_rejected(self, code: int) -> None:  # noqa: B027 (a hook NCPs leave empty)
        """Nothing optional to give up."""

    def echo_reply(self, data: bytes) -> bytes:
        """Never called: NCPs have no Echo."""
        return data
