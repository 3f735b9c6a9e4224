"""Which LNS serves a subscriber: sans-IO, from static rules or a RADIUS reply.

A LAC forwards a subscriber by the called number (DNIS) or the domain of the user name, in
the order ``[lac] search_order`` gives (Cisco's ``vpdn search-order dnis domain``). For each
key it takes the ``[[lac.route]]`` rules written for it, or asks RADIUS (User-Name
``dnis:<number>`` or the domain, as the reference trace shows) and reads the tunnel
description from the reply, in either of the two forms servers use:

- RFC 2868 tunnel attributes, grouped by their tag (one tag, one tunnel): Tunnel-Type
  (must be L2TP), Tunnel-Medium-Type, Tunnel-Server-Endpoint, Tunnel-Password
  (salt-encrypted with the Request Authenticator, section 3.5), Tunnel-Preference,
  Tunnel-Assignment-ID, Tunnel-Client-Auth-ID (our Host Name), Tunnel-Server-Auth-ID (the
  LNS's);
- Cisco's ``Cisco-AVPair`` strings ``vpdn:tunnel-type=l2tp``, ``vpdn:tunnel-id=<our host
  name>``, ``vpdn:ip-addresses=<a> <b>/<c>`` (spaces or commas: equal preference; ``/``:
  the next, worse preference) and ``vpdn:l2tp-tunnel-password=<secret>``.

Either way the result is a list of :class:`LnsCandidate`; :func:`order_candidates` sorts
them for one call: the best preference first, equal preferences spread by load, LNSs that
recently failed to answer last (:class:`LnsHealth`). The trio driver
(:mod:`kl2tp.lac.tunnels`) dials down that list until one answers. Nothing here does I/O or
reads a clock.
"""

from __future__ import annotations

import enum
import hashlib
import random
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Generic, TypeVar

import attrs

from kl2tp.l2tp.avp import md5_chain
from kl2tp.values import Secret

__all__ = [
    "KeptAnswers",
    "LnsCandidate",
    "LnsHealth",
    "ReplyTunnels",
    "RouteKey",
    "RouteKind",
    "StaticRoutes",
    "candidates_from_reply",
    "decrypt_tunnel_password",
    "domain_of",
    "encrypt_tunnel_password",
    "order_candidates",
    "parse_attributes",
    "route_keys",
]

L2TP_PORT = 1701

T = TypeVar("T", bound=Hashable)

# RADIUS attribute types (RFC 2865, RFC 2868) and values this module reads.
VENDOR_SPECIFIC = 26
TUNNEL_TYPE = 64
TUNNEL_MEDIUM_TYPE = 65
TUNNEL_CLIENT_ENDPOINT = 66
TUNNEL_SERVER_ENDPOINT = 67
TUNNEL_PASSWORD = 69
TUNNEL_ASSIGNMENT_ID = 82
TUNNEL_PREFERENCE = 83
TUNNEL_CLIENT_AUTH_ID = 90
TUNNEL_SERVER_AUTH_ID = 91
TUNNEL_TYPE_L2TP = 3
MEDIUM_IPV4 = 1
MEDIUM_IPV6 = 2
VENDOR_CISCO = 9
CISCO_AVPAIR = 1

_TAGGED_INTEGERS = frozenset({TUNNEL_TYPE, TUNNEL_MEDIUM_TYPE, TUNNEL_PREFERENCE})
_TAGGED_STRINGS = frozenset(
    {
        TUNNEL_CLIENT_ENDPOINT,
        TUNNEL_SERVER_ENDPOINT,
        TUNNEL_ASSIGNMENT_ID,
        TUNNEL_CLIENT_AUTH_ID,
        TUNNEL_SERVER_AUTH_ID,
    }
)
DEFAULT_PREFERENCE = 1
"""Preference of a tunnel whose description gives none (lower is better, RFC 2868 3.8)."""


class RouteKind(enum.StrEnum):
    """What a subscriber is forwarded by."""

    DNIS = "dnis"
    """The called number (the ICRQ's Called Number AVP)."""
    DOMAIN = "domain"
    """The part of the user name after the last ``@``, lower case."""


@attrs.frozen
class RouteKey:
    """One thing a subscriber can be routed by."""

    kind: RouteKind
    """DNIS or domain."""
    value: str
    """The called number, or the domain (lower case)."""

    @property
    def lookup_name(self) -> str:
        """The RADIUS User-Name of the tunnel lookup: ``dnis:614629`` as in the reference
        trace, or the bare domain."""
        return f"dnis:{self.value}" if self.kind is RouteKind.DNIS else self.value

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.value}"


def domain_of(username: str) -> str | None:
    """The domain of ``user@domain`` (after the last ``@``, lower case), None without one."""
    _, at, domain = username.rpartition("@")
    return domain.lower() if at and domain else None


def route_keys(
    username: str, called_number: str | None, search_order: Sequence[RouteKind | str]
) -> list[RouteKey]:
    """The keys to try for one subscriber, in ``search_order``; a key the subscriber has no
    value for (no called number, no domain) is left out."""
    keys: list[RouteKey] = []
    for kind in search_order:
        kind = RouteKind(kind)
        if kind is RouteKind.DNIS and called_number:
            keys.append(RouteKey(kind, called_number))
        elif kind is RouteKind.DOMAIN:
            domain = domain_of(username)
            if domain:
                keys.append(RouteKey(kind, domain))
    return keys


@attrs.frozen
class LnsCandidate:
    """One LNS that may carry the subscriber, and how to talk to it."""

    host: str
    """The LNS's IP address (canonical text)."""
    port: int = L2TP_PORT
    """Its UDP port."""
    preference: int = DEFAULT_PREFERENCE
    """Lower is better; equal preferences share the load."""
    secret: Secret | None = attrs.field(default=None, eq=False)
    """Tunnel secret; None: the LAC's default (``[l2tp] secret``)."""
    hostname: str | None = None
    """The Host Name we present (Tunnel-Client-Auth-ID, ``vpdn:tunnel-id``); None: ours."""
    assignment_id: str = ""
    """Tunnel-Assignment-ID: calls with the same id to the same LNS share a tunnel, different
    ids get different tunnels (RFC 2868 3.7)."""
    server_name: str | None = None
    """Tunnel-Server-Auth-ID: the Host Name the LNS must present; None: any."""
    source: str = "route"
    """Where it came from (``route``, ``radius``, ``cisco``, ``lns``), for logs."""

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``."""
        return (self.host, self.port)

    @property
    def tunnel_key(self) -> tuple[str, int, str | None, str, bytes | None]:
        """Calls whose candidates have the same key may share one tunnel."""
        secret = self.secret.reveal() if self.secret is not None else None
        return (self.host, self.port, self.hostname, self.assignment_id, secret)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port} (preference {self.preference}, {self.source})"


# -- static rules ------------------------------------------------------------------------------


class StaticRoutes:
    """``[[lac.route]]`` rules indexed by key: a lookup is one dict access."""

    def __init__(self, routes: Iterable[tuple[RouteKey, LnsCandidate]] = ()) -> None:
        self._by_key: dict[RouteKey, list[LnsCandidate]] = {}
        for key, candidate in routes:
            self._by_key.setdefault(key, []).append(candidate)

    def lookup(self, key: RouteKey) -> tuple[LnsCandidate, ...]:
        """The LNSs written for ``key`` (empty: no rule)."""
        return tuple(self._by_key.get(key, ()))

    def __len__(self) -> int:
        return len(self._by_key)


# -- ordering ----------------------------------------------------------------------------------


class LnsHealth:
    """LNSs that lately did not answer an SCCRQ: tried last for ``dead_time`` seconds, so one
    dead LNS does not cost every call a setup timeout (they are still tried when nothing
    else answers)."""

    def __init__(self, dead_time: float) -> None:
        self.dead_time = dead_time
        """Seconds an LNS stays marked after a failed dial."""
        self._dead_until: dict[tuple[str, int], float] = {}

    def mark_dead(self, address: tuple[str, int], now: float) -> None:
        """``address`` failed to answer at ``now``."""
        self._dead_until[address] = now + self.dead_time

    def mark_alive(self, address: tuple[str, int]) -> None:
        """``address`` answered."""
        self._dead_until.pop(address, None)

    def is_dead(self, address: tuple[str, int], now: float) -> bool:
        """True while ``address`` is marked."""
        until = self._dead_until.get(address)
        if until is None:
            return False
        if until <= now:
            del self._dead_until[address]
            return False
        return True


class KeptAnswers(Generic[T]):
    """RADIUS tunnel answers kept while a tunnel opened for one lives, as Cisco's LAC does: the
    next subscriber of the same DNIS or domain is not looked up again (but still spread over
    the answer's LNSs). An answer is also kept while calls are dialling on it, so subscribers
    arriving during the dial (or its failover) are not looked up either; it is forgotten when
    neither is left, or when the last tunnel opened for it closes."""

    def __init__(self) -> None:
        self._answers: dict[RouteKey, tuple[LnsCandidate, ...]] = {}
        self._tunnels: dict[RouteKey, set[T]] = {}
        self._keys: dict[T, set[RouteKey]] = {}
        self._dialling: Counter[RouteKey] = Counter()
        """Calls dialling on a kept answer that has no tunnel yet."""

    def get(self, key: RouteKey) -> tuple[LnsCandidate, ...] | None:
        """The answer kept for ``key``, if any."""
        return self._answers.get(key)

    def dial_started(self, key: RouteKey, found: tuple[LnsCandidate, ...]) -> None:
        """A call dials on ``found``, the answer for ``key``: keep it from now on."""
        self._answers.setdefault(key, found)
        self._dialling[key] += 1

    def dial_ended(self, key: RouteKey) -> None:
        """That call has its tunnel, or none came of it: forget an answer nothing uses."""
        self._dialling[key] -= 1
        if not self._dialling[key]:
            del self._dialling[key]
            if key not in self._tunnels:
                self._answers.pop(key, None)

    def tunnel_up(self, key: RouteKey, found: tuple[LnsCandidate, ...], tunnel: T) -> None:
        """``tunnel`` was opened for ``found``, the answer for ``key``: keep it while it lives."""
        self._answers[key] = found
        self._tunnels.setdefault(key, set()).add(tunnel)
        self._keys.setdefault(tunnel, set()).add(key)

    def tunnel_closed(self, tunnel: T) -> None:
        """``tunnel`` closed: forget the answers it was the last tunnel of."""
        for key in self._keys.pop(tunnel, ()):
            live = self._tunnels.get(key)
            if live is not None:
                live.discard(tunnel)
                if not live:
                    del self._tunnels[key]
                    self._answers.pop(key, None)


def order_candidates(
    candidates: Iterable[LnsCandidate],
    *,
    now: float,
    health: LnsHealth | None = None,
    load: Callable[[LnsCandidate], int] | None = None,
    rng: random.Random | None = None,
) -> list[LnsCandidate]:
    """The order to try ``candidates`` in for one call.

    Live before recently dead; then the lower preference; among equals the least loaded
    (``load``: the calls the LAC has on that LNS), then at random (``rng``), so equal
    preferences share the calls. Duplicates (same tunnel key) are kept once, the best.
    """
    rng = rng if rng is not None else random.Random(0)
    seen: set[tuple[str, int, str | None, str, bytes | None]] = set()
    unique: list[LnsCandidate] = []
    for candidate in sorted(candidates, key=lambda c: c.preference):
        if candidate.tunnel_key not in seen:
            seen.add(candidate.tunnel_key)
            unique.append(candidate)
    keyed = [
        (
            health is not None and health.is_dead(c.address, now),
            c.preference,
            load(c) if load is not None else 0,
            rng.random(),
            c,
        )
        for c in unique
    ]
    keyed.sort(key=lambda k: k[:4])
    return [k[4] for k in keyed]


# -- RADIUS replies ----------------------------------------------------------------------------


class ReplyError(ValueError):
    """A malformed RADIUS attribute (the message says which)."""


def parse_attributes(raw: bytes) -> list[tuple[int, bytes]]:
    """The attributes of a RADIUS packet body (everything after the 20-octet header), in
    wire order, as ``(type, value)``.

    Raises:
        ReplyError: an attribute runs past the end or is shorter than its header.
    """
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(raw):
        if pos + 2 > len(raw):
            raise ReplyError(f"truncated attribute header at offset {pos}")
        kind, length = raw[pos], raw[pos + 1]
        if length < 2 or pos + length > len(raw):
            raise ReplyError(f"attribute {kind} at offset {pos} has a bad length {length}")
        out.append((kind, raw[pos + 2 : pos + length]))
        pos += length
    return out


def _salt_key(secret: bytes, authenticator: bytes, salt: bytes) -> bytes:
    """RFC 2868 3.5: b(1) = MD5(S + R + A), the first key of the chain."""
    return hashlib.md5(secret + authenticator + salt, usedforsecurity=False).digest()


def decrypt_tunnel_password(value: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """RFC 2868 3.5: the password from a Tunnel-Password value (Salt + String, the tag
    already removed), decrypted with the RADIUS ``secret`` and the Request Authenticator of
    the Access-Request the reply answers.

    Raises:
        ReplyError: wrong length, or a Data-Length longer than the data.
    """
    if len(value) < 18 or (len(value) - 2) % 16:
        raise ReplyError(f"Tunnel-Password: {len(value)} octets is not a salt and 16n octets")
    salt, cipher = value[:2], value[2:]
    plain = md5_chain(cipher, secret, _salt_key(secret, authenticator, salt), decrypt=True)
    length = plain[0]
    if length > len(plain) - 1:
        raise ReplyError("Tunnel-Password: Data-Length exceeds the data (wrong secret?)")
    return bytes(plain[1 : 1 + length])


def encrypt_tunnel_password(
    password: bytes, secret: bytes, authenticator: bytes, salt: bytes
) -> bytes:
    """RFC 2868 3.5 the other way: Salt + String for ``password`` (what a RADIUS server
    sends; for tests and tools). ``salt`` is two octets, its top bit set.

    Raises:
        ValueError: a salt that is not two octets with the top bit set, or a password
            longer than 239 octets (it would not fit an attribute).
    """
    if len(salt) != 2 or not salt[0] & 0x80:
        raise ValueError("the salt must be two octets with the most significant bit set")
    if len(password) > 239:
        raise ValueError("a Tunnel-Password holds at most 239 octets")
    plain = bytes([len(password)]) + password
    plain += bytes(-len(plain) % 16)
    return salt + md5_chain(plain, secret, _salt_key(secret, authenticator, salt))


@attrs.frozen
class ReplyTunnels:
    """What one reply says about tunnels."""

    candidates: tuple[LnsCandidate, ...] = ()
    """The LNSs it names, unordered."""
    problems: tuple[str, ...] = ()
    """Tunnel descriptions that were skipped, and why (for a log line; no secrets)."""


def _split_tag(kind: int, value: bytes) -> tuple[int, bytes]:
    """RFC 2868 3: the tag of a tagged attribute and the value without it."""
    if kind in _TAGGED_INTEGERS:
        if len(value) != 4:
            raise ReplyError(f"attribute {kind}: {len(value)} octets, want 4")
        return value[0], b"\x00" + value[1:]
    if kind == TUNNEL_PASSWORD:
        # Always tagged; pyrad 2.5.4 and older sent it without one (salt + 16n octets).
        if len(value) % 16 == 2:
            return 0, value
        if not value:
            raise ReplyError("empty Tunnel-Password")
        return value[0], value[1:]
    if value and value[0] <= 0x1F:
        return value[0], value[1:]
    return 0, value


def _endpoints(text: str, medium: int | None) -> list[tuple[str, int]]:
    """Tunnel-Server-Endpoint: IP literals (RFC 2868 3.3), a port after ``:`` tolerated
    (``[v6]:port`` for IPv6); several separated by spaces or commas."""
    out: list[tuple[str, int]] = []
    for word in text.replace(",", " ").split():
        host, port = word, L2TP_PORT
        if word.startswith("["):
            host, _, rest = word[1:].partition("]")
            if rest:
                if not rest.startswith(":") or not rest[1:].isdigit():
                    raise ReplyError(f"bad endpoint {word!r}")
                port = int(rest[1:])
        elif word.count(":") == 1:
            host, _, port_text = word.partition(":")
            if not port_text.isdigit():
                raise ReplyError(f"bad endpoint {word!r}")
            port = int(port_text)
        try:
            address: IPv4Address | IPv6Address = ip_address(host)
        except ValueError:
            raise ReplyError(
                f"endpoint {word!r} is not an IP address (host names are not resolved)"
            ) from None
        if not 0 < port < 65536 or address.is_unspecified:
            raise ReplyError(f"endpoint {word!r} is not reachable")
        if medium == MEDIUM_IPV4 and address.version != 4:
            raise ReplyError(f"endpoint {word!r} is not IPv4 as Tunnel-Medium-Type says")
        if medium == MEDIUM_IPV6 and address.version != 6:
            raise ReplyError(f"endpoint {word!r} is not IPv6 as Tunnel-Medium-Type says")
        out.append((str(address), port))
    if not out:
        raise ReplyError("empty Tunnel-Server-Endpoint")
    return out


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _rfc2868(
    attributes: Sequence[tuple[int, bytes]], secret: bytes, authenticator: bytes
) -> tuple[list[LnsCandidate], list[str]]:
    groups: dict[int, dict[int, bytes]] = {}
    problems: list[str] = []
    for kind, value in attributes:
        if kind not in _TAGGED_INTEGERS and kind not in _TAGGED_STRINGS and kind != TUNNEL_PASSWORD:
            continue
        try:
            tag, plain = _split_tag(kind, value)
        except ReplyError as exc:
            problems.append(str(exc))
            continue
        groups.setdefault(tag, {}).setdefault(kind, plain)  # the first of each in a group
    # Untagged values (tag 0) apply to every tagged tunnel that lacks them.
    defaults = groups.get(0, {}) if len(groups) > 1 else {}
    candidates: list[LnsCandidate] = []
    for tag, own in sorted(groups.items()):
        if tag == 0 and len(groups) > 1 and TUNNEL_SERVER_ENDPOINT not in own:
            continue  # only defaults
        attrs_ = {**defaults, **own} if tag else own
        label = f"tunnel tag {tag}"
        try:
            candidates.extend(_one_tunnel(attrs_, secret, authenticator))
        except ReplyError as exc:
            problems.append(f"{label}: {exc}")
    return candidates, problems


def _integer(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _one_tunnel(
    values: Mapping[int, bytes], secret: bytes, authenticator: bytes
) -> list[LnsCandidate]:
    if TUNNEL_TYPE not in values:
        raise ReplyError("no Tunnel-Type")
    kind = _integer(values[TUNNEL_TYPE])
    if kind != TUNNEL_TYPE_L2TP:
        raise ReplyError(f"Tunnel-Type {kind} is not L2TP (3)")
    medium = _integer(values[TUNNEL_MEDIUM_TYPE]) if TUNNEL_MEDIUM_TYPE in values else None
    if medium is not None and medium not in (MEDIUM_IPV4, MEDIUM_IPV6):
        raise ReplyError(f"Tunnel-Medium-Type {medium} is not IPv4 (1) or IPv6 (2)")
    if TUNNEL_SERVER_ENDPOINT not in values:
        raise ReplyError("no Tunnel-Server-Endpoint")
    endpoints = _endpoints(_text(values[TUNNEL_SERVER_ENDPOINT]), medium)
    tunnel_secret = None
    if TUNNEL_PASSWORD in values:
        password = decrypt_tunnel_password(values[TUNNEL_PASSWORD], secret, authenticator)
        tunnel_secret = Secret(password) if password else None
    preference = DEFAULT_PREFERENCE
    if TUNNEL_PREFERENCE in values:
        preference = _integer(values[TUNNEL_PREFERENCE])
    hostname = _text(values[TUNNEL_CLIENT_AUTH_ID]) if TUNNEL_CLIENT_AUTH_ID in values else None
    server = _text(values[TUNNEL_SERVER_AUTH_ID]) if TUNNEL_SERVER_AUTH_ID in values else None
    assignment = _text(values.get(TUNNEL_ASSIGNMENT_ID, b""))
    return [
        LnsCandidate(
            host=host,
            port=port,
            preference=preference,
            secret=tunnel_secret,
            hostname=hostname or None,
            assignment_id=assignment,
            server_name=server or None,
            source="radius",
        )
        for host, port in endpoints
    ]


def cisco_avpairs(attributes: Sequence[tuple[int, bytes]]) -> list[str]:
    """The Cisco-AVPair strings (vendor 9, type 1) of a reply, in order."""
    out: list[str] = []
    for kind, value in attributes:
        if kind != VENDOR_SPECIFIC or len(value) < 4:
            continue
        if int.from_bytes(value[:4], "big") != VENDOR_CISCO:
            continue
        pos, data = 0, value[4:]
        while pos + 2 <= len(data):
            sub, length = data[pos], data[pos + 1]
            if length < 2 or pos + length > len(data):
                break
            if sub == CISCO_AVPAIR:
                out.append(_text(data[pos + 2 : pos + length]))
            pos += length
    return out


def _cisco(pairs: Sequence[str]) -> tuple[list[LnsCandidate], list[str]]:
    vpdn: dict[str, str] = {}
    for pair in pairs:
        name, _, rest = pair.partition(":")
        if name.strip().lower() != "vpdn":
            continue
        # "key=value" (mandatory) or "key*value" (optional): the first of the two separators
        cut = min((i for i in (rest.find("="), rest.find("*")) if i >= 0), default=-1)
        if cut < 0:
            continue
        vpdn.setdefault(rest[:cut].strip().lower(), rest[cut + 1 :].strip())
    if "ip-addresses" not in vpdn:
        return [], []
    tunnel_type = vpdn.get("tunnel-type", "l2tp").lower()
    if tunnel_type != "l2tp":
        return [], [f"Cisco vpdn:tunnel-type={tunnel_type} is not l2tp"]
    password = vpdn.get("l2tp-tunnel-password", "")
    secret = Secret(password.encode()) if password else None
    hostname = vpdn.get("tunnel-id") or None
    out: list[LnsCandidate] = []
    problems: list[str] = []
    for rank, group in enumerate(vpdn["ip-addresses"].split("/"), start=1):
        try:
            endpoints = _endpoints(group, None) if group.strip() else []
        except ReplyError as exc:
            problems.append(f"Cisco vpdn:ip-addresses: {exc}")
            continue
        out.extend(
            LnsCandidate(
                host=host,
                port=port,
                preference=rank,
                secret=secret,
                hostname=hostname,
                source="cisco",
            )
            for host, port in endpoints
        )
    return out, problems


def candidates_from_reply(
    attributes: Sequence[tuple[int, bytes]], *, secret: bytes, request_authenticator: bytes
) -> ReplyTunnels:
    """The LNSs an Access-Accept names (RFC 2868 attributes, else Cisco-AVPairs).

    Args:
        attributes: the reply's attributes in wire order (:func:`parse_attributes`).
        secret: the RADIUS secret shared with the server that answered.
        request_authenticator: the Request Authenticator of our Access-Request (the
            Tunnel-Password is encrypted with it).
    """
    candidates, problems = _rfc2868(attributes, secret, request_authenticator)
    if not candidates:
        cisco, more = _cisco(cisco_avpairs(attributes))
        candidates.extend(cisco)
        problems.extend(more)
    return ReplyTunnels(tuple(candidates), tuple(problems))
