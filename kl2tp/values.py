"""Small value types and parsers shared by the configuration, the AAA code and the log.

A leaf module: it imports nothing from kl2tp, so `kl2tp.config` (which parses these values)
and `kl2tp.aaa` (which uses them) both depend on it and not on each other.
"""

from __future__ import annotations

from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError

import attrs

__all__ = [
    "FramedRoute",
    "PoolRange",
    "Secret",
    "netmask_route",
    "parse_framed_route",
    "parse_pool",
    "split_host_port",
]


@attrs.frozen(repr=False)
class Secret:
    """A shared secret or password; never shown by ``repr``, ``str`` or a log line."""

    value: bytes = attrs.field(repr=False)
    """The secret itself (UTF-8 bytes of what the operator wrote)."""

    def reveal(self) -> bytes:
        """The secret bytes, for the one place that needs them (MD5 input, hiding)."""
        return self.value

    def __repr__(self) -> str:
        return "***"

    def __str__(self) -> str:
        return "***"


@attrs.frozen
class PoolRange:
    """An inclusive range of IPv4 addresses, as written in the configuration."""

    first: IPv4Address
    """Lowest address of the range."""
    last: IPv4Address
    """Highest address of the range (included)."""
    text: str
    """The range as the operator wrote it, for messages."""

    @property
    def count(self) -> int:
        """Number of addresses in the range, exclusions not taken into account."""
        return int(self.last) - int(self.first) + 1

    def __contains__(self, address: object) -> bool:
        return isinstance(address, IPv4Address) and int(self.first) <= int(address) <= int(
            self.last
        )

    def __str__(self) -> str:
        return self.text


def parse_pool(text: str) -> PoolRange:
    """Parse ``"10.0.0.0/24"`` or ``"10.0.0.2-10.0.0.254"`` into a `PoolRange`.

    A CIDR prefix leaves out the network and broadcast addresses, except for /31 and /32
    (RFC 3021); ``FIRST-LAST`` includes both ends.

    Raises:
        ValueError: with a message that says what is wrong (no file or key: the caller adds them).
    """
    text = text.strip()
    if "-" in text:
        first_text, _, last_text = text.partition("-")
        try:
            first = IPv4Address(first_text.strip())
            last = IPv4Address(last_text.strip())
        except AddressValueError as exc:
            raise ValueError(f"bad address in range: {exc}") from None
        if int(last) < int(first):
            raise ValueError(f"range ends ({last}) before it starts ({first})")
        return PoolRange(first, last, text)
    if "/" in text:
        try:
            network = IPv4Network(text, strict=True)
        except (AddressValueError, NetmaskValueError) as exc:
            raise ValueError(f"bad CIDR prefix: {exc}") from None
        except ValueError as exc:  # host bits set
            raise ValueError(f"bad CIDR prefix: {exc}") from None
        if network.prefixlen >= 31:
            return PoolRange(network.network_address, network.broadcast_address, text)
        return PoolRange(network.network_address + 1, network.broadcast_address - 1, text)
    raise ValueError('expected a CIDR prefix such as "10.0.0.0/24" or a range "FIRST-LAST"')


_ALL_ONES = 0xFFFFFFFF
_MAX_METRIC = _ALL_ONES


@attrs.frozen
class FramedRoute:
    """A route to a network behind a subscriber, out of its session's interface.

    From a RADIUS Framed-Route (RFC 2865 5.22) or Framed-IP-Netmask (5.9). No gateway: on a
    point-to-point link every next hop is the subscriber, so the route names the interface.
    """

    network: IPv4Network
    """Destination prefix."""
    metric: int = 0
    """Route priority (the first metric the attribute gives; 0 when it gives none)."""

    def __str__(self) -> str:
        return f"{self.network} metric {self.metric}"


def _decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _classful_prefixlen(address: IPv4Address) -> int:
    """RFC 2865 5.22: without a length, class A is /8, B /16, C /24."""
    first = address.packed[0]
    if first < 128:
        return 8
    if first < 192:
        return 16
    if first < 224:
        return 24
    raise ValueError(f"{address} is not a class A, B or C prefix; give its length")


def _netmask_length(address: IPv4Address) -> int | None:
    """The prefix length of a contiguous netmask (255.255.255.0 -> 24), None for others."""
    value = int(address)
    inverted = value ^ _ALL_ONES
    if value == 0 or inverted & (inverted + 1):
        return None
    return 32 - inverted.bit_length()


def parse_framed_route(text: str) -> FramedRoute:
    """Parse a Framed-Route text into a `FramedRoute`.

    The RFC 2865 5.22 form ``PREFIX[/LEN] [GATEWAY [METRIC ...]]`` (a prefix without a length
    is classful) and the common ``PREFIX NETMASK [GATEWAY [METRIC ...]]`` form. The gateway,
    0.0.0.0 meaning the subscriber, is checked to be an address and otherwise not used (see
    `FramedRoute`); of several metrics the first is kept.

    Raises:
        ValueError: with a message that says what is wrong.
    """
    words = text.split()
    if not words:
        raise ValueError("empty route")
    prefix_text, slash, length_text = words[0].partition("/")
    try:
        prefix = IPv4Address(prefix_text)
    except AddressValueError:
        raise ValueError(f"bad prefix {prefix_text!r}") from None
    rest = words[1:]
    if slash:
        if not _decimal(length_text) or int(length_text) > 32:
            raise ValueError(f"bad prefix length {length_text!r}")
        prefixlen = int(length_text)
    else:
        mask_length = None
        if rest:
            try:
                mask_length = _netmask_length(IPv4Address(rest[0]))
            except AddressValueError:
                mask_length = None
        if mask_length is not None:
            prefixlen = mask_length
            rest = rest[1:]
        else:
            prefixlen = _classful_prefixlen(prefix)
    try:
        network = IPv4Network((prefix, prefixlen))
    except ValueError:
        raise ValueError(f"{prefix}/{prefixlen} has host bits set") from None
    if rest:
        try:
            IPv4Address(rest[0])
        except AddressValueError:
            raise ValueError(f"bad gateway {rest[0]!r}") from None
        rest = rest[1:]
    metric = 0
    if rest:
        if not _decimal(rest[0]) or int(rest[0]) > _MAX_METRIC:
            raise ValueError(f"bad metric {rest[0]!r}")
        metric = int(rest[0])
    return FramedRoute(network, metric)


def netmask_route(address: IPv4Address, netmask: IPv4Address) -> FramedRoute | None:
    """The route a Framed-IP-Netmask asks for: the subscriber's network (RFC 2865 5.9, the
    subscriber is a router to it). None for 255.255.255.255 (the host route is there already).

    Raises:
        ValueError: the netmask is not a contiguous one.
    """
    length = _netmask_length(netmask)
    if length is None:
        raise ValueError(f"bad netmask {netmask}")
    if length == 32:
        return None
    return FramedRoute(IPv4Network((address, length), strict=False))


def split_host_port(text: str) -> tuple[str, str | None] | None:
    """``ADDR:PORT``, ``[IPV6]:PORT``, ``[IPV6]`` or a bare address (IPv4, IPv6, a name)
    -> (host, port text, None when there is no port); nothing is checked but the brackets.

    Returns:
        None when a ``[`` is not closed or its ``]`` is followed by something but ``:PORT``.
    """
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        return host, rest[1:] if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None
