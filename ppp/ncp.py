"""What IPCP and IPv6CP share: the link callbacks and the codes NCPs do not extend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ppp.fsm import Event, Fsm, FsmConfig

if TYPE_CHECKING:
    from ppp.link import Link

__all__ = ["Ncp"]


class Ncp:
    """Base of the NCP option handlers: an automaton bound to one protocol number."""

    __slots__ = ("fsm", "link", "protocol")

    def __init__(self, link: Link, protocol: int, config: FsmConfig) -> None:
        self.link = link
        self.protocol = protocol
        self.fsm = Fsm(self, config, self._send)

    def _send(self, code: int, identifier: int, data: bytes) -> None:
        self.link.control_send(self.protocol, self.fsm.prior, code, identifier, data)

    def reset(self) -> None:
        """Subclasses: back to the configured wishes."""
        raise NotImplementedError

    def add_ci(self) -> bytes:
        """Subclasses: our Configure-Request options."""
        raise NotImplementedError

    def nak_ci(self, data: bytes, treat_as_reject: bool) -> bool:
        """Subclasses: apply a Configure-Nak."""
        raise NotImplementedError

    def reject_ci(self, data: bytes) -> bool:
        """Subclasses: apply a Configure-Reject."""
        raise NotImplementedError

    def request_ci(self, data: bytes, reject_if_disagree: bool) -> tuple[int, bytes]:
        """Subclasses: judge the peer's Configure-Request."""
        raise NotImplementedError

    def ack_ci(self, data: bytes) -> bool:
        """The request was acked as sent."""
        return True

    def up(self, now: float) -> None:
        """This-Layer-Up."""
        self.link.ncp_up(self, now)

    def down(self, now: float) -> None:
        """This-Layer-Down."""
        self.link.ncp_down(self, now)

    def starting(self, now: float) -> None:
        """This-Layer-Started: LCP is our lower layer; the link opens us once it is up."""

    def finished(self, now: float) -> None:
        """This-Layer-Finished."""
        self.link.ncp_finished(self, now)

    def extended_code(self, code: int, identifier: int, data: bytes, now: float) -> Event | None:
        """NCPs have only codes 1-7: anything else is unknown (Code-Reject)."""
        return None

    def code_rejected(self, code: int) -> None:
        """Nothing optional to give up."""

    def echo_reply(self, data: bytes) -> bytes:
        """Never called: NCPs have no Echo."""
        return data
