"""IPCP option handling (RFC 1332, DNS from RFC 1877).

The LNS (``assign_peer_address``) Naks the peer's IP-Address with the address the driver gave
(``Link.address_result`` or ``Link.auth_result(address=...)``) and never chooses one itself;
it Rejects VJ compression and the NBNS options, and offers its DNS servers. The subscriber asks
for 0.0.0.0 (and DNS 0.0.0.0) and takes the Naks.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from ppp.config import IpcpConfig
from ppp.frame import Code, PppDecodeError, Proto, decode_options, encode_option
from ppp.fsm import FsmConfig, build_reply
from ppp.ncp import Ncp
from ppp.services import ControlServices

__all__ = ["ANY_ADDRESS", "Ipcp", "IpcpOption", "describe_ipcp_option", "requested_address"]

ANY_ADDRESS = 0xFFFFFFFF
"""An assigned address of 255.255.255.255: the peer may use the (non-zero) one it asks for
(RADIUS Framed-IP-Address semantics, as in the reference trace)."""


class IpcpOption:
    """IPCP Configuration Option types."""

    ADDRESSES = 1
    COMPRESSION = 2
    ADDRESS = 3
    DNS1 = 129
    NBNS1 = 130
    DNS2 = 131
    NBNS2 = 132


_DNS_TYPES = (IpcpOption.DNS1, IpcpOption.DNS2)
_NAMES = {
    IpcpOption.ADDRESS: "Address",
    IpcpOption.DNS1: "PrimaryDNS",
    IpcpOption.NBNS1: "PrimaryWINS",
    IpcpOption.DNS2: "SecondaryDNS",
    IpcpOption.NBNS2: "SecondaryWINS",
}


def describe_ipcp_option(option_type: int, value: bytes) -> str:
    """One option as the IOS trace shows it, e.g. ``Address 10.51.6.82``."""
    if option_type in _NAMES and len(value) == 4:
        return f"{_NAMES[option_type]} {IPv4Address(value)}"
    if option_type == IpcpOption.COMPRESSION and len(value) >= 2:
        if value[:2] == b"\x00\x2d" and len(value) == 4:
            return f"CompressType VJ {value[2]} slots"  # IOS prints Max-Slot-Id
        return f"CompressType 0x{value[:2].hex().upper()}"
    return f"Option {option_type}"


def _u32(value: bytes) -> int:
    return int.from_bytes(value, "big")


def requested_address(data: bytes) -> IPv4Address | None:
    """The IP-Address a Configure-Request asks for; None when absent, 0.0.0.0 or malformed."""
    try:
        options = decode_options(data)
    except PppDecodeError:
        return None
    for option_type, value in options:
        if option_type == IpcpOption.ADDRESS and len(value) == 4 and _u32(value):
            return IPv4Address(value)
    return None


_NO_DNS: tuple[None, None] = (None, None)
_ASK_DNS: tuple[int, int] = (0, 0)


class Ipcp(Ncp):
    """IPCP option handler for one link.

    Args:
        services: the link's services.
        config: IPCP's settings.
        fsm: the automaton's timer and counters (LCP's).
    """

    __slots__ = (
        "assigned",
        "assigned_address",
        "config",
        "dns_offer",
        "nak_missing_sent",
        "peer_address",
        "peer_dns",
        "want_address",
        "want_dns",
    )

    def __init__(self, services: ControlServices, config: IpcpConfig, fsm: FsmConfig) -> None:
        super().__init__(services, Proto.IPCP, fsm)
        self.config = config
        self.assigned: int | None = None
        self.assigned_address: IPv4Address | None = None
        """`assigned` as the driver gave it: NetworkUp hands the same object back."""
        self.dns_offer: tuple[int, ...] = tuple(int(a) for a in config.dns[:2])
        self.want_address: int | None = None
        self.want_dns: tuple[int | None, int | None] = _NO_DNS
        """DNS1 and DNS2 we ask for (None: not asked). Tuples, shared while they hold
        nothing of a link's own: a held link keeps no list of its own (~130 B)."""
        self.peer_address = 0
        self.peer_dns: tuple[int, ...] = ()
        self.nak_missing_sent = False

    def reset(self) -> None:
        """Ask again for what the configuration says."""
        local = self.config.local_address
        self.want_address = int(local) if local is not None else 0
        self.want_dns = _ASK_DNS if self.config.request_dns else _NO_DNS
        self.nak_missing_sent = False

    def add_ci(self) -> bytes:
        """IP-Address, then the DNS options we still ask for."""
        out = []
        if self.want_address is not None:
            out.append(encode_option(IpcpOption.ADDRESS, self.want_address.to_bytes(4, "big")))
        for option_type, value in zip(
            (IpcpOption.DNS1, IpcpOption.DNS2), self.want_dns, strict=True
        ):
            if value is not None:
                out.append(encode_option(option_type, value.to_bytes(4, "big")))
        return b"".join(out)

    def nak_ci(self, data: bytes, treat_as_reject: bool) -> bool:
        """The subscriber takes the LNS's address and DNS; the LNS keeps its own address."""
        try:
            options = decode_options(data)
        except PppDecodeError:
            return False
        for option_type, value in options:
            if len(value) != 4:
                continue
            if option_type == IpcpOption.ADDRESS and self.want_address is not None:
                if treat_as_reject:
                    self.want_address = None
                elif (self.config.local_address is None or self.config.accept_local) and _u32(
                    value
                ):
                    self.want_address = _u32(value)
            elif option_type in (IpcpOption.DNS1, IpcpOption.DNS2):
                index = 0 if option_type == IpcpOption.DNS1 else 1
                if self.want_dns[index] is not None:
                    self._want_dns(index, None if treat_as_reject else _u32(value))
        return True

    def reject_ci(self, data: bytes) -> bool:
        """Stop asking for rejected options."""
        try:
            options = decode_options(data)
        except PppDecodeError:
            return False
        for option_type, _ in options:
            if option_type == IpcpOption.ADDRESS:
                self.want_address = None
            elif option_type == IpcpOption.DNS1:
                self._want_dns(0, None)
            elif option_type == IpcpOption.DNS2:
                self._want_dns(1, None)
        return True

    def _want_dns(self, index: int, value: int | None) -> None:
        first, second = self.want_dns
        self.want_dns = (value, second) if index == 0 else (first, value)

    def request_ci(self, data: bytes, reject_if_disagree: bool) -> tuple[int, bytes]:
        """Judge the peer's IP-Address and DNS requests; reject everything else."""
        self.peer_address = 0
        self.peer_dns = ()
        try:
            options = decode_options(data)
        except PppDecodeError:
            return Code.CONFREJ, data
        naks: list[bytes] = []
        rejects: list[bytes] = []
        seen_address = False
        for option_type, value in options:
            if option_type == IpcpOption.ADDRESS and len(value) == 4:
                seen_address = True
                requested = _u32(value)
                wanted = self._address_for_peer(requested)
                if wanted is None:
                    rejects.append(encode_option(option_type, value))
                elif wanted == requested:
                    self.peer_address = requested
                elif reject_if_disagree:
                    rejects.append(encode_option(option_type, value))
                else:
                    naks.append(encode_option(option_type, wanted.to_bytes(4, "big")))
            elif option_type in (IpcpOption.DNS1, IpcpOption.DNS2) and len(value) == 4:
                index = 0 if option_type == IpcpOption.DNS1 else 1
                if index >= len(self.dns_offer) or (
                    reject_if_disagree and (_u32(value) != self.dns_offer[index])
                ):
                    rejects.append(encode_option(option_type, value))
                elif _u32(value) != self.dns_offer[index]:
                    naks.append(
                        encode_option(option_type, self.dns_offer[index].to_bytes(4, "big"))
                    )
                else:
                    self.peer_dns += (_u32(value),)
            else:
                rejects.append(encode_option(option_type, value))
        if (
            not seen_address
            and self.config.assign_peer_address
            and self.assigned not in (None, ANY_ADDRESS)
            and not self.nak_missing_sent
            and not reject_if_disagree
        ):
            # RFC 1332 3.3: Nak with an option the peer did not ask for, to suggest it
            assert self.assigned is not None
            self.nak_missing_sent = True
            naks.append(encode_option(IpcpOption.ADDRESS, self.assigned.to_bytes(4, "big")))
        return build_reply(data, naks, rejects, reject_if_disagree)

    def assign(self, address: IPv4Address) -> None:
        """The peer's address, from the driver (AAA or pool)."""
        self.assigned = int(address)
        self.assigned_address = address

    def needs_address(self) -> bool:
        """The peer's address must come from the driver and has not yet."""
        return self.config.assign_peer_address and self.assigned is None

    def _address_for_peer(self, requested: int) -> int | None:
        """The address the peer should have, given what it asked for; None: reject."""
        if not self.config.assign_peer_address or self.assigned == ANY_ADDRESS:
            return requested if requested else None
        return self.assigned

    def network_up_values(self) -> tuple[IPv4Address, IPv4Address, tuple[IPv4Address, ...]]:
        """(our address, the peer's, DNS) once Opened."""
        if self.config.request_dns:
            dns = tuple(IPv4Address(v) for v in self.want_dns if v)
        else:
            dns = tuple(IPv4Address(v) for v in self.peer_dns)
        local = self.config.local_address
        if local is None or int(local) != self.want_address:
            local = IPv4Address(self.want_address or 0)
        # The configured address itself when it is ours (one object for every session), and
        # the peer's as the driver gave it: no copies kept per session.
        peer = self.assigned_address
        if peer is None or int(peer) != self.peer_address:
            peer = IPv4Address(self.peer_address)
        return local, peer, dns
