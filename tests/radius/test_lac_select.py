"""LAC tunnel selection, sans-IO: RFC 2868 replies (with a real FreeRADIUS's salted
Tunnel-Password), Cisco-AVPairs, static rules, ordering, health."""

from __future__ import annotations

import contextlib
import hashlib
import random

import pytest

from kl2tp.lac.selection import (
    KeptAnswers,
    LnsCandidate,
    LnsHealth,
    ReplyError,
    RouteKey,
    RouteKind,
    StaticRoutes,
    candidates_from_reply,
    cisco_avpairs,
    decrypt_tunnel_password,
    domain_of,
    encrypt_tunnel_password,
    order_candidates,
    parse_attributes,
    route_keys,
)
from kl2tp.values import Secret

# An Access-Accept FreeRADIUS 3.2 sent (captured on this machine) for User-Name
# "dnis:614629" from an Access-Request whose Request Authenticator was 10 11 .. 1f, shared
# secret "testing123". Its users entry:
#   Tunnel-Type:1 = L2TP, Tunnel-Medium-Type:1 = IPv4,
#   Tunnel-Server-Endpoint:1 = "127.0.0.1:17011",
#   Tunnel-Password:1 = "a tunnel secret that is longer than sixteen octets",
#   Tunnel-Preference:1 = 1, Tunnel-Client-Auth-ID:1 = "lac-one",
#   Tunnel-Type:2 = L2TP, Tunnel-Medium-Type:2 = IPv4,
#   Tunnel-Server-Endpoint:2 = "127.0.0.1:17012",
#   Tunnel-Password:2 = "hello", Tunnel-Preference:2 = 2, Tunnel-Assignment-ID:2 = "backup"
# FreeRADIUS chose the salts; the encryption is its C code, not ours.
FREERADIUS_ACCEPT = bytes.fromhex(
    "020700cf4de7b6acb46c4a96b0b9cf4efdc0941b0606000000054006010000034106010000014312013132"
    "372e302e302e313a313730313145450185f6fa004540bcec9339e77ad2263fdb2c1205c3e2e2f84ffec834"
    "b4f3d2f2a63a74f21a1e6a0b387961e1069bc2e3c3b15a11745381ef8b271d5f3ea7955551ffee53060100"
    "00015a0a016c61632d6f6e654006020000034106020000014312023132372e302e302e313a313730313245"
    "15028f10342dda9115f1186574c78154107b079d5306020000025209026261636b7570"
)
REQUEST_AUTHENTICATOR = bytes(range(0x10, 0x20))
RADIUS_SECRET = b"testing123"


def _tunnel_password(packet: bytes, tag: int) -> bytes:
    for kind, value in parse_attributes(packet[20:]):
        if kind == 69 and value[0] == tag:
            return value[1:]
    raise AssertionError(f"no Tunnel-Password:{tag}")


def test_freeradius_salted_password_decrypts():
    long = _tunnel_password(FREERADIUS_ACCEPT, 1)
    assert len(long) == 2 + 64  # salt + 4 blocks: a multi-block chain is exercised
    assert long[0] & 0x80  # RFC 2868 3.5: the salt's top bit is set
    assert (
        decrypt_tunnel_password(long, RADIUS_SECRET, REQUEST_AUTHENTICATOR)
        == b"a tunnel secret that is longer than sixteen octets"
    )
    short = _tunnel_password(FREERADIUS_ACCEPT, 2)
    assert decrypt_tunnel_password(short, RADIUS_SECRET, REQUEST_AUTHENTICATOR) == b"hello"


def test_wrong_secret_or_authenticator_does_not_give_the_password():
    value = _tunnel_password(FREERADIUS_ACCEPT, 2)
    for secret, auth in ((b"wrong", REQUEST_AUTHENTICATOR), (RADIUS_SECRET, bytes(16))):
        with contextlib.suppress(ReplyError):  # a garbage Data-Length is caught too
            assert decrypt_tunnel_password(value, secret, auth) != b"hello"


def test_salt_decryption_by_hand():
    """RFC 2868 3.5 written out step by step, independently of the module's loop."""
    secret, auth, salt = b"s3cret", bytes(range(16)), b"\x81\x02"
    password = b"p" * 20  # 1 + 20 octets: two blocks
    plain = bytes([20]) + password + bytes(11)
    b1 = hashlib.md5(secret + auth + salt).digest()
    c1 = bytes(p ^ b for p, b in zip(plain[:16], b1, strict=True))
    b2 = hashlib.md5(secret + c1).digest()
    c2 = bytes(p ^ b for p, b in zip(plain[16:], b2, strict=True))
    wire = salt + c1 + c2
    assert decrypt_tunnel_password(wire, secret, auth) == password
    assert encrypt_tunnel_password(password, secret, auth, salt) == wire


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 239])
def test_encrypt_decrypt_round_trip(size):
    rng = random.Random(size)
    password = bytes(rng.randrange(256) for _ in range(size))
    auth = bytes(rng.randrange(256) for _ in range(16))
    wire = encrypt_tunnel_password(password, b"k", auth, b"\x80\x01")
    assert (len(wire) - 2) % 16 == 0
    assert decrypt_tunnel_password(wire, b"k", auth) == password


def test_bad_lengths_raise():
    with pytest.raises(ReplyError):
        decrypt_tunnel_password(b"\x80\x01" + bytes(15), b"k", bytes(16))
    with pytest.raises(ValueError):
        encrypt_tunnel_password(b"x", b"k", bytes(16), b"\x01\x02")  # top bit clear
    with pytest.raises(ValueError):
        encrypt_tunnel_password(b"x" * 240, b"k", bytes(16), b"\x81\x02")


def test_freeradius_reply_to_candidates():
    tunnels = candidates_from_reply(
        parse_attributes(FREERADIUS_ACCEPT[20:]),
        secret=RADIUS_SECRET,
        request_authenticator=REQUEST_AUTHENTICATOR,
    )
    assert tunnels.problems == ()
    one, two = sorted(tunnels.candidates, key=lambda c: c.preference)
    assert one.address == ("127.0.0.1", 17011)
    assert one.preference == 1
    assert one.hostname == "lac-one"
    assert one.secret is not None
    assert one.secret.reveal() == b"a tunnel secret that is longer than sixteen octets"
    assert two.address == ("127.0.0.1", 17012)
    assert two.preference == 2
    assert two.assignment_id == "backup"
    assert two.hostname is None
    assert two.secret is not None and two.secret.reveal() == b"hello"
    assert "hello" not in repr(two) and "hello" not in str(two)


def _tagged(kind: int, tag: int, value: bytes) -> tuple[int, bytes]:
    return kind, bytes([tag]) + value


def _int(kind: int, tag: int, value: int) -> tuple[int, bytes]:
    return kind, bytes([tag]) + value.to_bytes(3, "big")


def test_untagged_defaults_and_rejected_groups():
    auth = bytes(16)
    attrs_ = [
        _int(64, 0, 3),  # Tunnel-Type L2TP for every tunnel
        _tagged(67, 1, b"192.0.2.1"),
        _int(83, 1, 5),
        _tagged(67, 2, b"192.0.2.2 192.0.2.3"),  # two endpoints, one preference
        _int(64, 3, 1),  # PPTP: skipped
        _tagged(67, 3, b"192.0.2.9"),
        _tagged(67, 4, b"lns.example.net"),  # host names are not resolved
        _int(65, 5, 2),  # IPv6 medium with an IPv4 endpoint
        _tagged(67, 5, b"192.0.2.5"),
        (69, bytes([6]) + encrypt_tunnel_password(b"x", b"k", auth, b"\x80\x00")),
        _tagged(67, 6, b"[2001:db8::1]:1702"),
    ]
    tunnels = candidates_from_reply(attrs_, secret=b"k", request_authenticator=auth)
    got = {(c.host, c.port, c.preference) for c in tunnels.candidates}
    assert got == {
        ("192.0.2.1", 1701, 5),
        ("192.0.2.2", 1701, 1),
        ("192.0.2.3", 1701, 1),
        ("2001:db8::1", 1702, 1),
    }
    six = next(c for c in tunnels.candidates if c.host == "2001:db8::1")
    assert six.secret is not None and six.secret.reveal() == b"x"
    assert len(tunnels.problems) == 3
    assert any("not L2TP" in p for p in tunnels.problems)
    assert any("host names" in p for p in tunnels.problems)
    assert any("IPv6" in p for p in tunnels.problems)


def test_untagged_single_tunnel_and_missing_type():
    only = [(64, b"\x00\x00\x00\x03"), (67, b"198.51.100.7")]
    tunnels = candidates_from_reply(only, secret=b"k", request_authenticator=bytes(16))
    assert [c.address for c in tunnels.candidates] == [("198.51.100.7", 1701)]
    none = candidates_from_reply(
        [(67, b"198.51.100.7")], secret=b"k", request_authenticator=bytes(16)
    )
    assert none.candidates == () and none.problems == ("tunnel tag 0: no Tunnel-Type",)


def _cisco(*pairs: str) -> list[tuple[int, bytes]]:
    out = []
    for pair in pairs:
        sub = bytes([1, len(pair) + 2]) + pair.encode()
        out.append((26, (9).to_bytes(4, "big") + sub))
    return out


def test_cisco_avpairs_as_in_the_trace():
    reply = _cisco(
        "vpdn:tunnel-type=l2tp",
        "vpdn:tunnel-id=hgw",
        "vpdn:ip-addresses=10.51.6.82",
        "vpdn:l2tp-tunnel-password=hello",
    )
    assert cisco_avpairs(reply)[1] == "vpdn:tunnel-id=hgw"
    tunnels = candidates_from_reply(reply, secret=b"x", request_authenticator=bytes(16))
    (lns,) = tunnels.candidates
    assert lns.address == ("10.51.6.82", 1701)
    assert lns.hostname == "hgw"
    assert lns.secret is not None and lns.secret.reveal() == b"hello"
    assert lns.source == "cisco"


def test_cisco_ip_address_groups_and_other_tunnel_types():
    reply = _cisco("vpdn:ip-addresses=10.0.0.1 10.0.0.2,10.0.0.3/10.0.0.4", "vpdn:tunnel-type=l2tp")
    prefs = {
        c.host: c.preference
        for c in candidates_from_reply(
            reply, secret=b"", request_authenticator=bytes(16)
        ).candidates
    }
    assert prefs == {"10.0.0.1": 1, "10.0.0.2": 1, "10.0.0.3": 1, "10.0.0.4": 2}
    l2f = candidates_from_reply(
        _cisco("vpdn:tunnel-type=l2f", "vpdn:ip-addresses=10.0.0.1"),
        secret=b"",
        request_authenticator=bytes(16),
    )
    assert l2f.candidates == () and "l2f" in l2f.problems[0]


def test_rfc2868_wins_over_cisco():
    reply = [_int(64, 1, 3), _tagged(67, 1, b"192.0.2.1"), *_cisco("vpdn:ip-addresses=10.0.0.1")]
    tunnels = candidates_from_reply(reply, secret=b"", request_authenticator=bytes(16))
    assert [c.host for c in tunnels.candidates] == ["192.0.2.1"]


def test_parse_attributes_rejects_overruns():
    assert parse_attributes(b"\x01\x03a\x02\x02") == [(1, b"a"), (2, b"")]
    for bad in (b"\x01", b"\x01\x01", b"\x01\x05ab"):
        with pytest.raises(ReplyError):
            parse_attributes(bad)


def test_route_keys_follow_the_search_order():
    assert domain_of("Bob@Example.COM") == "example.com"
    assert domain_of("bob") is None and domain_of("bob@") is None
    keys = route_keys("bob@isp.example", "614629", ["dnis", "domain"])
    assert keys == [RouteKey(RouteKind.DNIS, "614629"), RouteKey(RouteKind.DOMAIN, "isp.example")]
    assert [k.lookup_name for k in keys] == ["dnis:614629", "isp.example"]
    assert route_keys("bob@isp.example", None, ["dnis", "domain"]) == [keys[1]]
    assert route_keys("bob", "614629", ["domain"]) == []


def test_static_routes_index():
    a = LnsCandidate("192.0.2.1", preference=1, secret=Secret(b"s"))
    b = LnsCandidate("192.0.2.2", preference=2)
    routes = StaticRoutes([(RouteKey(RouteKind.DNIS, "1"), a), (RouteKey(RouteKind.DNIS, "1"), b)])
    assert routes.lookup(RouteKey(RouteKind.DNIS, "1")) == (a, b)
    assert routes.lookup(RouteKey(RouteKind.DOMAIN, "1")) == ()


def test_order_preference_then_load_then_dead():
    best1 = LnsCandidate("192.0.2.1", preference=1)
    best2 = LnsCandidate("192.0.2.2", preference=1)
    worse = LnsCandidate("192.0.2.3", preference=2)
    load = {best1.host: 3, best2.host: 1, worse.host: 0}
    order = order_candidates([worse, best1, best2], now=0.0, load=lambda c: load[c.host])
    assert order == [best2, best1, worse]
    health = LnsHealth(dead_time=30.0)
    health.mark_dead(best2.address, now=0.0)
    order = order_candidates(
        [worse, best1, best2], now=10.0, health=health, load=lambda c: load[c.host]
    )
    assert order == [best1, worse, best2]  # the dead one is the last resort
    assert (
        order_candidates(
            [worse, best1, best2], now=31.0, health=health, load=lambda c: load[c.host]
        )[0]
        == best2
    )  # forgiven after dead_time
    health.mark_dead(best1.address, now=40.0)
    health.mark_alive(best1.address)
    assert not health.is_dead(best1.address, 41.0)


def test_equal_preferences_spread_at_random_without_load():
    a, b = LnsCandidate("192.0.2.1"), LnsCandidate("192.0.2.2")
    rng = random.Random(1)
    firsts = {order_candidates([a, b], now=0.0, rng=rng)[0].host for _ in range(50)}
    assert firsts == {a.host, b.host}


def test_duplicates_are_tried_once():
    a = LnsCandidate("192.0.2.1", preference=2)
    again = LnsCandidate("192.0.2.1", preference=1)
    other_tunnel = LnsCandidate("192.0.2.1", preference=1, assignment_id="x")
    order = order_candidates([a, again, other_tunnel], now=0.0)
    assert len(order) == 2 and all(c.preference == 1 for c in order)


# -- config ------------------------------------------------------------------------------------


def _lac(text: str):  # type: ignore[no-untyped-def]
    from kl2tp.config import parse_config

    return parse_config(text, "lac.toml", "lac")


def test_kept_answers_live_while_a_dial_or_a_tunnel_uses_them() -> None:
    key, other = RouteKey(RouteKind.DOMAIN, "isp.example"), RouteKey(RouteKind.DNIS, "100")
    found = (LnsCandidate("192.0.2.1"),)
    kept: KeptAnswers[str] = KeptAnswers()
    kept.dial_started(key, found)
    kept.dial_started(key, found)  # a second subscriber joins the dial
    assert kept.get(key) == found
    kept.dial_ended(key)
    assert kept.get(key) == found  # the first dial still runs
    kept.dial_ended(key)
    assert kept.get(key) is None  # no tunnel came of it
    kept.dial_started(key, found)
    kept.tunnel_up(key, found, "t1")
    kept.tunnel_up(other, found, "t1")
    kept.tunnel_up(key, found, "t2")
    kept.dial_ended(key)
    assert kept.get(key) == found and kept.get(other) == found
    kept.tunnel_closed("t1")
    assert kept.get(key) == found and kept.get(other) is None
    kept.tunnel_closed("t2")
    assert kept.get(key) is None


def test_route_config_keys():
    cfg = _lac(
        '[lac]\nlookup = "radius"\nsearch_order = ["domain"]\nfailover_timeout = 2\n'
        '[[lac.route]]\ndomain = "ISP.Example"\nlns = "192.0.2.1:1702"\nsecret = "s"\n'
        'preference = 3\nhostname = "lac-a"\n'
        '[[lac.route]]\ndnis = "614629"\nlns = "192.0.2.2"\n'
        '[[radius.server]]\naddress = "127.0.0.1"\nsecret = "r"\n'
    )
    one, two = cfg.lac.route
    assert (one.domain, one.lns.sockaddr, one.preference, one.hostname) == (
        "isp.example",
        ("192.0.2.1", 1702),
        3,
        "lac-a",
    )
    assert one.secret is not None and one.secret.reveal() == b"s"
    assert (two.dnis, two.lns.port, two.preference) == ("614629", 1701, 1)
    assert cfg.lac.search_order == ("domain",) and cfg.lac.failover_timeout == 2.0
    assert cfg.lac.selects
    assert not _lac("").lac.selects
    assert _lac("").lac.lookup_password.reveal() == b"cisco"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[[lac.route]]\nlns = "192.0.2.1"\n', "[[lac.route]] #1: needs exactly one"),
        ('[[lac.route]]\ndnis = "1"\ndomain = "d"\nlns = "192.0.2.1"\n', "exactly one"),
        ('[[lac.route]]\ndnis = "1"\n', "[[lac.route]] #1 lns: missing"),
        ('[[lac.route]]\ndnis = "1"\nlns = "0.0.0.0"\n', "[[lac.route]] #1 lns"),
        ('[[lac.route]]\ndnis = "1"\nlns = "192.0.2.1"\npreference = -1\n', "preference"),
        ('[lac]\nsearch_order = ["dnis", "realm"]\n', "[lac] search_order"),
        ('[lac]\nlookup = "ldap"\n', "[lac] lookup"),
        ("[lac]\nfailover_timeout = 0\n", "[lac] failover_timeout"),
    ],
)
def test_route_config_errors_name_the_key(text: str, where: str) -> None:
    from kl2tp.config import ConfigError

    with pytest.raises(ConfigError) as info:
        _lac(text)
    assert where in str(info.value)


def test_radius_lookup_needs_a_server() -> None:
    from kl2tp.config import ConfigError

    with pytest.raises(ConfigError, match=r"\[\[radius.server\]\]: must list"):
        _lac('[lac]\nlookup = "radius"\n')


def test_route_keys_are_lac_only() -> None:
    from kl2tp.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="only valid for kl2tp-lac"):
        parse_config('[[lac.route]]\ndnis = "1"\nlns = "192.0.2.1"\n', "lns.toml", "lns")


def test_selection_core_does_no_io() -> None:
    """kl2tp/lac/selection.py is sans-IO like the protocol cores (tests/test_architecture.py's
    rules: no trio, socket, pyrad, time, os; no clock calls)."""
    import ast
    from pathlib import Path

    from tests.test_architecture import FORBIDDEN_CALLS, FORBIDDEN_MODULES

    path = Path(__file__).resolve().parents[2] / "kl2tp" / "lac" / "selection.py"
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            if isinstance(node, ast.Attribute):
                assert node.attr not in FORBIDDEN_CALLS, f"line {node.lineno}"
            continue
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN_MODULES, f"line {node.lineno}: {name}"
            assert not name.startswith(("kl2tp.daemon", "kl2tp.aaa.radius")), name
