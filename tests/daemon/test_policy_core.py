"""Per-peer policy without I/O: the matcher (first match wins, address and host name, globs),
and the endpoint core choosing a tunnel's policy from its SCCRQ before the challenge is
answered, refusing unmatched LACs and LACs over their policy's limits with the RFC 2661
result codes, and counting tunnels and sessions per policy."""

from __future__ import annotations

import ipaddress
import random

import pytest

from kl2tp.config import ConfigError, parse_config
from kl2tp.l2tp.constants import AvpType, ErrorCode, MessageType, StopCcnResult
from kl2tp.l2tp.endpoint import EndpointConfig, EndpointCore, TunnelOpened
from kl2tp.l2tp.message import ControlMessage, ResultCode, decode
from kl2tp.l2tp.tunnel import Tunnel, TunnelConfig
from kl2tp.policy import DEFAULT_POLICY, Match, Policy, PolicyTable

A_HOST = ("192.0.2.9", 1701)
B_HOST = ("198.51.100.7", 1701)
C_HOST = ("203.0.113.5", 1701)


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


# --- the matcher -----------------------------------------------------------------------------


def table(*, refuse: bool = False) -> PolicyTable:
    base = TunnelConfig(hostname="lns", secret=b"top")
    return PolicyTable(
        Policy(DEFAULT_POLICY, base),
        (
            Policy("by-both", base, match=Match((net("192.0.2.0/24"),), ("lac-a*",))),
            Policy("by-address", base, match=Match((net("192.0.2.0/24"), net("2001:db8::/32")))),
            Policy("by-name", base, match=Match(hostnames=("LAC-B.example.net", "lac-[cd]?"))),
        ),
        refuse_unmatched=refuse,
    )


def test_first_matching_rule_wins_and_a_rule_with_both_needs_both() -> None:
    policies = table()
    assert policies.match("192.0.2.9", "lac-a7").name == "by-both"
    # Right address, other name: not "by-both" (both needed); the next rule takes it.
    assert policies.match("192.0.2.9", "lac-b").name == "by-address"
    assert policies.match("2001:db8::1", "anything").name == "by-address"
    # "lac-a7" from elsewhere: by-both needs the address too; no other rule names it.
    assert policies.match("198.51.100.1", "lac-a7").name == DEFAULT_POLICY


def test_hostnames_are_exact_or_globs_and_case_does_not_count() -> None:
    policies = table()
    assert policies.match("198.51.100.1", "lac-b.example.net").name == "by-name"
    assert policies.match("198.51.100.1", "lac-c1").name == "by-name"
    assert policies.match("198.51.100.1", "lac-e1").name == DEFAULT_POLICY
    assert policies.match("198.51.100.1", "lac-b.example.net.evil").name == DEFAULT_POLICY
    assert policies.match("198.51.100.1", "xlac-c1").name == DEFAULT_POLICY


def test_unmatched_lacs_are_refused_when_the_default_is_refuse() -> None:
    assert table(refuse=True).match("198.51.100.1", "stranger") is None
    assert table(refuse=True).match("192.0.2.1", "stranger") is not None


def test_a_match_without_conditions_matches_nothing() -> None:
    assert not Match().matches("192.0.2.1", "x")
    assert not Match((net("192.0.2.0/24"),)).matches("not-an-address", "x")


def test_the_table_comes_from_the_config() -> None:
    cfg = parse_config(
        {
            "l2tp": {"secret": "top", "hello_interval": 30, "default_peer": "refuse"},
            "pool": [{"name": "pa", "range": "10.20.0.0/24"}],
            "peer": [
                {
                    "name": "alpha",
                    "match_hostname": "lac-a*",
                    "secret": "sa",
                    "hello_interval": 5,
                    "max_tunnels": 2,
                    "max_sessions": 10,
                    "pool": "pa",
                },
                {"name": "beta", "match_address": ["198.51.100.0/24"], "receive_window": 4},
            ],
        },
        "lns.toml",
        "lns",
    )
    policies = cfg.policies()
    alpha, beta = policies.rules
    assert policies.refuse_unmatched
    assert (alpha.tunnel.secret, alpha.tunnel.hello_interval) == (b"sa", 5.0)
    assert (alpha.max_tunnels, alpha.max_sessions) == (2, 10)
    # Keys left out take the top level's values.
    assert (beta.tunnel.secret, beta.tunnel.hello_interval, beta.tunnel.receive_window) == (
        b"top",
        30.0,
        4,
    )
    assert policies.default.tunnel.secret == b"top"


# --- the endpoint core -----------------------------------------------------------------------


def lns(policies: PolicyTable, config: EndpointConfig | None = None) -> EndpointCore:
    return EndpointCore(
        config or EndpointConfig(lns=True),
        policies.default.tunnel,
        rng=random.Random(1),
        policies=policies,
    )


def two_partners(*, refuse: bool = True, a_tunnels: int = 0, a_sessions: int = 0) -> PolicyTable:
    base = TunnelConfig(hostname="lns", secret=b"top")
    return PolicyTable(
        Policy(DEFAULT_POLICY, base),
        (
            Policy(
                "alpha",
                TunnelConfig(hostname="lns", secret=b"secret-a"),
                max_tunnels=a_tunnels,
                max_sessions=a_sessions,
                match=Match(hostnames=("lac-a*",)),
            ),
            Policy(
                "beta",
                TunnelConfig(hostname="lns", secret=b"secret-b", hide_avps=True),
                match=Match((net("198.51.100.0/24"),)),
            ),
        ),
        refuse_unmatched=refuse,
    )


def lac(hostname: str, secret: bytes, tid: int = 77, *, hide: bool = False) -> Tunnel:
    return Tunnel(
        TunnelConfig(hostname=hostname, secret=secret, hide_avps=hide),
        tid,
        initiator=True,
        rng=random.Random(tid),
        now=0.0,
    )


def handshake(core: EndpointCore, peer: Tunnel, addr: tuple[str, int]) -> list[ControlMessage]:
    """Run a LAC's SCCRQ (and its SCCCN, if the LNS answered with an SCCRP) through the
    endpoint; returns every control message the LNS sent, decoded without a secret."""
    sent: list[ControlMessage] = []
    peer.connect(0.0)
    for _ in range(3):
        for data in peer.datagrams_to_send(0.0):
            core.receive_datagram(data, addr, 0.0)
        answers = [data for data, _ in core.datagrams_to_send(0.0)]
        for tid in core.ready():
            entry = core.tunnels[tid]
            core.feed(entry, 0.0)
            answers += entry.tunnel.datagrams_to_send(0.0)
        for data in answers:
            msg = decode(data, None, keep_hidden=True)
            assert isinstance(msg, ControlMessage)
            if msg.msg_type is not None:
                sent.append(msg)
            peer.receive_datagram(data, 0.0)
    return sent


def stopccn_result(sent: list[ControlMessage]) -> ResultCode:
    (stop,) = [m for m in sent if m.msg_type == MessageType.STOPCCN]
    rc = stop.get(AvpType.RESULT_CODE)
    assert isinstance(rc, ResultCode)
    return rc


def test_each_lac_is_answered_with_its_own_policys_secret() -> None:
    core = lns(two_partners())
    a = lac("lac-a1", b"secret-a", 1)
    b = lac("lac-b", b"secret-b", 2, hide=True)  # hidden AVPs under beta's secret
    handshake(core, a, A_HOST)
    handshake(core, b, B_HOST)
    # Both LACs checked the LNS's answer to their challenge: a wrong secret fails there.
    assert a.state == "established" and b.state == "established"
    events = [core.next_event(), core.next_event()]
    assert all(isinstance(e, TunnelOpened) for e in events)
    policies = sorted(core.tunnels[e.tunnel_id].policy for e in events if e is not None)
    assert policies == ["alpha", "beta"]
    assert core.policy_tunnels == {"alpha": 1, "beta": 1}


def test_a_lac_with_another_policys_secret_is_not_authorized() -> None:
    core = lns(two_partners())
    wrong = lac("lac-a1", b"secret-b", 1)  # claims alpha's name, holds beta's secret
    sent = handshake(core, wrong, A_HOST)
    # The LNS answered the challenge with alpha's secret: the LAC refuses the tunnel.
    assert wrong.state != "established"
    assert wrong.close_reason is not None
    assert wrong.close_reason.result == StopCcnResult.NOT_AUTHORIZED
    assert [m.msg_type for m in sent][:1] == [MessageType.SCCRP]


def test_an_unmatched_lac_gets_stopccn_4_and_no_sccrp() -> None:
    core = lns(two_partners(refuse=True))
    stranger = lac("lac-c", b"top", 3)
    sent = handshake(core, stranger, C_HOST)
    assert MessageType.SCCRP not in [m.msg_type for m in sent]
    rc = stopccn_result(sent)
    assert rc.result == StopCcnResult.NOT_AUTHORIZED
    assert stranger.state != "established"
    assert core.counters["tunnels_refused_unmatched"] == 1
    assert not core.policy_tunnels
    # Its StopCCN acked, the refused tunnel went the way of every closed one.
    assert not core.tunnels and not core.half_open


def test_an_unmatched_lac_gets_the_top_level_when_the_default_is_accept() -> None:
    core = lns(two_partners(refuse=False))
    stranger = lac("lac-c", b"top", 3)
    handshake(core, stranger, C_HOST)
    assert stranger.state == "established"
    assert core.policy_tunnels == {DEFAULT_POLICY: 1}


def test_per_peer_max_tunnels_refuses_with_stopccn_2_4_and_spares_other_peers() -> None:
    core = lns(two_partners(a_tunnels=1))
    first = lac("lac-a1", b"secret-a", 1)
    handshake(core, first, A_HOST)
    assert first.state == "established"
    second = lac("lac-a2", b"secret-a", 2)
    sent = handshake(core, second, A_HOST)
    rc = stopccn_result(sent)
    assert (rc.result, rc.error) == (StopCcnResult.GENERAL_ERROR, ErrorCode.INSUFFICIENT_RESOURCES)
    assert core.counters["tunnels_refused_peer_limit"] == 1
    assert core.policy_refusals[("alpha", "max_tunnels")] == 1
    # Beta is not alpha: its tunnel comes up.
    other = lac("lac-b", b"secret-b", 3, hide=True)
    handshake(core, other, B_HOST)
    assert other.state == "established"
    assert core.policy_tunnels == {"alpha": 1, "beta": 1}


def test_per_peer_max_sessions_counts_per_policy() -> None:
    core = lns(two_partners(a_sessions=2))
    handshake(core, lac("lac-a1", b"secret-a", 1), A_HOST)
    handshake(core, lac("lac-b", b"secret-b", 2, hide=True), B_HOST)
    by_policy = {e.policy: e for e in core.tunnels.values()}
    a, b = by_policy["alpha"], by_policy["beta"]
    assert core.admit_session(a) and core.admit_session(a)
    assert not core.admit_session(a)
    assert core.over_peer_session_limit(a)
    assert core.counters["calls_refused_peer_limit"] == 1
    assert core.policy_refusals[("alpha", "max_sessions")] == 1
    assert all(core.admit_session(b) for _ in range(5))  # beta has no limit of its own
    assert core.policy_sessions == {"alpha": 2, "beta": 5}
    core.release_session(a)
    assert core.admit_session(a)
    core.discard(a)  # a tunnel takes its sessions and its place in the policy with it
    assert core.policy_sessions == {"beta": 5}
    assert core.policy_tunnels == {"beta": 1}


def test_a_new_table_applies_to_new_tunnels_and_limits_follow_the_name() -> None:
    core = lns(two_partners())
    old = lac("lac-a1", b"secret-a", 1)
    handshake(core, old, A_HOST)
    changed = two_partners(a_tunnels=1)
    alpha = changed.rules[0]
    renewed = Policy(
        "alpha",
        TunnelConfig(hostname="lns", secret=b"secret-a2"),
        max_tunnels=2,
        match=alpha.match,
    )
    core.policies = PolicyTable(changed.default, (renewed, changed.rules[1]), refuse_unmatched=True)
    (entry,) = core.tunnels.values()
    assert entry.tunnel.config.secret == b"secret-a"  # the live tunnel keeps its values
    stale = lac("lac-a2", b"secret-a", 2)
    handshake(core, stale, A_HOST)
    assert stale.state != "established"  # the old secret no longer opens a tunnel
    fresh = lac("lac-a3", b"secret-a2", 3)
    handshake(core, fresh, A_HOST)
    assert fresh.state == "established"
    assert core.policy_tunnels["alpha"] == 2
    # max_tunnels 2 counts the tunnel from before the change.
    sent = handshake(core, lac("lac-a4", b"secret-a2", 4), A_HOST)
    assert stopccn_result(sent).error == ErrorCode.INSUFFICIENT_RESOURCES


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[peer]]\nname = "a"\nmatch_hostname = "x"\n[[peer]]\nname = "a"\n'
            'match_hostname = "y"\n',
            "lns.toml: [[peer]] #2 name: 'a' is already the name of [[peer]] #1",
        ),
        ('[[peer]]\nname = "a"\n', "lns.toml: [[peer]] #1: needs match_address or match_hostname"),
        (
            '[[peer]]\nname = "default"\nmatch_hostname = "x"\n',
            'lns.toml: [[peer]] #1 name: "default" is the name of the top-level settings',
        ),
        (
            '[[peer]]\nname = "a"\nmatch_hostname = "x"\npool = "nope"\n',
            'lns.toml: [[peer]] #1 pool: "nope" is no [[pool]] name',
        ),
        (
            '[[peer]]\nname = "a"\nmatch_hostname = "x"\nhide_avps = true\n',
            "lns.toml: [[peer]] #1 hide_avps: needs a secret",
        ),
        (
            '[[peer]]\nname = "a"\nmatch_address = "192.0.2.1/24"\n',
            "lns.toml: [[peer]] #1 match_address: 192.0.2.1/24 has host bits set",
        ),
        (
            '[[peer]]\nname = "a"\nmatch_hostname = "x"\naaa = "radius"\n',
            "lns.toml: [[radius.server]]: must list at least one server",
        ),
        ('[[peer]]\nname = "a"\nmatch_hostname = "x"\nsecrett = "s"\n', "unknown key"),
        ('[l2tp]\ndefault_peer = "drop"\n', '[l2tp] default_peer: must be "accept" or "refuse"'),
    ],
)
def test_bad_peer_tables_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "lns.toml", "lns")
    assert message in str(info.value)


def test_peer_tables_are_for_the_lns_only() -> None:
    with pytest.raises(ConfigError, match=r"\[\[peer\]\]: only valid for kl2tp-lns"):
        parse_config('[[peer]]\nname = "a"\nmatch_hostname = "x"\n', "lac.toml", "lac")
