"""TOML configuration -> typed, frozen configuration values.

One table drives everything: each section is a frozen attrs class, each of its fields is a key,
and the field's metadata says how to parse the TOML value and for which daemon the key is valid.
The parser, the unknown-key check, the per-role defaults and the list of documented keys
(`known_keys`, checked against docs/kl2tp.toml.5.md by the tests) all read that table.

Errors raise `ConfigError`, whose ``str`` is one line naming the file, the key and the problem::

    lns.toml: [l2tp] hello_interval: must be a number >= 0, got "x"
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from ipaddress import (
    AddressValueError,
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import attrs

from kl2tp.values import PoolRange, Secret, parse_pool, split_host_port

if TYPE_CHECKING:
    from kl2tp.l2tp.endpoint import Limits
    from kl2tp.l2tp.tunnel import TunnelConfig
    from kl2tp.policy import PolicyTable

__all__ = [
    "AaaConfig",
    "CoaClientConfig",
    "Config",
    "ConfigError",
    "ControlConfig",
    "DataplaneConfig",
    "Endpoint",
    "L2tpConfig",
    "LacConfig",
    "LacRoute",
    "LnsPeer",
    "LogConfig",
    "NamedPool",
    "PeerConfig",
    "PppConfig",
    "RadiusConfig",
    "RadiusServerConfig",
    "Role",
    "SubscriberConfig",
    "known_keys",
    "load_config",
    "load_default",
    "parse_config",
]

Role = Literal["lns", "lac"]
AuthMethod = Literal["pap", "chap", "mschapv2"]
ROLES: tuple[Role, ...] = ("lns", "lac")
DEFAULTS_DIR = Path(__file__).resolve().parent / "defaults"
LOG_CATEGORIES = ("l2tp", "ppp", "aaa", "kernel", "daemon")
_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


class ConfigError(Exception):
    """A configuration problem; the daemons print ``str(err)`` and exit 2.

    Attributes:
        file: the file (or source name) the problem is in.
        key: where in the file, e.g. ``"[l2tp] hello_interval"`` or ``"line 3"``; may be empty.
        problem: what is wrong, e.g. ``'must be a number >= 0, got "x"'``.
    """

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(file, key, problem)
        self.file = file
        self.key = key
        self.problem = problem

    def __str__(self) -> str:
        if self.key:
            return f"{self.file}: {self.key}: {self.problem}"
        return f"{self.file}: {self.problem}"


class _Invalid(Exception):
    """Raised by value parsers; the table walker adds file and key."""

    def __init__(self, problem: str, subkey: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.subkey = subkey


# -- value types ------------------------------------------------------------------------------


@attrs.frozen
class Endpoint:
    """A UDP address and port, as the socket module takes them."""

    host: str
    """IP address literal in canonical form (``"192.0.2.1"``, ``"2001:db8::1"``); host names
    are not accepted (resolving is I/O and makes start-up depend on DNS)."""
    port: int
    """UDP port; 0 means any (for a local address)."""

    @property
    def ip(self) -> IPv4Address | IPv6Address:
        """The host as an address object."""
        return ip_address(self.host)

    @property
    def sockaddr(self) -> tuple[str, int]:
        """``(host, port)`` for ``bind`` / ``sendto``."""
        return (self.host, self.port)

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


IpNetwork = IPv4Network | IPv6Network

# -- value parsers ----------------------------------------------------------------------------

T = TypeVar("T")
Parser = Callable[[object], Any]


def _show(value: object) -> str:
    """A TOML-ish rendering of a bad value for an error message."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value)
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, list):
        text = "[" + ", ".join(_show(v) for v in value) + "]"
    elif isinstance(value, dict):
        return "a table"
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, got {_show(value)}")
    return value


def _integer(lo: int, hi: int | None = None) -> Parser:
    want = f"an integer {lo}..{hi}" if hi is not None else f"an integer >= {lo}"

    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"must be {want}, got {_show(value)}")
        if value < lo or (hi is not None and value > hi):
            raise _Invalid(f"must be {want}, got {_show(value)}")
        return value

    return parse


def _number(lo: float, *, above: bool = False) -> Parser:
    want = f"a number > {lo:g}" if above else f"a number >= {lo:g}"

    def parse(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(f"must be {want}, got {_show(value)}")
        number = float(value)
        if not math.isfinite(number) or number < lo or (above and number == lo):
            raise _Invalid(f"must be {want}, got {_show(value)}")
        return number

    return parse


def _string(*, max_len: int = 255, nonempty: bool = True) -> Parser:
    def parse(value: object) -> str:
        if not isinstance(value, str):
            raise _Invalid(f"must be a string, got {_show(value)}")
        if nonempty and not value:
            raise _Invalid("must not be empty")
        if len(value.encode()) > max_len:
            raise _Invalid(f"must be at most {max_len} bytes long")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise _Invalid(f"must not contain control characters, got {_show(value)}")
        return value

    return parse


def _choice(*options: str) -> Parser:
    want = " or ".join(json.dumps(o) for o in options)

    def parse(value: object) -> str:
        if not isinstance(value, str) or value not in options:
            raise _Invalid(f"must be {want}, got {_show(value)}")
        return value

    return parse


def _list_of(item: Parser, *, max_items: int | None = None, unique: bool = False) -> Parser:
    def parse(value: object) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _Invalid(f"must be a list, got {_show(value)}")
        if max_items is not None and len(value) > max_items:
            raise _Invalid(f"must have at most {max_items} entries, got {len(value)}")
        items = []
        for index, element in enumerate(value):
            try:
                items.append(item(element))
            except _Invalid as exc:
                raise _Invalid(f"entry {index + 1}: {exc.problem}") from None
        if unique and len(set(items)) != len(items):
            dup = next(i for i in items if items.count(i) > 1)
            raise _Invalid(f"lists {_show(str(dup))} more than once")
        return tuple(items)

    return parse


def _kind(value: object) -> str:
    """What sort of TOML value ``value`` is, for messages that must not show it."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def _secret(value: object) -> Secret:
    if not isinstance(value, str):
        # Not the value: a secret written as a number or a list is still the secret.
        raise _Invalid(f"must be a string, got {_kind(value)}")
    if not value:
        raise _Invalid("must not be empty (remove the key to turn tunnel authentication off)")
    return Secret(value.encode())


def _ipv4(value: object) -> IPv4Address:
    if not isinstance(value, str):
        raise _Invalid(f"must be an IPv4 address string, got {_show(value)}")
    try:
        return IPv4Address(value)
    except AddressValueError:
        raise _Invalid(f"must be an IPv4 address, got {_show(value)}") from None


def _endpoint(default_port: int, *, local: bool) -> Parser:
    """``ADDR:PORT``, ``[IPV6]:PORT``, or just the address (port defaults)."""

    def parse(value: object) -> Endpoint:
        if not isinstance(value, str):
            raise _Invalid(f'must be a string "ADDR:PORT", got {_show(value)}')
        parts = split_host_port(value.strip())
        if parts is None:
            raise _Invalid(f'must be "ADDR:PORT" or "[IPV6]:PORT", got {_show(value)}')
        host_text, port_text = parts
        try:
            host = ip_address(host_text)
        except ValueError:
            raise _Invalid(
                f"must be an IP address with an optional port, got {_show(value)}"
            ) from None
        port = default_port
        if port_text is not None:
            if not port_text.isdigit() or int(port_text) > 65535:
                raise _Invalid(f"port must be 0..65535, got {_show(value)}")
            port = int(port_text)
        if not local and (port == 0 or host.is_unspecified):
            raise _Invalid(f"must name a reachable address and a non-zero port, got {_show(value)}")
        return Endpoint(str(host), port)

    return parse


def _network(value: object) -> IpNetwork:
    if not isinstance(value, str):
        raise _Invalid(f"must be an address or CIDR prefix string, got {_show(value)}")
    try:
        return ip_network(value, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            raise _Invalid(str(exc)) from None
        raise _Invalid(f"must be an address or CIDR prefix, got {_show(value)}") from None


def _pool(value: object) -> PoolRange:
    if not isinstance(value, str):
        raise _Invalid(f'must be a string "PREFIX/LEN" or "FIRST-LAST", got {_show(value)}')
    try:
        return parse_pool(value)
    except ValueError as exc:
        problem = str(exc) if value in str(exc) else f"{exc}, got {_show(value)}"
        raise _Invalid(problem) from None


def _path(value: object) -> Path:
    if not isinstance(value, str) or not value:
        raise _Invalid(f"must be a non-empty path string, got {_show(value)}")
    if "\0" in value:
        raise _Invalid("must not contain NUL")
    return Path(value)


def _socket_path(value: object) -> Path:
    path = _path(value)
    if len(str(path).encode()) > _SUN_PATH_MAX:
        raise _Invalid(f"is longer than the {_SUN_PATH_MAX} bytes a Unix socket path can have")
    return path


def _syslog_target(value: object) -> str:
    text = _string(nonempty=False)(value)
    if not text or text.startswith("/"):
        return cast(str, text)
    parts = split_host_port(text)
    if parts is None:
        raise _Invalid(f'must be a socket path, "HOST[:PORT]" or "[IPV6]:PORT", got {_show(value)}')
    host, port = parts
    try:
        ip_address(host)
    except ValueError:
        raise _Invalid(
            "must be a socket path (/dev/log) or an IP address with an optional port, "
            f"got {_show(value)}"
        ) from None
    if port and (not port.isdigit() or not 0 < int(port) <= 65535):
        raise _Invalid(f"port must be 1..65535, got {_show(value)}")
    return cast(str, text)


def _template(value: object) -> str:
    text = _string()(value)
    try:
        text.format(n=1)
    except (KeyError, IndexError, ValueError) as exc:
        raise _Invalid(
            f"must be a template using only {{n}}, got {_show(value)} ({exc!r})"
        ) from None
    return cast(str, text)


def _interface_template(value: object) -> str:
    text = _string(max_len=15)(value)
    if text.count("%d") != 1 or "%" in text.replace("%d", "", 1):
        raise _Invalid(f'must contain "%d" exactly once (and no other %), got {_show(value)}')
    if "/" in text or " " in text:
        raise _Invalid(f"must be a valid interface name pattern, got {_show(value)}")
    if len(text.replace("%d", "65535")) > 15:
        raise _Invalid("expands to interface names longer than 15 characters")
    return cast(str, text)


# -- the key table ----------------------------------------------------------------------------

_UNSET: Any = object()
BOTH: frozenset[Role] = frozenset(ROLES)
LNS_ONLY: frozenset[Role] = frozenset({"lns"})
LAC_ONLY: frozenset[Role] = frozenset({"lac"})


def _meta(
    parse: Parser,
    *,
    lac_default: Any = _UNSET,
    roles: frozenset[Role] = BOTH,
) -> dict[str, Any]:
    """Field metadata that makes an attrs field a configuration key.

    Args:
        parse: turns the TOML value into the typed value; raises `_Invalid`.
        lac_default: the default for kl2tp-lac when it differs from the field default.
        roles: the daemons the key is valid for.
    """
    return {"parse": parse, "lac_default": lac_default, "roles": roles}


@attrs.frozen
class L2tpConfig:
    """``[l2tp]``: the control connection (RFC 2661)."""

    listen: Endpoint = attrs.field(
        default=Endpoint("127.0.0.1", 1701),
        metadata=_meta(_endpoint(1701, local=True), lac_default=Endpoint("0.0.0.0", 0)),
    )
    """Local UDP address and port."""
    hostname: str = attrs.field(default="kl2tp", metadata=_meta(_string()))
    """Host Name AVP we send."""
    secret: Secret | None = attrs.field(default=None, metadata=_meta(_secret))
    """Tunnel authentication secret; None: no tunnel authentication."""
    hide_avps: bool = attrs.field(default=False, metadata=_meta(_boolean))
    """Hide sensitive AVPs (RFC 2661 4.3); needs ``secret``."""
    hello_interval: float = attrs.field(default=60.0, metadata=_meta(_number(0)))
    """Seconds of silence before a Hello; 0 disables."""
    receive_window: int = attrs.field(default=16, metadata=_meta(_integer(1, 65535)))
    """Receive Window Size we advertise."""
    retransmit_initial: float = attrs.field(default=1.0, metadata=_meta(_number(0, above=True)))
    """First retransmission timeout, seconds."""
    retransmit_cap: float = attrs.field(default=8.0, metadata=_meta(_number(0, above=True)))
    """Upper bound of the exponential backoff, seconds."""
    max_retries: int = attrs.field(default=5, metadata=_meta(_integer(1, 100)))
    """Retransmissions before the tunnel is torn down."""
    idle_timeout: float = attrs.field(default=10.0, metadata=_meta(_number(0), lac_default=15.0))
    """Seconds a tunnel with no sessions stays up; 0 keeps it up."""
    allowed_peers: tuple[IpNetwork, ...] = attrs.field(
        default=(), metadata=_meta(_list_of(_network), roles=LNS_ONLY)
    )
    """Addresses/prefixes allowed to open tunnels; empty: any."""
    max_tunnels: int = attrs.field(default=0, metadata=_meta(_integer(0)))
    """Most tunnels at once; 0: unlimited."""
    max_sessions: int = attrs.field(default=0, metadata=_meta(_integer(0)))
    """Most sessions at once, all tunnels together; 0: unlimited."""
    queue_depth: int = attrs.field(default=256, metadata=_meta(_integer(1, 65536)))
    """Per-tunnel receive queue length; overflow is dropped and counted."""
    setup_timeout: float = attrs.field(default=0.0, metadata=_meta(_number(0)))
    """Seconds a tunnel may take to be established; 0: one retransmission cycle."""
    session_setup_timeout: float = attrs.field(default=0.0, metadata=_meta(_number(0)))
    """Seconds a call may take to be established (then CDN 10); 0: one retransmission cycle."""
    max_setup_tunnels: int = attrs.field(default=2000, metadata=_meta(_integer(0)))
    """Most peer-opened tunnels not yet established; 0: unlimited."""
    max_setup_sessions: int = attrs.field(default=10000, metadata=_meta(_integer(0)))
    """Most calls in setup over all tunnels; 0: unlimited."""
    max_setup_sessions_per_tunnel: int = attrs.field(
        default=1000, metadata=_meta(_integer(1, 65535))
    )
    """Most calls in setup in one tunnel."""
    max_lingering: int = attrs.field(default=10000, metadata=_meta(_integer(0)))
    """Most closed tunnels kept to re-ack a late StopCCN; 0: unlimited."""
    sccrq_rate: float = attrs.field(default=10.0, metadata=_meta(_number(0)))
    """SCCRQs per second one source host may open tunnels with; 0: unlimited."""
    sccrq_burst: int = attrs.field(default=50, metadata=_meta(_integer(1)))
    """SCCRQs one source host may send back to back."""
    sccrq_total_rate: float = attrs.field(default=0.0, metadata=_meta(_number(0)))
    """SCCRQs per second all sources together may open tunnels with; 0: unlimited."""
    sccrq_total_burst: int = attrs.field(default=100, metadata=_meta(_integer(1)))
    """SCCRQs all sources together may send back to back."""
    max_negotiating_sessions: int = attrs.field(default=0, metadata=_meta(_integer(0)))
    """Most sessions admitted and not up yet (L2TP setup and PPP); 0: unlimited."""
    max_sessions_per_tunnel: int = attrs.field(default=0, metadata=_meta(_integer(0)))
    """Most sessions in one tunnel; 0: unlimited."""
    workers: int = attrs.field(default=0, metadata=_meta(_integer(0, 256), roles=LNS_ONLY))
    """LNS worker processes sharing ``listen``; 0: one per core; 1: one process."""
    default_peer: str = attrs.field(
        default="accept", metadata=_meta(_choice("accept", "refuse"), roles=LNS_ONLY)
    )
    """A LAC no ``[[peer]]`` matches: ``accept`` it with the top-level settings, or
    ``refuse`` it (StopCCN result 4, not authorized)."""

    def peer_allowed(self, address: IPv4Address | IPv6Address) -> bool:
        """True if ``address`` may open a tunnel (checked once per SCCRQ, not per packet)."""
        return not self.allowed_peers or any(address in net for net in self.allowed_peers)


@attrs.frozen
class DataplaneConfig:
    """``[dataplane]``: where PPP frames go."""

    kind: str = attrs.field(default="auto", metadata=_meta(_choice("auto", "kernel", "null")))
    """``kernel``, ``null``, or ``auto`` (kernel when the kernel has l2tp)."""
    interface_template: str = attrs.field(default="l2tp%d", metadata=_meta(_interface_template))
    """Name of the per-session interface; ``%d`` is a number."""
    data_sequencing: bool = attrs.field(default=False, metadata=_meta(_boolean))
    """Send sequence numbers on data messages and require them in order."""


@attrs.frozen
class ControlConfig:
    """``[control]``: the kl2tpctl socket."""

    socket: Path = attrs.field(
        default=Path("/run/kl2tp/lns.sock"),
        metadata=_meta(_socket_path, lac_default=Path("/run/kl2tp/lac.sock")),
    )
    """Unix socket path (created mode 0600)."""


@attrs.frozen
class LogConfig:
    """``[log]``: logging."""

    level: str = attrs.field(
        default="info", metadata=_meta(_choice("debug", "info", "warning", "error"))
    )
    """Level of every category."""
    categories: tuple[str, ...] = attrs.field(
        default=(), metadata=_meta(_list_of(_choice(*LOG_CATEGORIES), unique=True))
    )
    """Categories whose debug trace is on (as ``--debug``)."""
    format: str = attrs.field(default="text", metadata=_meta(_choice("text", "logfmt", "json")))
    """Line format: ``text`` (IOS-style), ``logfmt`` or ``json``."""
    syslog: str = attrs.field(default="", metadata=_meta(_syslog_target))
    """Send the log to syslog: a local socket path or ``HOST[:PORT]`` (UDP); '' : no."""
    history: int = attrs.field(default=1000, metadata=_meta(_integer(1, 1_000_000)))
    """Ended and failed sessions ``kl2tpctl show history`` keeps."""


@attrs.frozen
class PppConfig:
    """``[ppp]``: PPP as the LNS terminates it, and link keepalives on both sides."""

    auth: tuple[AuthMethod, ...] = attrs.field(
        default=("chap", "mschapv2", "pap"),
        metadata=_meta(_list_of(_choice("chap", "pap", "mschapv2"), unique=True), roles=LNS_ONLY),
    )
    """Authentication the LNS demands, preferred first; empty: none."""
    local_address: IPv4Address = attrs.field(
        default=IPv4Address("10.255.0.1"), metadata=_meta(_ipv4, roles=LNS_ONLY)
    )
    """The LNS's own IPCP address."""
    pool: PoolRange = attrs.field(
        default=parse_pool("10.255.0.2-10.255.0.254"), metadata=_meta(_pool, roles=LNS_ONLY)
    )
    """Addresses for subscribers."""
    dns: tuple[IPv4Address, ...] = attrs.field(
        default=(), metadata=_meta(_list_of(_ipv4, max_items=2), roles=LNS_ONLY)
    )
    """Primary and secondary DNS offered in IPCP (RFC 1877)."""
    mru: int = attrs.field(default=1460, metadata=_meta(_integer(128, 65535)))
    """Maximum Receive Unit we ask for."""
    lcp_echo_interval: float = attrs.field(default=30.0, metadata=_meta(_number(0)))
    """Seconds between LCP Echo-Requests; 0 disables."""
    lcp_echo_failure: int = attrs.field(default=3, metadata=_meta(_integer(1, 1000)))
    """Unanswered Echo-Requests before the link is declared dead."""
    lcp_echo_adaptive: bool = attrs.field(default=True, metadata=_meta(_boolean))
    """Echo only a peer that was silent for the interval (pppd's lcp-echo-adaptive)."""
    restart_timer: float = attrs.field(default=3.0, metadata=_meta(_number(0, above=True)))
    """RFC 1661 restart timer, seconds."""
    max_configure: int = attrs.field(default=10, metadata=_meta(_integer(1, 255)))
    """RFC 1661 Max-Configure."""
    max_terminate: int = attrs.field(default=2, metadata=_meta(_integer(1, 255)))
    """RFC 1661 Max-Terminate."""
    max_failure: int = attrs.field(default=5, metadata=_meta(_integer(1, 255)))
    """RFC 1661 Max-Failure."""
    proxy_lcp: str = attrs.field(
        default="accept", metadata=_meta(_choice("accept", "renegotiate"), roles=LNS_ONLY)
    )
    """Honour the LAC's proxy LCP (ICCN AVPs 26-28) or renegotiate."""
    proxy_auth: str = attrs.field(
        default="accept", metadata=_meta(_choice("accept", "renegotiate"), roles=LNS_ONLY)
    )
    """Honour the LAC's proxy authentication (AVPs 29-33) or re-authenticate."""
    ipv6: bool = attrs.field(default=False, metadata=_meta(_boolean))
    """Negotiate IPv6CP."""
    session_timeout: float = attrs.field(default=0.0, metadata=_meta(_number(0), roles=LNS_ONLY))
    """Seconds a session may last when RADIUS sends no Session-Timeout; 0: no limit."""
    idle_timeout: float = attrs.field(default=0.0, metadata=_meta(_number(0), roles=LNS_ONLY))
    """Seconds without subscriber traffic before a session is cleared when RADIUS sends no
    Idle-Timeout; 0: no limit (needs kernel counters to see traffic)."""
    max_restarts: int = attrs.field(
        default=16, metadata=_meta(_integer(0, 1_000_000), roles=LNS_ONLY)
    )
    """LCP restarts an established link may go through (each re-authenticates: an AAA
    request); one more clears the session; 0: no limit."""
    setup_timeout: float = attrs.field(default=60.0, metadata=_meta(_number(0), roles=LNS_ONLY))
    """Seconds a link may take from its start (or an LCP renegotiation) to an open network
    protocol, however many LCP restarts it goes through; 0: no bound."""


@attrs.frozen
class AaaConfig:
    """``[aaa]``: who may connect (LNS)."""

    backend: str = attrs.field(default="local", metadata=_meta(_choice("local", "radius")))
    """``local`` (users file) or ``radius``."""
    users_file: Path = attrs.field(default=Path("/etc/kl2tp/users"), metadata=_meta(_path))
    """Users file for the local back end; relative to the config file's directory."""
    duplicate_session: str = attrs.field(
        default="refuse", metadata=_meta(_choice("refuse", "replace"))
    )
    """A second login of a user whose static address a live session holds: ``refuse`` it, or
    ``replace`` the old session."""


def _ip_literal(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be an IP address string, got {_show(value)}")
    try:
        address = ip_address(value)
    except ValueError:
        raise _Invalid(f"must be an IP address, got {_show(value)}") from None
    if address.is_unspecified:
        raise _Invalid(f"must be a reachable address, got {_show(value)}")
    return str(address)


def _radius_secret(value: object) -> Secret:
    if not isinstance(value, str) or not value:
        raise _Invalid("must be a non-empty string")
    return Secret(value.encode())


@attrs.frozen
class RadiusServerConfig:
    """One ``[[radius.server]]`` entry, in order of preference."""

    address: str = attrs.field(default="127.0.0.1", metadata=_meta(_ip_literal))
    """The server's IP address (no host names: resolving is I/O at start-up)."""
    secret: Secret = attrs.field(default=Secret(b""), metadata=_meta(_radius_secret))
    """Shared secret (required)."""
    auth_port: int = attrs.field(default=1812, metadata=_meta(_integer(1, 65535)))
    """Authentication port."""
    acct_port: int = attrs.field(default=1813, metadata=_meta(_integer(1, 65535)))
    """Accounting port."""


def _array_of(cls: type[Any], label: str, required: Sequence[str]) -> Parser:
    """An array of tables (``[[label]]``), each parsed into ``cls``; ``required`` keys."""

    def parse(value: object) -> tuple[Any, ...]:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise _Invalid(f"must be an array of tables ([[{label}]])")
        items = []
        for index, table in enumerate(value):
            where = f"[[{label}]] #{index + 1}"
            items.append(_walk_table(cls, table, where, "lns"))
            for key in required:
                if key not in table:
                    raise _Invalid("missing", subkey=f"{where} {key}")
        return tuple(items)

    parse.item_cls = cls  # type: ignore[attr-defined]
    return parse


@attrs.frozen
class CoaClientConfig:
    """One ``[[radius.coa_client]]``: a RADIUS server allowed to send CoA/Disconnect."""

    address: str = attrs.field(default="127.0.0.1", metadata=_meta(_ip_literal))
    """Its IP address (requests from any other address are dropped)."""
    secret: Secret = attrs.field(default=Secret(b""), metadata=_meta(_radius_secret))
    """The shared secret (required)."""


@attrs.frozen
class RadiusConfig:
    """``[radius]``: the RADIUS client (``[aaa] backend = "radius"``)."""

    server: tuple[RadiusServerConfig, ...] = attrs.field(
        default=(),
        metadata=_meta(_array_of(RadiusServerConfig, "radius.server", ("address", "secret"))),
    )
    """Servers, in order of preference."""
    nas_identifier: str = attrs.field(default="", metadata=_meta(_string(nonempty=False)))
    """NAS-Identifier we send; empty: ``[l2tp] hostname``."""
    nas_ip_address: IPv4Address | None = attrs.field(default=None, metadata=_meta(_ipv4))
    """NAS-IP-Address we send; None: not sent."""
    timeout: float = attrs.field(default=3.0, metadata=_meta(_number(0, above=True)))
    """Seconds to wait for a reply before retransmitting."""
    retries: int = attrs.field(default=2, metadata=_meta(_integer(0, 10)))
    """Retransmissions to one server before the next is tried."""
    dead_time: float = attrs.field(default=30.0, metadata=_meta(_number(0)))
    """Seconds a server that did not answer is skipped."""
    max_outstanding: int = attrs.field(default=128, metadata=_meta(_integer(0, 4096)))
    """Requests awaiting a reply from one server port at once; more wait their turn, so a
    burst is paced by the server's answers; 0: only the Identifiers limit them (4,096 per
    port)."""
    message_authenticator: bool = attrs.field(default=True, metadata=_meta(_boolean))
    """Require a valid Message-Authenticator in Access-Accept/Reject (BlastRADIUS)."""
    interim_interval: float = attrs.field(default=0.0, metadata=_meta(_number(0)))
    """Seconds between Interim-Updates when RADIUS sends no Acct-Interim-Interval; 0: none."""
    accounting: bool = attrs.field(default=True, metadata=_meta(_boolean))
    """Send accounting (Start, Interim-Update, Stop, Accounting-On/Off)."""
    accounting_queue: int = attrs.field(default=100_000, metadata=_meta(_integer(1)))
    """Most accounting records waiting for a server; more are dropped (and logged)."""
    accounting_spool: Path = attrs.field(
        default=Path("/var/lib/kl2tp/radius-accounting.spool"), metadata=_meta(_path)
    )
    """File the records still unsent at shutdown go to; sent at the next start."""
    coa_listen: Endpoint | None = attrs.field(
        default=None, metadata=_meta(_endpoint(3799, local=True), roles=LNS_ONLY)
    )
    """Where the RFC 5176 CoA/Disconnect server listens; None: no server."""
    coa_client: tuple[CoaClientConfig, ...] = attrs.field(
        default=(),
        metadata=_meta(
            _array_of(CoaClientConfig, "radius.coa_client", ("address", "secret")),
            roles=LNS_ONLY,
        ),
    )
    """Who may send CoA/Disconnect-Requests, with which secret."""


@attrs.frozen
class NamedPool:
    """One ``[[pool]]``: an address pool RADIUS picks by Framed-Pool."""

    name: str = attrs.field(default="", metadata=_meta(_string(max_len=253)))
    """The name RADIUS sends in Framed-Pool."""
    range: PoolRange = attrs.field(
        default=parse_pool("10.255.0.2-10.255.0.254"), metadata=_meta(_pool)
    )
    """The addresses, written like ``[ppp] pool``."""


_named_pools = _array_of(NamedPool, "pool", ("name", "range"))


def _one_or_list(item: Parser, *, max_items: int | None = None) -> Parser:
    """A value or a list of them (``match_hostname = "lac-*"`` or ``["a", "b"]``)."""
    many = _list_of(item, max_items=max_items, unique=True)

    def parse(value: object) -> tuple[Any, ...]:
        return cast(tuple[Any, ...], many(value) if isinstance(value, list) else (item(value),))

    return parse


def _peer_name(value: object) -> str:
    text = cast(str, _string(max_len=64)(value))
    if text == "default":
        raise _Invalid('"default" is the name of the top-level settings; choose another')
    return text


def _lns_key(parse: Parser) -> dict[str, Any]:
    """Metadata of an LNS-only key (a ``[[peer]]`` override: None keeps the top level)."""
    return _meta(parse, roles=LNS_ONLY)


@attrs.frozen
class PeerConfig:
    """One ``[[peer]]``: the policy of the LACs it matches (LNS); a key left out takes the
    top-level value of the same name."""

    name: str = attrs.field(default="", metadata=_meta(_peer_name, roles=LNS_ONLY))
    """The policy's name (``kl2tpctl show tunnels``, logs, metrics)."""
    match_address: tuple[IpNetwork, ...] = attrs.field(
        default=(), metadata=_meta(_one_or_list(_network), roles=LNS_ONLY)
    )
    """The SCCRQ's source address is one of these addresses or prefixes."""
    match_hostname: tuple[str, ...] = attrs.field(
        default=(), metadata=_meta(_one_or_list(_string()), roles=LNS_ONLY)
    )
    """The Host Name AVP equals one of these or matches one of these globs."""
    secret: Secret | None = attrs.field(default=None, metadata=_lns_key(_secret))
    """``[l2tp] secret`` for these LACs."""
    hide_avps: bool | None = attrs.field(default=None, metadata=_lns_key(_boolean))
    """``[l2tp] hide_avps``."""
    hello_interval: float | None = attrs.field(default=None, metadata=_lns_key(_number(0)))
    """``[l2tp] hello_interval``."""
    receive_window: int | None = attrs.field(default=None, metadata=_lns_key(_integer(1, 65535)))
    """``[l2tp] receive_window``."""
    max_tunnels: int = attrs.field(default=0, metadata=_meta(_integer(0), roles=LNS_ONLY))
    """Most tunnels of these LACs at once; 0: no limit of their own."""
    max_sessions: int = attrs.field(default=0, metadata=_meta(_integer(0), roles=LNS_ONLY))
    """Most sessions over their tunnels; 0: no limit of their own."""
    pool: str | None = attrs.field(default=None, metadata=_lns_key(_string(max_len=253)))
    """The name of the ``[[pool]]`` their subscribers' addresses come from."""
    auth: tuple[AuthMethod, ...] | None = attrs.field(
        default=None, metadata=_lns_key(_list_of(_choice("chap", "pap", "mschapv2"), unique=True))
    )
    """``[ppp] auth``."""
    proxy_lcp: str | None = attrs.field(
        default=None, metadata=_lns_key(_choice("accept", "renegotiate"))
    )
    """``[ppp] proxy_lcp``."""
    proxy_auth: str | None = attrs.field(
        default=None, metadata=_lns_key(_choice("accept", "renegotiate"))
    )
    """``[ppp] proxy_auth``."""
    dns: tuple[IPv4Address, ...] | None = attrs.field(
        default=None, metadata=_lns_key(_list_of(_ipv4, max_items=2))
    )
    """``[ppp] dns``."""
    mru: int | None = attrs.field(default=None, metadata=_lns_key(_integer(128, 65535)))
    """``[ppp] mru``."""
    session_timeout: float | None = attrs.field(default=None, metadata=_lns_key(_number(0)))
    """``[ppp] session_timeout``."""
    idle_timeout: float | None = attrs.field(default=None, metadata=_lns_key(_number(0)))
    """``[ppp] idle_timeout`` (the session's, not the tunnel's)."""
    interface_template: str | None = attrs.field(
        default=None, metadata=_lns_key(_interface_template)
    )
    """``[dataplane] interface_template``."""
    aaa: str | None = attrs.field(default=None, metadata=_lns_key(_choice("local", "radius")))
    """``[aaa] backend``."""


_peers = _array_of(PeerConfig, "peer", ("name",))


@attrs.frozen
class LnsPeer:
    """One ``[[lac.lns]]`` entry: an LNS the LAC dials."""

    address: Endpoint = attrs.field(
        default=Endpoint("127.0.0.1", 1701),
        metadata=_meta(_endpoint(1701, local=False)),
    )
    """LNS address; port defaults to 1701."""
    secret: Secret | None = attrs.field(default=None, metadata=_meta(_secret))
    """Tunnel secret for this LNS; None: ``[l2tp] secret``."""
    hostname: str | None = attrs.field(default=None, metadata=_meta(_string()))
    """Host Name to send to this LNS; None: ``[l2tp] hostname``."""

    @property
    def host(self) -> str:
        """``address.host``."""
        return self.address.host

    @property
    def port(self) -> int:
        """``address.port``."""
        return self.address.port


def _lns_peers(value: object) -> tuple[LnsPeer, ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _Invalid("must be an array of tables ([[lac.lns]])")
    if not value:
        raise _Invalid("must list at least one LNS")
    peers = []
    for index, table in enumerate(value):
        peers.append(_walk_table(LnsPeer, table, f"[[lac.lns]] #{index + 1}", "lac"))
        if "address" not in table:
            raise _Invalid("missing", subkey=f"[[lac.lns]] #{index + 1} address")
    return tuple(peers)


@attrs.frozen
class LacRoute:
    """One ``[[lac.route]]`` entry: an LNS for the subscribers of one DNIS or domain."""

    dnis: str | None = attrs.field(default=None, metadata=_meta(_string(max_len=64)))
    """The called number this rule is for."""
    domain: str | None = attrs.field(default=None, metadata=_meta(_string()))
    """The user-name domain (after ``@``) this rule is for; matched without case."""
    lns: Endpoint = attrs.field(
        default=Endpoint("127.0.0.1", 1701), metadata=_meta(_endpoint(1701, local=False))
    )
    """The LNS; port defaults to 1701."""
    secret: Secret | None = attrs.field(default=None, metadata=_meta(_secret))
    """Tunnel secret towards it; None: ``[l2tp] secret``."""
    hostname: str | None = attrs.field(default=None, metadata=_meta(_string()))
    """Host Name we send it; None: ``[l2tp] hostname``."""
    preference: int = attrs.field(default=1, metadata=_meta(_integer(0, 0xFFFFFF)))
    """Lower is preferred; equal preferences share the calls (RFC 2868 Tunnel-Preference)."""


def _lac_routes(value: object) -> tuple[LacRoute, ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _Invalid("must be an array of tables ([[lac.route]])")
    routes = []
    for index, table in enumerate(value):
        label = f"[[lac.route]] #{index + 1}"
        route = _walk_table(LacRoute, table, label, "lac")
        if "lns" not in table:
            raise _Invalid("missing", subkey=f"{label} lns")
        if (route.dnis is None) == (route.domain is None):
            raise _Invalid("needs exactly one of dnis and domain", subkey=label)
        if route.domain is not None:
            route = attrs.evolve(route, domain=route.domain.lower())
        routes.append(route)
    return tuple(routes)


@attrs.frozen
class LacConfig:
    """``[lac]``: what the LAC does (LAC)."""

    mode: str = attrs.field(
        default="simulate", metadata=_meta(_choice("simulate", "client", "pppoe"))
    )
    """``simulate`` (subscribers in userspace), ``client`` (one kernel pppN) or ``pppoe``
    (subscribers dial in over PPPoE, ``[pppoe]``)."""
    lns: tuple[LnsPeer, ...] = attrs.field(default=(LnsPeer(),), metadata=_meta(_lns_peers))
    """The LNSs to dial, in order."""
    route: tuple[LacRoute, ...] = attrs.field(default=(), metadata=_meta(_lac_routes))
    """Static tunnel selection rules, by DNIS or domain."""
    lookup: str = attrs.field(default="static", metadata=_meta(_choice("static", "radius")))
    """``static``: ``[[lac.route]]`` then ``[[lac.lns]]``; ``radius``: ``[[lac.route]]`` then
    a RADIUS lookup per subscriber."""
    search_order: tuple[str, ...] = attrs.field(
        default=("dnis", "domain"),
        metadata=_meta(_list_of(_choice("dnis", "domain"), unique=True)),
    )
    """What a subscriber is routed by, first match wins (Cisco ``vpdn search-order``)."""
    lookup_password: Secret = attrs.field(default=Secret(b"cisco"), metadata=_meta(_secret))
    """User-Password of the RADIUS tunnel lookup (Cisco's default is ``cisco``)."""
    failover_timeout: float = attrs.field(default=5.0, metadata=_meta(_number(0, above=True)))
    """Seconds to wait for an LNS's SCCRP before trying the next one."""
    dead_time: float = attrs.field(default=60.0, metadata=_meta(_number(0)))
    """Seconds an LNS that did not answer is tried only after the others."""

    @property
    def selects(self) -> bool:
        """True when calls pick their LNS per subscriber (routes or a RADIUS lookup)."""
        return bool(self.route) or self.lookup == "radius"


@attrs.frozen
class SubscriberConfig:
    """``[subscriber]``: the subscribers the LAC plays (LAC)."""

    username: str = attrs.field(default="user{n}", metadata=_meta(_template))
    """User name template; ``{n}`` is the call number from 1."""
    password: str = attrs.field(default="pass{n}", metadata=_meta(_template))
    """Password template."""
    auth: str = attrs.field(default="chap", metadata=_meta(_choice("chap", "pap", "mschapv2")))
    """Method the subscriber prefers."""
    proxy: bool = attrs.field(default=False, metadata=_meta(_boolean))
    """Send proxy LCP and proxy authentication in the ICCN."""
    calling_number: str = attrs.field(default="", metadata=_meta(_string(nonempty=False)))
    """Calling Number AVP template (``{n}`` allowed); empty: not sent."""
    called_number: str = attrs.field(default="", metadata=_meta(_string(nonempty=False)))
    """Called Number AVP template; empty: not sent."""
    count: int = attrs.field(default=1, metadata=_meta(_integer(1, 1_000_000)))
    """Calls ``--simulate`` places when no N is given."""
    rate: float = attrs.field(default=100.0, metadata=_meta(_number(0)))
    """Calls per second; 0: as fast as possible."""
    hold: float = attrs.field(default=1.0, metadata=_meta(_number(0)))
    """Seconds each call is held before it is cleared."""
    ppp: bool = attrs.field(default=True, metadata=_meta(_boolean))
    """Run PPP on each call; false: a call is up once its L2TP session is (ICRQ/ICRP/ICCN)."""
    tunnels: int = attrs.field(default=0, metadata=_meta(_integer(0, 65535)))
    """Tunnels ``--simulate`` spreads its calls over, round the ``[[lac.lns]]`` entries;
    0: one per entry."""
    max_outstanding: int = attrs.field(default=0, metadata=_meta(_integer(0)))
    """Most calls in setup at once (placed, not yet up or failed); 0: unlimited."""

    def credentials(self, n: int) -> tuple[str, str]:
        """User name and password of subscriber ``n``."""
        return self.username.format(n=n), self.password.format(n=n)


@attrs.frozen
class PppoeConfig:
    """``[pppoe]``: the access side where subscribers dial in (LAC, ``[lac] mode = "pppoe"``)."""

    interface: str = attrs.field(default="", metadata=_meta(_string(max_len=15, nonempty=False)))
    """The Ethernet interface subscribers are on; required with ``mode = "pppoe"``."""
    ac_name: str = attrs.field(default="", metadata=_meta(_string(nonempty=False)))
    """AC-Name in the PADO; empty: ``[l2tp] hostname``."""
    service_names: tuple[str, ...] = attrs.field(
        default=(), metadata=_meta(_list_of(_string(), unique=True))
    )
    """Service-Names offered; empty: any."""
    max_sessions: int = attrs.field(default=4096, metadata=_meta(_integer(1, 65534)))
    """PPPoE sessions at once."""
    auth: str = attrs.field(default="chap", metadata=_meta(_choice("chap", "pap")))
    """How the LAC authenticates subscribers before it proxies to the LNS."""
    setup_timeout: float = attrs.field(default=30.0, metadata=_meta(_number(0, above=True)))
    """Seconds from a subscriber's PADS until its L2TP call is established."""


@attrs.frozen
class MetricsConfig:
    """``[metrics]``: the Prometheus endpoint."""

    listen: Endpoint | None = attrs.field(default=None, metadata=_meta(_endpoint(9641, local=True)))
    """Where ``GET /metrics`` is served; None: no metrics endpoint."""


_SECTIONS: dict[str, tuple[type[Any], frozenset[Role]]] = {
    "l2tp": (L2tpConfig, BOTH),
    "dataplane": (DataplaneConfig, BOTH),
    "control": (ControlConfig, BOTH),
    "log": (LogConfig, BOTH),
    "ppp": (PppConfig, BOTH),
    "aaa": (AaaConfig, LNS_ONLY),
    "radius": (RadiusConfig, BOTH),
    "lac": (LacConfig, LAC_ONLY),
    "subscriber": (SubscriberConfig, LAC_ONLY),
    "pppoe": (PppoeConfig, LAC_ONLY),
    "metrics": (MetricsConfig, BOTH),
}
_ROLE_NAMES = {"lns": "kl2tp-lns", "lac": "kl2tp-lac"}
_ARRAYS: dict[str, Parser] = {"pool": _named_pools, "peer": _peers}
"""Top-level arrays of tables (LNS): ``[[pool]]`` and ``[[peer]]``."""


@attrs.frozen
class Config:
    """A whole, validated configuration for one daemon."""

    role: Role
    """``lns`` or ``lac``."""
    source: str
    """Where it came from (file name), for messages."""
    l2tp: L2tpConfig = attrs.field(factory=L2tpConfig)
    """``[l2tp]``."""
    dataplane: DataplaneConfig = attrs.field(factory=DataplaneConfig)
    """``[dataplane]``."""
    control: ControlConfig = attrs.field(factory=ControlConfig)
    """``[control]``."""
    log: LogConfig = attrs.field(factory=LogConfig)
    """``[log]``."""
    ppp: PppConfig = attrs.field(factory=PppConfig)
    """``[ppp]``."""
    aaa: AaaConfig = attrs.field(factory=AaaConfig)
    """``[aaa]`` (LNS)."""
    lac: LacConfig = attrs.field(factory=LacConfig)
    """``[lac]`` and ``[[lac.lns]]`` (LAC)."""
    subscriber: SubscriberConfig = attrs.field(factory=SubscriberConfig)
    """``[subscriber]`` (LAC)."""
    pppoe: PppoeConfig = attrs.field(factory=PppoeConfig)
    """``[pppoe]`` (LAC)."""
    radius: RadiusConfig = attrs.field(factory=RadiusConfig)
    """``[radius]`` and ``[[radius.server]]``."""
    pool: tuple[NamedPool, ...] = ()
    """``[[pool]]`` (LNS): named pools; ``[ppp] pool`` is the default pool ``""``."""
    metrics: MetricsConfig = attrs.field(factory=MetricsConfig)
    """``[metrics]``."""
    peer: tuple[PeerConfig, ...] = ()
    """``[[peer]]`` (LNS): per-LAC policies, first match wins."""

    def tunnel_config(self, peer: LnsPeer | None = None) -> TunnelConfig:
        """The tunnel core's settings from ``[l2tp]`` (and, on the LAC, one LNS's overrides)."""
        from kl2tp.l2tp.tunnel import TunnelConfig  # the core loads only when a daemon needs it

        l2tp = self.l2tp
        hostname, secret = (
            self.peer_identity(peer) if peer is not None else (l2tp.hostname, l2tp.secret)
        )
        return TunnelConfig(
            hostname=hostname,
            secret=secret.reveal() if secret is not None else None,
            hide_avps=l2tp.hide_avps,
            hello_interval=l2tp.hello_interval,
            receive_window=l2tp.receive_window,
            retransmit_initial=l2tp.retransmit_initial,
            retransmit_cap=l2tp.retransmit_cap,
            max_retries=l2tp.max_retries,
            idle_timeout=l2tp.idle_timeout,
            setup_timeout=l2tp.setup_timeout or None,
            session_setup_timeout=l2tp.session_setup_timeout or None,
            max_setup_sessions_per_tunnel=l2tp.max_setup_sessions_per_tunnel,
        )

    def peer_tunnel_config(self, peer: PeerConfig) -> TunnelConfig:
        """The tunnel core's settings for the LACs of one ``[[peer]]``: its overrides over
        ``[l2tp]``."""
        base = self.tunnel_config()
        secret = peer.secret if peer.secret is not None else self.l2tp.secret
        return attrs.evolve(
            base,
            secret=secret.reveal() if secret is not None else None,
            hide_avps=_pick(peer.hide_avps, base.hide_avps),
            hello_interval=_pick(peer.hello_interval, base.hello_interval),
            receive_window=_pick(peer.receive_window, base.receive_window),
        )

    def policies(self) -> PolicyTable:
        """The per-peer policy table the endpoint matches SCCRQs against."""
        from kl2tp.policy import DEFAULT_POLICY, Match, Policy, PolicyTable

        return PolicyTable(
            Policy(DEFAULT_POLICY, self.tunnel_config()),
            tuple(
                Policy(
                    p.name,
                    self.peer_tunnel_config(p),
                    max_tunnels=p.max_tunnels,
                    max_sessions=p.max_sessions,
                    match=Match(p.match_address, p.match_hostname),
                )
                for p in self.peer
            ),
            refuse_unmatched=self.l2tp.default_peer == "refuse",
        )

    @property
    def backends(self) -> frozenset[str]:
        """Every AAA back end a session may use: ``[aaa] backend`` and the ``[[peer]]`` ones."""
        return frozenset({self.aaa.backend, *(p.aaa for p in self.peer if p.aaa is not None)})

    @property
    def auth_methods(self) -> frozenset[str]:
        """Every PPP authentication method some policy demands (the back ends accept these;
        each session's link demands its own policy's)."""
        methods = set(self.ppp.auth)
        for p in self.peer:
            methods.update(p.auth if p.auth is not None else ())
        return frozenset(methods)

    def endpoint_limits(self) -> Limits:
        """The endpoint-wide bounds on peer-created state from ``[l2tp]``."""
        from kl2tp.l2tp.endpoint import Limits  # the core loads only when a daemon needs it

        l2tp = self.l2tp
        return Limits(
            max_setup_tunnels=l2tp.max_setup_tunnels,
            max_setup_sessions=l2tp.max_setup_sessions,
            max_lingering=l2tp.max_lingering,
            sccrq_rate=l2tp.sccrq_rate,
            sccrq_burst=l2tp.sccrq_burst,
            sccrq_total_rate=l2tp.sccrq_total_rate,
            sccrq_total_burst=l2tp.sccrq_total_burst,
            max_negotiating_sessions=l2tp.max_negotiating_sessions,
            max_sessions_per_tunnel=l2tp.max_sessions_per_tunnel,
        )

    def peer_identity(self, peer: LnsPeer) -> tuple[str, Secret | None]:
        """Host name and secret to use towards one LNS (its overrides, else ``[l2tp]``)."""
        return (
            peer.hostname if peer.hostname is not None else self.l2tp.hostname,
            peer.secret if peer.secret is not None else self.l2tp.secret,
        )


def _pick(value: T | None, default: T) -> T:
    return default if value is None else value


# -- the table walker -------------------------------------------------------------------------


def _suggest(word: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _walk_table(cls: type[T], table: Mapping[str, object], label: str, role: Role) -> T:
    """Parse one TOML table into ``cls``; raises `_Invalid` with ``subkey`` set."""
    fields = {f.name: f for f in attrs.fields(cast(Any, cls))}
    for name in table:
        if name not in fields:
            raise _Invalid(f"unknown key{_suggest(name, list(fields))}", subkey=f"{label} {name}")
    kwargs: dict[str, object] = {}
    for name, field in fields.items():
        meta = field.metadata
        if name in table:
            if role not in meta["roles"]:
                other = _ROLE_NAMES["lns" if role == "lac" else "lac"]
                raise _Invalid(f"only valid for {other}", subkey=f"{label} {name}")
            try:
                kwargs[name] = meta["parse"](table[name])
            except _Invalid as exc:
                raise _Invalid(exc.problem, subkey=exc.subkey or f"{label} {name}") from None
        elif role == "lac" and meta["lac_default"] is not _UNSET:
            kwargs[name] = meta["lac_default"]
    return cls(**kwargs)


def _check_consistency(config: Config) -> None:
    """Cross-key rules; raises `_Invalid` with ``subkey`` set."""
    l2tp, ppp = config.l2tp, config.ppp
    if l2tp.retransmit_cap < l2tp.retransmit_initial:
        raise _Invalid(
            f"must be >= retransmit_initial ({l2tp.retransmit_initial:g}), "
            f"got {l2tp.retransmit_cap:g}",
            subkey="[l2tp] retransmit_cap",
        )
    if config.role == "lns":
        if l2tp.hide_avps and l2tp.secret is None:
            raise _Invalid(
                "needs [l2tp] secret (hiding uses the tunnel secret)", subkey="[l2tp] hide_avps"
            )
        if ppp.pool.count == 1 and ppp.local_address in ppp.pool:
            raise _Invalid(
                "holds only local_address: no address left for subscribers", subkey="[ppp] pool"
            )
        _check_pools(config)
        _check_peers(config)
        if l2tp.workers > 1 and config.radius.coa_listen is not None:
            raise _Invalid(
                "needs [l2tp] workers = 1 or 0 (one CoA port cannot reach every worker's sessions)",
                subkey="[radius] coa_listen",
            )
        if config.radius.coa_client and config.radius.coa_listen is None:
            raise _Invalid(
                "has no effect without [radius] coa_listen", subkey="[[radius.coa_client]]"
            )
        if "radius" in config.backends and not config.radius.server:
            raise _Invalid(
                'must list at least one server for [aaa] backend = "radius"',
                subkey="[[radius.server]]",
            )
    else:
        secrets = [p.secret for p in config.lac.lns] + [r.secret for r in config.lac.route]
        if l2tp.hide_avps and l2tp.secret is None and any(s is None for s in secrets):
            raise _Invalid(
                "needs a secret (hiding uses the tunnel secret)", subkey="[l2tp] hide_avps"
            )
        if config.lac.lookup == "radius" and not config.radius.server:
            raise _Invalid(
                'must list at least one server for [lac] lookup = "radius"',
                subkey="[[radius.server]]",
            )
        if config.lac.mode == "pppoe" and not config.pppoe.interface:
            raise _Invalid('is required with [lac] mode = "pppoe"', subkey="[pppoe] interface")
        if config.subscriber.proxy and config.subscriber.auth == "mschapv2":
            raise _Invalid(
                'proxy authentication carries PAP or CHAP only, not "mschapv2"',
                subkey="[subscriber] proxy",
            )


def _check_unique_names(names: Sequence[str], label: str) -> None:
    """The ``name`` of each ``[[label]]`` differs from the ones before it."""
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            raise _Invalid(
                f"{name!r} is already the name of [[{label}]] #{seen[name]}",
                subkey=f"[[{label}]] #{index + 1} name",
            )
        seen[name] = index + 1


def _check_peers(config: Config) -> None:
    """``[[peer]]``: unique names, something to match, a pool that exists, a secret to hide
    AVPs with."""
    _check_unique_names([p.name for p in config.peer], "peer")
    pools = {p.name for p in config.pool}
    for index, peer in enumerate(config.peer):
        where = f"[[peer]] #{index + 1}"
        if not peer.match_address and not peer.match_hostname:
            raise _Invalid("needs match_address or match_hostname (or both)", subkey=where)
        if peer.pool is not None and peer.pool not in pools:
            raise _Invalid(f"{_show(peer.pool)} is no [[pool]] name", subkey=f"{where} pool")
        secret = peer.secret if peer.secret is not None else config.l2tp.secret
        if _pick(peer.hide_avps, config.l2tp.hide_avps) and secret is None:
            raise _Invalid(
                "needs a secret (hiding uses the tunnel secret)", subkey=f"{where} hide_avps"
            )


def _check_pools(config: Config) -> None:
    """Named pools: unique names, no overlap with each other or with ``[ppp] pool``."""
    _check_unique_names([p.name for p in config.pool], "pool")
    ranges = [("[ppp] pool", config.ppp.pool)]
    for index, pool in enumerate(config.pool):
        where = f"[[pool]] #{index + 1}"
        for other, r in ranges:
            if int(pool.range.first) <= int(r.last) and int(r.first) <= int(pool.range.last):
                raise _Invalid(f"overlaps {other} ({r.text})", subkey=f"{where} range")
        ranges.append((where, pool.range))


def parse_config(
    source: str | Mapping[str, Any],
    source_name: str,
    role: Role,
    base_dir: Path | None = None,
) -> Config:
    """Parse and validate a configuration.

    Args:
        source: TOML text, or an already-parsed TOML document.
        source_name: shown in errors (normally the file name).
        role: ``"lns"`` or ``"lac"``: which daemon reads it (keys and defaults differ).
        base_dir: directory relative paths (``[aaa] users_file``) are resolved against;
            None leaves them as written.

    Raises:
        ConfigError: naming ``source_name``, the key and the problem.
    """
    if role not in ROLES:
        raise ValueError(f"role must be 'lns' or 'lac', not {role!r}")
    if isinstance(source, str):
        try:
            data: Mapping[str, Any] = tomllib.loads(source)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source_name, "", f"invalid TOML: {exc}") from None
    else:
        data = source
    sections: dict[str, object] = {}
    try:
        for name, table in data.items():
            if name in _ARRAYS:
                if role != "lns":
                    raise _Invalid("only valid for kl2tp-lns", subkey=f"[[{name}]]")
                try:
                    sections[name] = _ARRAYS[name](table)
                except _Invalid as exc:
                    raise _Invalid(exc.problem, subkey=exc.subkey or f"[[{name}]]") from None
                continue
            if name not in _SECTIONS and not isinstance(table, dict):
                homes = [
                    f"[{sec}]" for sec, (c, _r) in _SECTIONS.items() if name in attrs.fields_dict(c)
                ]
                hint = f" (it belongs in {' or '.join(homes)})" if homes else ""
                raise _Invalid(f"key outside any section{hint}", subkey=name)
            if name not in _SECTIONS:
                raise _Invalid(
                    f"unknown section{_suggest(name, list(_SECTIONS))}", subkey=f"[{name}]"
                )
            cls, roles = _SECTIONS[name]
            if role not in roles:
                other = _ROLE_NAMES["lns" if role == "lac" else "lac"]
                raise _Invalid(f"section only valid for {other}", subkey=f"[{name}]")
            if not isinstance(table, dict):
                raise _Invalid(f"must be a table ([{name}]), got {_show(table)}", subkey=name)
            sections[name] = _walk_table(cls, table, f"[{name}]", role)
        for name, (cls, _roles) in _SECTIONS.items():
            if name not in sections:
                sections[name] = _walk_table(cls, {}, f"[{name}]", role)
        aaa = cast(AaaConfig, sections["aaa"])
        if base_dir is not None and not aaa.users_file.is_absolute():
            sections["aaa"] = attrs.evolve(aaa, users_file=base_dir / aaa.users_file)
        radius = cast(RadiusConfig, sections["radius"])
        if base_dir is not None and not radius.accounting_spool.is_absolute():
            sections["radius"] = attrs.evolve(
                radius, accounting_spool=base_dir / radius.accounting_spool
            )
        config = Config(role=role, source=source_name, **cast(dict[str, Any], sections))
        _check_consistency(config)
    except _Invalid as exc:
        raise ConfigError(source_name, exc.subkey, exc.problem) from None
    return config


def load_config(path: str | Path, role: Role) -> Config:
    """Read and validate a configuration file.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or a key is wrong.
    """
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(name, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(name, "", f"not UTF-8 text (byte {exc.start})") from None
    return parse_config(text, name, role, base_dir=Path(path).resolve().parent)


def check_config(path: str | Path, role: Role) -> list[ConfigError]:
    """Every problem of a configuration file, not just the first (``--check-config``).

    Each key is checked on its own, so one bad key does not hide the next; the cross-key
    rules run once every key is good. An empty list: the file is good.
    """
    name = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
        data: Mapping[str, Any] = tomllib.loads(text)
    except OSError as exc:
        return [ConfigError(name, "", f"cannot read: {exc.strerror or exc}")]
    except UnicodeDecodeError as exc:
        return [ConfigError(name, "", f"not UTF-8 text (byte {exc.start})")]
    except tomllib.TOMLDecodeError as exc:
        return [ConfigError(name, "", f"invalid TOML: {exc}")]
    errors: list[ConfigError] = []
    for section, table in data.items():
        entry = _SECTIONS.get(section)
        if section in _ARRAYS and role == "lns":
            # Each table on its own; rules across sections ([[peer]] pool names a [[pool]])
            # run once every key is good.
            try:
                _ARRAYS[section](table)
            except _Invalid as exc:
                errors.append(ConfigError(name, exc.subkey or f"[[{section}]]", exc.problem))
            continue
        if entry is None or not isinstance(table, dict) or role not in entry[1]:
            try:
                parse_config({section: table}, name, role)
            except ConfigError as exc:
                errors.append(exc)
            continue
        for key, value in table.items():
            try:
                _walk_table(entry[0], {key: value}, f"[{section}]", role)
            except _Invalid as exc:
                errors.append(ConfigError(name, exc.subkey, exc.problem))
    if not errors:
        try:
            load_config(path, role)
        except ConfigError as exc:
            errors.append(exc)
    return errors


def load_default(role: Role) -> Config:
    """The embedded default configuration (``kl2tp/defaults/<role>.toml``).

    The LNS default listens on 127.0.0.1:1701, authenticates against the packaged users file
    (``test`` / ``test``), hands out 10.255.0.2-10.255.0.254 and picks the data plane itself.
    """
    return load_config(DEFAULTS_DIR / f"{role}.toml", role)


_ARRAY_ITEMS: dict[Parser, type[Any]] = {_lns_peers: LnsPeer, _lac_routes: LacRoute}
"""Keys holding arrays of tables, and the class of one entry (for `known_keys`)."""


def known_keys(role: Role | None = None) -> list[str]:
    """Every key the parser accepts, as ``"section.key"`` (``"lac.lns.address"`` for the array).

    Args:
        role: only the keys valid for that daemon; None: all.
    """
    keys: list[str] = []

    def walk(cls: type[Any], prefix: str, section_roles: frozenset[Role]) -> Iterator[str]:
        for field in attrs.fields(cls):
            if role is not None and role not in (field.metadata["roles"] & section_roles):
                continue
            parse = field.metadata["parse"]
            item = _ARRAY_ITEMS.get(parse) or getattr(parse, "item_cls", None)
            if item is not None:
                yield from walk(item, f"{prefix}.{field.name}", section_roles)
            else:
                yield f"{prefix}.{field.name}"

    for name, (cls, roles) in _SECTIONS.items():
        keys.extend(walk(cls, name, roles))
    keys.extend(walk(NamedPool, "pool", LNS_ONLY))
    keys.extend(walk(PeerConfig, "peer", LNS_ONLY))
    return keys
