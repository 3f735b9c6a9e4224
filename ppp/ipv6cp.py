"""IPv6CP option handling (RFC 5072): 64-bit interface identifiers, nothing else."""

from __future__ import annotations

from ppp.config import Ipv6cpConfig
from ppp.frame import Code, PppDecodeError, Proto, decode_options, encode_option
from ppp.fsm import FsmConfig, build_reply
from ppp.ncp import Ncp
from ppp.services import ControlServices

__all__ = ["INTERFACE_ID", "Ipv6cp", "describe_ipv6cp_option"]

INTERFACE_ID = 1
"""The Interface-Identifier option type."""


def describe_ipv6cp_option(option_type: int, value: bytes) -> str:
    """e.g. ``InterfaceId 0123:4567:89AB:CDEF``."""
    if option_type == INTERFACE_ID and len(value) == 8:
        h = value.hex().upper()
        return "InterfaceId " + ":".join(h[i : i + 4] for i in range(0, 16, 4))
    return f"Option {option_type}"


class Ipv6cp(Ncp):
    """IPv6CP option handler: negotiate non-zero, distinct interface identifiers.

    Args:
        services: the link's services.
        config: IPv6CP's settings.
        fsm: the automaton's timer and counters (LCP's).
    """

    __slots__ = ("config", "peer_id", "want_id")

    def __init__(self, services: ControlServices, config: Ipv6cpConfig, fsm: FsmConfig) -> None:
        super().__init__(services, Proto.IPV6CP, fsm)
        self.config = config
        self.want_id: int | None = None
        self.peer_id = 0

    def _random_id(self, *avoid: int) -> int:
        while True:
            value = self.services.rng.getrandbits(64)
            if value and value not in avoid:
                return value

    def reset(self) -> None:
        """Our configured identifier, or a random one."""
        self.want_id = self.config.interface_id or self._random_id()

    def add_ci(self) -> bytes:
        """Interface-Identifier."""
        if self.want_id is None:
            return b""
        return encode_option(INTERFACE_ID, self.want_id.to_bytes(8, "big"))

    def nak_ci(self, data: bytes, treat_as_reject: bool) -> bool:
        """Take the suggested identifier unless it is zero or the peer's own (RFC 5072 4.1)."""
        try:
            options = decode_options(data)
        except PppDecodeError:
            return False
        for option_type, value in options:
            if option_type == INTERFACE_ID and len(value) == 8 and self.want_id is not None:
                if treat_as_reject:
                    self.want_id = None
                    continue
                suggested = int.from_bytes(value, "big")
                if suggested and suggested != self.peer_id:
                    self.want_id = suggested
                else:
                    self.want_id = self._random_id(self.peer_id, self.want_id)
        return True

    def reject_ci(self, data: bytes) -> bool:
        """The peer will not have our identifier: go without."""
        try:
            options = decode_options(data)
        except PppDecodeError:
            return False
        if any(t == INTERFACE_ID for t, _ in options):
            self.want_id = None
        return True

    def request_ci(self, data: bytes, reject_if_disagree: bool) -> tuple[int, bytes]:
        """Nak a zero identifier or one equal to ours with a fresh one; reject the rest."""
        self.peer_id = 0
        try:
            options = decode_options(data)
        except PppDecodeError:
            return Code.CONFREJ, data
        naks: list[bytes] = []
        rejects: list[bytes] = []
        for option_type, value in options:
            if option_type == INTERFACE_ID and len(value) == 8:
                requested = int.from_bytes(value, "big")
                if requested == 0 or requested == self.want_id:
                    if reject_if_disagree:
                        rejects.append(encode_option(option_type, value))
                    else:
                        fresh = self._random_id(requested, self.want_id or 0)
                        naks.append(encode_option(option_type, fresh.to_bytes(8, "big")))
                else:
                    self.peer_id = requested
            else:
                rejects.append(encode_option(option_type, value))
        return build_reply(data, naks, rejects, reject_if_disagree)
