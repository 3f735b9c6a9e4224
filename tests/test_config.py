# ruff: noqa: E501  (the error table reads best one case per line)
"""Configuration: defaults that work, errors that name the file, the key and the problem."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any

import pytest

from kl2tp.aaa.local import load_users
from kl2tp.config import (
    DEFAULTS_DIR,
    Config,
    ConfigError,
    Endpoint,
    Role,
    known_keys,
    load_config,
    load_default,
    parse_config,
)
from kl2tp.values import Secret, split_host_port

ROOT = Path(__file__).resolve().parent.parent
MANPAGE = ROOT / "docs" / "kl2tp.toml.5.md"
EXAMPLES = ROOT / "deploy" / "examples"


def parse(text: str, role: Role = "lns") -> Config:
    return parse_config(text, "lns.toml" if role == "lns" else "lac.toml", role)


def error(text: str, role: Role = "lns") -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, role)
    return str(info.value)


# -- defaults ---------------------------------------------------------------------------------


def test_empty_file_gives_a_loopback_lns() -> None:
    config = parse("")
    assert config.l2tp.listen == Endpoint("127.0.0.1", 1701)
    assert config.l2tp.secret is None
    assert (config.l2tp.hello_interval, config.l2tp.receive_window) == (60.0, 16)
    assert (config.l2tp.retransmit_initial, config.l2tp.retransmit_cap) == (1.0, 8.0)
    assert (config.l2tp.max_retries, config.l2tp.idle_timeout) == (5, 10.0)
    assert config.control.socket == Path("/run/kl2tp/lns.sock")
    assert config.dataplane.kind == "auto"
    assert config.ppp.mru == 1460
    assert config.ppp.local_address not in config.ppp.pool


def test_lac_defaults_differ_where_the_trace_says() -> None:
    config = parse("", "lac")
    assert config.l2tp.listen == Endpoint("0.0.0.0", 0)  # any source port
    assert config.l2tp.idle_timeout == 15.0
    assert config.control.socket == Path("/run/kl2tp/lac.sock")
    assert [str(p.address) for p in config.lac.lns] == ["127.0.0.1:1701"]


def test_embedded_default_lns_and_its_users() -> None:
    config = load_default("lns")
    assert str(config.l2tp.listen) == "127.0.0.1:1701"
    assert config.dataplane.kind == "auto"
    assert config.aaa.backend == "local"
    assert config.aaa.users_file == DEFAULTS_DIR / "users"
    users = load_users(config.aaa.users_file)
    assert users["test"].password.reveal() == b"test"
    assert config.ppp.local_address == IPv4Address("10.255.0.1")
    assert IPv4Address("10.255.0.2") in config.ppp.pool
    assert IPv4Address("10.255.0.1") not in config.ppp.pool


def test_embedded_default_lac_dials_the_default_lns() -> None:
    lns, lac = load_default("lns"), load_default("lac")
    assert lac.lac.lns[0].address == lns.l2tp.listen
    assert lac.subscriber.credentials(7) == ("test", "test")


# -- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "host", "port"),
    [
        ("192.0.2.1:1702", "192.0.2.1", 1702),
        ("192.0.2.1", "192.0.2.1", 1701),
        ("[2001:db8::1]:1701", "2001:db8::1", 1701),
        ("[2001:DB8:0::1]", "2001:db8::1", 1701),
        ("::1", "::1", 1701),
        ("0.0.0.0:0", "0.0.0.0", 0),
    ],
)
def test_listen_address_forms(written: str, host: str, port: int) -> None:
    listen = parse(f'[l2tp]\nlisten = "{written}"').l2tp.listen
    assert (listen.host, listen.port) == (host, port)
    assert listen.ip == ip_address(host)


def test_endpoint_prints_ipv6_in_brackets() -> None:
    assert str(Endpoint("2001:db8::1", 1701)) == "[2001:db8::1]:1701"
    assert Endpoint("192.0.2.1", 1701).sockaddr == ("192.0.2.1", 1701)


def test_lac_lns_entries_with_overrides() -> None:
    config = parse(
        """
        [l2tp]
        hostname = "lac1"
        secret = "hello"
        [[lac.lns]]
        address = "192.0.2.10"
        [[lac.lns]]
        address = "[2001:db8::10]:1799"
        secret = "other"
        hostname = "lac1-v6"
        """,
        "lac",
    )
    first, second = config.lac.lns
    assert (first.host, first.port) == ("192.0.2.10", 1701)
    assert (second.host, second.port) == ("2001:db8::10", 1799)
    assert config.peer_identity(first) == ("lac1", Secret(b"hello"))
    assert config.peer_identity(second) == ("lac1-v6", Secret(b"other"))


def test_allowed_peers() -> None:
    l2tp = parse('[l2tp]\nallowed_peers = ["192.0.2.0/24", "2001:db8::7"]').l2tp
    assert l2tp.peer_allowed(ip_address("192.0.2.200"))
    assert l2tp.peer_allowed(ip_address("2001:db8::7"))
    assert not l2tp.peer_allowed(ip_address("198.51.100.1"))
    assert parse("").l2tp.peer_allowed(ip_address("198.51.100.1"))


def test_ppp_values() -> None:
    ppp = parse(
        """
        [ppp]
        auth = ["mschapv2", "chap"]
        pool = "100.64.0.0/16"
        dns = ["192.0.2.53", "192.0.2.54"]
        ipv6 = true
        """
    ).ppp
    assert ppp.auth == ("mschapv2", "chap")
    assert (ppp.pool.first, ppp.pool.count) == (IPv4Address("100.64.0.1"), 65534)
    assert ppp.dns == (IPv4Address("192.0.2.53"), IPv4Address("192.0.2.54"))
    assert ppp.ipv6 is True
    assert parse("[ppp]\nauth = []").ppp.auth == ()


def test_integer_given_for_a_number_is_a_float() -> None:
    assert parse("[l2tp]\nretransmit_initial = 2\nretransmit_cap = 16").l2tp.retransmit_cap == 16.0


def test_relative_users_file_is_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "lns.toml").write_text('[aaa]\nusers_file = "my-users"\n')
    config = load_config(tmp_path / "lns.toml", "lns")
    assert config.aaa.users_file == tmp_path.resolve() / "my-users"
    absolute = parse('[aaa]\nusers_file = "/srv/users"').aaa.users_file
    assert absolute == Path("/srv/users")


def test_subscriber_templates() -> None:
    sub = parse('[subscriber]\nusername = "u{n}@isp"\npassword = "p{n}"', "lac").subscriber
    assert sub.credentials(42) == ("u42@isp", "p42")


# -- the secret stays secret --------------------------------------------------------------------


def test_secret_never_in_repr_or_str() -> None:
    config = parse(
        '[l2tp]\nsecret = "s3cr3t-hello"\n[[lac.lns]]\naddress = "192.0.2.1"\nsecret = "s3cr3t-2"',
        "lac",
    )
    assert config.l2tp.secret is not None
    assert config.l2tp.secret.reveal() == b"s3cr3t-hello"
    for text in (repr(config), str(config), repr(config.l2tp), f"{config.l2tp.secret}"):
        assert "s3cr3t" not in text
    assert repr(config.l2tp.secret) == "***"


def test_a_secret_of_the_wrong_type_is_not_shown_in_the_error() -> None:
    for value, kind in (("8675309", "a number"), ('["hunter2x"]', "an array")):
        message = error(f"[l2tp]\nsecret = {value}")
        assert "[l2tp] secret" in message and kind in message
        assert "8675309" not in message and "hunter2x" not in message


def test_duplicate_session_and_setup_timeout_are_checked() -> None:
    assert parse('[aaa]\nduplicate_session = "replace"').aaa.duplicate_session == "replace"
    assert parse("").aaa.duplicate_session == "refuse"
    assert "[aaa] duplicate_session" in error('[aaa]\nduplicate_session = "kick"')
    assert parse("[ppp]\nsetup_timeout = 5").ppp.setup_timeout == 5.0
    assert "[ppp] setup_timeout" in error("[ppp]\nsetup_timeout = -1")
    assert parse("").ppp.max_restarts == 16
    assert "[ppp] max_restarts" in error("[ppp]\nmax_restarts = -1")
    assert "[ppp] max_restarts" in error("[ppp]\nmax_restarts = 2", "lac")


def test_users_passwords_never_in_repr() -> None:
    users = load_users(EXAMPLES / "users")
    assert "correct horse" not in repr(users)
    assert users["alice"].password.reveal() == b"correct horse"


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "role", "message"),
    [
        # the brief's own example
        ('[l2tp]\nhello_interval = "x"', "lns", 'lns.toml: [l2tp] hello_interval: must be a number >= 0, got "x"'),
        # wrong types
        ("[l2tp]\nreceive_window = true", "lns", "lns.toml: [l2tp] receive_window: must be an integer 1..65535, got true"),
        ("[l2tp]\nhide_avps = 1", "lns", "lns.toml: [l2tp] hide_avps: must be true or false, got 1"),
        ("[l2tp]\nhostname = 7", "lns", "lns.toml: [l2tp] hostname: must be a string, got 7"),
        ('[ppp]\ndns = "192.0.2.1"', "lns", 'lns.toml: [ppp] dns: must be a list, got "192.0.2.1"'),
        ("l2tp = 5", "lns", "lns.toml: l2tp: must be a table ([l2tp]), got 5"),
        # out of range
        ("[l2tp]\nreceive_window = 0", "lns", "lns.toml: [l2tp] receive_window: must be an integer 1..65535, got 0"),
        ("[l2tp]\nreceive_window = 65536", "lns", "lns.toml: [l2tp] receive_window: must be an integer 1..65535, got 65536"),
        ("[l2tp]\nretransmit_initial = 0", "lns", "lns.toml: [l2tp] retransmit_initial: must be a number > 0, got 0"),
        ("[l2tp]\nhello_interval = -1.5", "lns", "lns.toml: [l2tp] hello_interval: must be a number >= 0, got -1.5"),
        ("[l2tp]\nhello_interval = nan", "lns", "lns.toml: [l2tp] hello_interval: must be a number >= 0, got nan"),
        ("[l2tp]\nretransmit_cap = 0.5", "lns", "lns.toml: [l2tp] retransmit_cap: must be >= retransmit_initial (1), got 0.5"),
        ("[ppp]\nmru = 64", "lns", "lns.toml: [ppp] mru: must be an integer 128..65535, got 64"),
        ('[ppp]\ndns = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]', "lns", "lns.toml: [ppp] dns: must have at most 2 entries, got 3"),
        # unknown keys and sections, with a suggestion
        ("[l2tp]\nhelo_interval = 3", "lns", 'lns.toml: [l2tp] helo_interval: unknown key (did you mean "hello_interval"?)'),
        ('[ppp]\npol = "10.0.0.0/24"', "lns", 'lns.toml: [ppp] pol: unknown key (did you mean "pool"?)'),
        ("[l2tp]\nzzz = 1", "lns", "lns.toml: [l2tp] zzz: unknown key"),
        ("[radius]\nserver = 1", "lns", "lns.toml: [radius] server: must be an array of tables ([[radius.server]])"),
        ("[[pool]]\nname = \"a\"", "lns", "lns.toml: [[pool]] #1 range: missing"),
        ("[[pool]]\nname = \"a\"\nrange = \"10.255.0.9/32\"", "lns", "lns.toml: [[pool]] #1 range: overlaps [ppp] pool (10.255.0.2-10.255.0.254)"),
        ("[aaa]\nbackend = \"radius\"", "lns", "lns.toml: [[radius.server]]: must list at least one server for [aaa] backend = \"radius\""),
        ('hostname = "x"', "lns", "lns.toml: hostname: key outside any section (it belongs in [l2tp])"),
        ("[dataplan]\nkind = 'null'", "lns", 'lns.toml: [dataplan]: unknown section (did you mean "dataplane"?)'),
        ('[[lac.lns]]\naddress = "192.0.2.1"\nscret = "x"', "lac", 'lac.toml: [[lac.lns]] #1 scret: unknown key (did you mean "secret"?)'),
        # keys of the other daemon
        ('[subscriber]\nusername = "u"', "lns", "lns.toml: [subscriber]: section only valid for kl2tp-lac"),
        ('[aaa]\nbackend = "local"', "lac", "lac.toml: [aaa]: section only valid for kl2tp-lns"),
        ('[l2tp]\nallowed_peers = ["192.0.2.1"]', "lac", "lac.toml: [l2tp] allowed_peers: only valid for kl2tp-lns"),
        # bad addresses
        ('[l2tp]\nlisten = "192.0.2.1:99999"', "lns", 'lns.toml: [l2tp] listen: port must be 0..65535, got "192.0.2.1:99999"'),
        ('[l2tp]\nlisten = "lns.example.net:1701"', "lns", 'lns.toml: [l2tp] listen: must be an IP address with an optional port, got "lns.example.net:1701"'),
        ('[l2tp]\nlisten = "[2001:db8::1:1701"', "lns", 'lns.toml: [l2tp] listen: must be "ADDR:PORT" or "[IPV6]:PORT", got "[2001:db8::1:1701"'),
        ('[ppp]\nlocal_address = "10.0.0.256"', "lns", 'lns.toml: [ppp] local_address: must be an IPv4 address, got "10.0.0.256"'),
        ('[ppp]\ndns = ["192.0.2.1", "x"]', "lns", 'lns.toml: [ppp] dns: entry 2: must be an IPv4 address, got "x"'),
        ('[[lac.lns]]\naddress = "0.0.0.0:1701"', "lac", 'lac.toml: [[lac.lns]] #1 address: must name a reachable address and a non-zero port, got "0.0.0.0:1701"'),
        ('[[lac.lns]]\nsecret = "x"', "lac", "lac.toml: [[lac.lns]] #1 address: missing"),
        # bad prefixes and pools
        ('[l2tp]\nallowed_peers = ["192.0.2.1/24"]', "lns", "lns.toml: [l2tp] allowed_peers: entry 1: 192.0.2.1/24 has host bits set"),
        ('[l2tp]\nallowed_peers = ["192.0.2.0/33"]', "lns", 'lns.toml: [l2tp] allowed_peers: entry 1: must be an address or CIDR prefix, got "192.0.2.0/33"'),
        ('[ppp]\npool = "10.0.0.1/24"', "lns", "lns.toml: [ppp] pool: bad CIDR prefix: 10.0.0.1/24 has host bits set"),
        ('[ppp]\npool = "10.0.0.9-10.0.0.2"', "lns", 'lns.toml: [ppp] pool: range ends (10.0.0.2) before it starts (10.0.0.9), got "10.0.0.9-10.0.0.2"'),
        ('[ppp]\npool = "10.0.0.1/32"\nlocal_address = "10.0.0.1"', "lns", "lns.toml: [ppp] pool: holds only local_address: no address left for subscribers"),
        # choices, lists, templates
        ('[dataplane]\nkind = "dpdk"', "lns", 'lns.toml: [dataplane] kind: must be "auto" or "kernel" or "null", got "dpdk"'),
        ('[ppp]\nauth = ["chap", "eap"]', "lns", 'lns.toml: [ppp] auth: entry 2: must be "chap" or "pap" or "mschapv2", got "eap"'),
        ('[ppp]\nauth = ["chap", "chap"]', "lns", 'lns.toml: [ppp] auth: lists "chap" more than once'),
        ('[log]\ncategories = ["l2tp", "radius"]', "lns", 'lns.toml: [log] categories: entry 2: must be "l2tp" or "ppp" or "aaa" or "kernel" or "daemon", got "radius"'),
        ('[dataplane]\ninterface_template = "l2tp"', "lns", 'lns.toml: [dataplane] interface_template: must contain "%d" exactly once (and no other %), got "l2tp"'),
        ('[dataplane]\ninterface_template = "a-very-long%d"', "lns", "lns.toml: [dataplane] interface_template: expands to interface names longer than 15 characters"),
        ('[subscriber]\nusername = "user{id}"', "lac", "lac.toml: [subscriber] username: must be a template using only {n}"),
        ('[control]\nsocket = "/' + "x" * 120 + '"', "lns", "lns.toml: [control] socket: is longer than the 107 bytes a Unix socket path can have"),
        # cross-key rules
        ("[l2tp]\nhide_avps = true", "lns", "lns.toml: [l2tp] hide_avps: needs [l2tp] secret (hiding uses the tunnel secret)"),
        ('[subscriber]\nauth = "mschapv2"\nproxy = true', "lac", 'lac.toml: [subscriber] proxy: proxy authentication carries PAP or CHAP only, not "mschapv2"'),
        ('[l2tp]\nsecret = ""', "lns", "lns.toml: [l2tp] secret: must not be empty (remove the key to turn tunnel authentication off)"),
    ],
)  # fmt: skip
def test_errors_name_file_key_and_problem(text: str, role: Role, message: str) -> None:
    assert error(text, role).startswith(message)


def test_error_is_one_line_with_parts() -> None:
    with pytest.raises(ConfigError) as info:
        parse("[l2tp]\nmax_retries = 0")
    err = info.value
    assert (err.file, err.key) == ("lns.toml", "[l2tp] max_retries")
    assert err.problem == "must be an integer 1..100, got 0"
    assert "\n" not in str(err)


def test_invalid_toml_names_the_file_and_line() -> None:
    message = error("[l2tp]\nlisten = 127.0.0.1:1701\n")
    assert message.startswith("lns.toml: invalid TOML:")
    assert "line 2" in message


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read: No such file"):
        load_config(missing, "lns")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"[l2tp]\nhostname = '\xff'\n")
    with pytest.raises(ConfigError, match=r"bin\.toml: not UTF-8 text \(byte 19\)"):
        load_config(binary, "lns")


def test_error_in_a_file_names_that_file(tmp_path: Path) -> None:
    path = tmp_path / "lns.toml"
    path.write_text("[ppp]\nmru = 99999\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, "lns")
    assert str(info.value) == f"{path}: [ppp] mru: must be an integer 128..65535, got 99999"


def test_parsed_dict_is_accepted() -> None:
    data: dict[str, Any] = {"l2tp": {"hostname": "from-a-dict"}}
    assert parse_config(data, "<dict>", "lns").l2tp.hostname == "from-a-dict"


# -- docs and examples ------------------------------------------------------------------------


def documented_keys() -> list[str]:
    """``section.key`` for every ``**key** =`` line under a ``## [section]`` heading."""
    keys, section = [], None
    for line in MANPAGE.read_text().splitlines():
        heading = re.match(r"^## \[\[?([a-z0-9._]+)\]\]?\s*$", line)
        if heading:
            section = heading.group(1)
        elif line.startswith("# "):
            section = None
        key = re.match(r"^\*\*([a-z0-9_]+)\*\* = ", line)
        if key and section is not None:
            keys.append(f"{section}.{key.group(1)}")
    return keys


def test_every_key_is_documented_and_every_documented_key_exists() -> None:
    documented = documented_keys()
    assert len(documented) == len(set(documented)), "a key is documented twice"
    assert sorted(known_keys()) == sorted(documented)


def test_known_keys_by_role() -> None:
    lns, lac = set(known_keys("lns")), set(known_keys("lac"))
    assert "l2tp.allowed_peers" in lns - lac
    assert "ppp.pool" in lns - lac
    assert "lac.lns.address" in lac - lns
    assert "subscriber.username" in lac - lns
    assert {"l2tp.secret", "ppp.mru", "control.socket"} <= lns & lac


@pytest.mark.parametrize(("only", "other"), [("lns", "lac"), ("lac", "lns")])
def test_manpage_marks_role_only_keys(only: Role, other: Role) -> None:
    text = MANPAGE.read_text()
    mark = f"**{only.upper()} only.**"
    for key in set(known_keys(only)) - set(known_keys(other)):
        section, _, name = key.rpartition(".")
        heading = f"## [[{section}]]" if f"## [[{section}]]\n" in text else f"## [{section}]"
        section_text = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
        intro = re.split(r"\n\*\*[a-z0-9_]+\*\* = ", section_text, maxsplit=1)[0]
        block = section_text.split(f"\n**{name}** = ", 1)[1].split("\n\n", 1)[0]
        assert mark in intro or mark in block, key


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_examples_load(path: Path) -> None:
    role: Role = "lac" if path.stem.startswith("lac") else "lns"
    config = load_config(path, role)
    assert config.role == role
    if role == "lns" and config.aaa.backend == "radius":
        assert [s.address for s in config.radius.server] == ["192.0.2.11", "192.0.2.12"]
        assert config.pool[0].name == "business"
    elif role == "lns":
        users = load_users(config.aaa.users_file)
        assert users["alice"].address == IPv4Address("100.64.3.200")
        assert users["alice"].address in config.ppp.pool
    else:
        assert len(config.lac.lns) == 2


def test_both_example_roles_exist() -> None:
    assert {p.name for p in EXAMPLES.glob("*.toml")} >= {"lns.toml", "lac.toml"}


def test_manpage_examples_parse() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", MANPAGE.read_text(), re.S)
    assert len(blocks) == 3
    assert parse(blocks[0], "lns").l2tp.secret == Secret(b"hello")
    assert len(parse(blocks[1], "lac").lac.lns) == 2
    pppoe = parse(blocks[2], "lac")
    assert (pppoe.lac.mode, pppoe.pppoe.interface) == ("pppoe", "eth1")


def test_pppoe_mode_needs_an_interface() -> None:
    with pytest.raises(ConfigError) as err:
        parse('[lac]\nmode = "pppoe"\n', "lac")
    assert err.value.key == "[pppoe] interface"
    with pytest.raises(ConfigError) as err:
        parse('[pppoe]\ninterface = "eth1"\nmax_sessions = 65535\n', "lac")
    assert err.value.key == "[pppoe] max_sessions"
    with pytest.raises(ConfigError) as err:
        parse('[pppoe]\ninterface = "eth1"\n', "lns")
    assert "pppoe" in str(err.value)
    cfg = parse('[lac]\nmode = "pppoe"\n[pppoe]\ninterface = "eth1"\nauth = "pap"\n', "lac")
    assert cfg.pppoe.auth == "pap" and cfg.pppoe.ac_name == "" and cfg.pppoe.max_sessions == 4096


# -- mapping onto the tunnel core -------------------------------------------------------------


def test_tunnel_config_carries_every_l2tp_timer() -> None:
    config = parse(
        """
        [l2tp]
        hostname = "lns1"
        secret = "hello"
        hide_avps = true
        hello_interval = 30
        receive_window = 300
        retransmit_initial = 0.5
        retransmit_cap = 4
        max_retries = 7
        idle_timeout = 0
        """
    )
    tc = config.tunnel_config()
    assert (tc.hostname, tc.secret, tc.hide_avps) == ("lns1", b"hello", True)
    assert (tc.hello_interval, tc.receive_window, tc.max_retries) == (30.0, 300, 7)
    assert (tc.retransmit_initial, tc.retransmit_cap, tc.idle_timeout) == (0.5, 4.0, 0.0)


def test_tunnel_config_per_lns_overrides() -> None:
    config = parse(
        '[l2tp]\nsecret = "a"\n[[lac.lns]]\naddress = "192.0.2.1"\n'
        '[[lac.lns]]\naddress = "192.0.2.2"\nsecret = "b"\nhostname = "h2"',
        "lac",
    )
    first, second = (config.tunnel_config(p) for p in config.lac.lns)
    assert (first.hostname, first.secret, first.idle_timeout) == ("kl2tp", b"a", 15.0)
    assert (second.hostname, second.secret) == ("h2", b"b")
    assert parse("").tunnel_config().secret is None


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("192.0.2.1:1701", ("192.0.2.1", "1701")),
        ("192.0.2.1", ("192.0.2.1", None)),
        ("2001:db8::1", ("2001:db8::1", None)),
        ("[2001:db8::1]:1701", ("2001:db8::1", "1701")),
        ("[2001:db8::1]", ("2001:db8::1", None)),
        ("[2001:db8::1:1701", None),
        ("[2001:db8::1]1701", None),
    ],
)
def test_one_host_port_grammar_for_endpoints_and_syslog(
    text: str, parts: tuple[str, str | None] | None
) -> None:
    assert split_host_port(text) == parts
