"""Small value types shared by the configuration and the AAA code.

A leaf module: it imports nothing from kl2tp, so `kl2tp.config` (which parses these values)
and `kl2tp.aaa` (which uses them) both depend on it and not on each other.
"""

from __future__ import annotations

from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError

import attrs

__all__ = ["PoolRange", "Secret", "parse_pool"]


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
