"""Per-peer policy in a running LNS (issue 12 item 1), in one process on loopback: three LACs
(kl2tp's own endpoints with PPP subscribers) against an LNS started from a configuration with
two ``[[peer]]`` tables and ``default_peer = "refuse"``.

Each matched LAC gets its own secret, pool, authentication and limits; the one over its
``max_sessions`` or ``max_tunnels`` is refused with the RFC 2661 result codes while the other
is unharmed; the unmatched one is refused with StopCCN 4; ``show tunnels`` names each
tunnel's policy; a changed policy, applied by SIGHUP, holds for new tunnels while the live
ones keep theirs."""

from __future__ import annotations

import ipaddress
import os
import random
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from kl2tp import config as cfgmod
from kl2tp.cli import settings_from_config
from kl2tp.daemon.endpoint import Endpoint, TunnelSetupError
from kl2tp.daemon.ppp_session import PppSessions, make_handler
from kl2tp.daemon.reload import Reloader
from kl2tp.daemon.service import ControlApi, SimulationResult, run_daemon, simulate
from kl2tp.dataplane.base import FrameSink, PppChannel, SessionSpec
from kl2tp.dataplane.null import NullDataPlane
from kl2tp.l2tp.tunnel import TunnelConfig
from ppp.config import AuthMethod
from tests.daemon.inprocess import Aaa, subscriber_link

BOUND = 60.0

LNS_CONFIG = """
[l2tp]
listen = "127.0.0.1:0"
hostname = "lns"
hello_interval = 0
secret = "top-secret"
default_peer = "refuse"

[ppp]
auth = ["chap"]
local_address = "10.9.0.1"
pool = "10.9.0.2-10.9.0.9"
restart_timer = 0.2
lcp_echo_interval = 0

[[pool]]
name = "pool-a"
range = "10.20.0.2-10.20.0.9"

[[pool]]
name = "pool-b"
range = "10.30.0.2-10.30.0.9"

[[peer]]
name = "alpha"
match_hostname = "lac-a*"
secret = "{alpha_secret}"
pool = "pool-a"
max_sessions = 2
interface_template = "pa%d"
dns = ["192.0.2.53"]

[[peer]]
name = "beta"
match_address = "127.0.0.2"
secret = "secret-b"
pool = "pool-b"
auth = ["pap"]
max_tunnels = 1
"""


@attrs.define
class RecordingPlane(NullDataPlane):
    """The null data plane, keeping every session it was asked to program."""

    specs: list[SessionSpec] = attrs.field(factory=list)

    async def open_session(self, spec: SessionSpec, sink: FrameSink) -> PppChannel:
        self.specs.append(spec)
        return await super().open_session(spec, sink)


def write(path: Path, alpha_secret: str = "secret-a") -> None:
    path.write_text(LNS_CONFIG.format(alpha_secret=alpha_secret))


def lac(host: str, hostname: str, secret: bytes, auth: AuthMethod, seed: int) -> Endpoint:
    """A LAC whose subscribers accept only ``auth``."""
    plane = NullDataPlane()
    link = subscriber_link(accept_auth=(auth,))
    return Endpoint(
        role="lac",
        tunnel_config=TunnelConfig(hostname=hostname, secret=secret, hello_interval=0),
        dataplane=plane,
        listen=(host, 0),
        handler=PppSessions(plane, lns=False, link_config=lambda _n: link, rng=random.Random(seed)),
        rng=random.Random(seed),
    )


async def until(predicate: Callable[[], bool]) -> None:
    """Wait (bounded by the test's fail_after) until ``predicate`` holds: look again each
    time every task has been blocked a moment (loopback datagrams and timers move on)."""
    while not predicate():
        await trio.testing.wait_all_tasks_blocked(0.01)


def established(lns: Endpoint, policy: str) -> list[dict[str, Any]]:
    """The established sessions of ``policy``'s tunnels, as the LNS records them."""
    return [
        dict(info.extra)
        for runner in lns.tunnels.values()
        if runner.policy == policy
        for info in runner.sessions.values()
        if info.established is not None
    ]


async def refusal(lac_endpoint: Endpoint, lns_addr: tuple[str, int]) -> str:
    """Dial and expect a refusal; the text of the StopCCN that refused it."""
    with pytest.raises(TunnelSetupError) as info:
        await lac_endpoint.dial(lns_addr, setup_timeout=10)
    return str(info.value)


def in_pool(address: str, first: str, last: str) -> bool:
    ip = ipaddress.IPv4Address(address)
    return ipaddress.IPv4Address(first) <= ip <= ipaddress.IPv4Address(last)


async def test_two_partners_each_get_their_own_and_a_stranger_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "lns.toml"
    write(path)
    cfg = cfgmod.load_config(path, "lns")
    backend = Aaa()
    plane = RecordingPlane()
    handler = make_handler(
        "lns", cfg, plane, backend, subscribers=False, authenticators={"local": backend}
    )
    settings = attrs.evolve(settings_from_config(cfg, "lns"), control_socket=None)
    reloader = Reloader(path, cfg, ident="test")
    lac_a = lac("127.0.0.1", "lac-a1", b"secret-a", AuthMethod.CHAP, 1)
    lac_b = lac("127.0.0.2", "lac-b", b"secret-b", AuthMethod.PAP, 2)
    lac_b2 = lac("127.0.0.2", "lac-b2", b"secret-b", AuthMethod.PAP, 3)
    stranger = lac("127.0.0.1", "lac-c", b"top-secret", AuthMethod.CHAP, 4)
    stop = trio.Event()
    results: dict[str, SimulationResult] = {}
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            lns: Endpoint = await nursery.start(
                lambda task_status: run_daemon(
                    settings, plane, handler, reload=reloader, task_status=task_status
                )
            )
            reloader.endpoint, reloader.handler = lns, handler
            lns_addr = lns.local_addr
            for endpoint in (lac_a, lac_b, lac_b2, stranger):
                await nursery.start(endpoint.serve)

            async def calls(name: str, endpoint: Endpoint, count: int) -> None:
                results[name] = await simulate(
                    endpoint,
                    [(lns_addr, endpoint.tunnel_config)],
                    count,
                    hold=BOUND,
                    stop=stop,
                    setup_timeout=10,
                )

            # Alpha (by host name, CHAP, max_sessions 2) places 3 calls; beta (by address,
            # PAP only, max_tunnels 1) places 3.
            nursery.start_soon(calls, "alpha", lac_a, 3)
            nursery.start_soon(calls, "beta", lac_b, 3)
            await until(
                lambda: (
                    len(established(lns, "alpha")) == 2
                    and len(established(lns, "beta")) == 3
                    and lns.counters["calls_refused_peer_limit"] == 1
                )
            )
            # Each partner's subscribers took addresses from its own pool, with its own
            # authentication (the top level demands CHAP; beta's subscribers speak only PAP).
            alpha, beta = established(lns, "alpha"), established(lns, "beta")
            assert all(in_pool(s["address"], "10.20.0.2", "10.20.0.9") for s in alpha)
            assert all(in_pool(s["address"], "10.30.0.2", "10.30.0.9") for s in beta)
            assert {s["auth"] for s in alpha} == {"chap"} and {s["auth"] for s in beta} == {"pap"}
            assert lns.core.policy_sessions == {"alpha": 2, "beta": 3}
            # Alpha's sessions are named by its interface template, beta's by the data plane.
            templates = {s.local_tunnel_id: s.ifname_template for s in plane.specs}
            assert sorted(
                (lns.tunnels[tid].policy, template) for tid, template in set(templates.items())
            ) == [("alpha", "pa%d"), ("beta", None)]
            # Alpha's subscribers were offered alpha's DNS server (the back end named none).
            (running,) = {
                state.link.ipcp.dns_offer
                for state in handler.running.values()  # type: ignore[attr-defined]
                if state.rec.tunnel.policy == "alpha"
            }
            assert running == (int(ipaddress.IPv4Address("192.0.2.53")),)
            # kl2tpctl show tunnels: the policy column; show summary: counts per policy.
            api = ControlApi(lns, plane)
            rows = await api.tunnels()
            assert sorted((r["peer_hostname"], r["policy"]) for r in rows) == [
                ("lac-a1", "alpha"),
                ("lac-b", "beta"),
            ]
            summary = (await api.summary())["policies"]
            assert summary["alpha"] == {
                "tunnels": 1,
                "sessions": 2,
                "refused_max_tunnels": 0,
                "refused_max_sessions": 1,
            }
            assert (summary["beta"]["tunnels"], summary["beta"]["sessions"]) == (1, 3)
            assert summary["default"]["tunnels"] == 0
            # Beta's second tunnel: over its max_tunnels (StopCCN 2, error 4).
            text = await refusal(lac_b2, lns_addr)
            assert "result 2 error 4" in text and "peer tunnel limit" in text
            # The stranger matches no [[peer]]: StopCCN 4 (not authorized).
            text = await refusal(stranger, lns_addr)
            assert "result 4" in text and "no [[peer]] matches" in text
            assert lns.counters["tunnels_refused_peer_limit"] == 1
            assert lns.counters["tunnels_refused_unmatched"] == 1

            # SIGHUP with a new alpha secret: the live alpha tunnel stays; new alpha tunnels
            # need the new secret.
            (alpha_runner,) = [r for r in lns.tunnels.values() if r.policy == "alpha"]
            write(path, alpha_secret="secret-a2")
            os.kill(os.getpid(), signal.SIGHUP)
            await until(lambda: lns.policies.by_name["alpha"].tunnel.secret == b"secret-a2")
            stale = lac("127.0.0.1", "lac-a2", b"secret-a", AuthMethod.CHAP, 5)
            fresh = lac("127.0.0.1", "lac-a3", b"secret-a2", AuthMethod.CHAP, 6)
            await nursery.start(stale.serve)
            await nursery.start(fresh.serve)
            # The stale LAC checks the LNS's answer to its challenge and refuses the tunnel.
            assert "result 4" in await refusal(stale, lns_addr)
            runner = await fresh.dial(lns_addr, setup_timeout=10)
            assert not alpha_runner.closed.is_set()
            assert alpha_runner.core.config.secret == b"secret-a"
            assert sorted(r.policy for r in lns.tunnels.values()) == ["alpha", "alpha", "beta"]
            # The new tunnel's sessions count against alpha's limit with the live ones.
            assert lns.core.over_peer_session_limit(lns.tunnels[runner.peer_tunnel_id].entry)
            stop.set()
            await until(lambda: len(results) == 2)
            nursery.cancel_scope.cancel()
    assert results["alpha"].established == 2
    assert results["alpha"].failed == {"cdn result 4: peer session limit reached": 1}
    assert results["beta"].established == 3 and not results["beta"].failed


PEERS_ONLY = """
[l2tp]
secret = "top"
[ppp]
auth = ["chap"]
dns = ["192.0.2.1"]
mru = 1460
session_timeout = 100
[aaa]
users_file = "users"
[[radius.server]]
address = "127.0.0.1"
secret = "radius"
[[pool]]
name = "pa"
range = "10.20.0.0/24"
[[peer]]
name = "alpha"
match_hostname = "lac-a*"
auth = ["pap", "mschapv2"]
dns = ["192.0.2.53"]
mru = 1400
proxy_lcp = "renegotiate"
proxy_auth = "renegotiate"
session_timeout = 3600
idle_timeout = 600
pool = "pa"
aaa = "radius"
[[peer]]
name = "beta"
match_address = "198.51.100.0/24"
"""


def test_session_values_of_each_peer(tmp_path: Path) -> None:
    from kl2tp.daemon.ppp_session import session_policies

    cfg = cfgmod.parse_config(PEERS_ONLY, "lns.toml", "lns")
    policies = session_policies(cfg)
    alpha, beta = policies["alpha"], policies["beta"]
    assert alpha.link.auth == (AuthMethod.PAP, AuthMethod.MSCHAPV2)
    assert alpha.link.ipcp.dns == (ipaddress.IPv4Address("192.0.2.53"),)
    assert alpha.link.lcp.mru == 1400
    assert (alpha.link.proxy_lcp.value, alpha.link.proxy_auth.value) == ("renegotiate",) * 2
    assert (alpha.session_timeout, alpha.idle_timeout, alpha.pool, alpha.aaa) == (
        3600.0,
        600.0,
        "pa",
        "radius",
    )
    # Beta sets nothing of its own: the top level's values.
    assert beta.link.auth == (AuthMethod.CHAP,) and beta.link.lcp.mru == 1460
    assert (beta.session_timeout, beta.pool, beta.aaa) == (100.0, None, "local")
    assert cfg.auth_methods == {"chap", "pap", "mschapv2"}


def test_the_lns_starts_every_back_end_a_policy_names(tmp_path: Path) -> None:
    from kl2tp.cli import _authenticators

    (tmp_path / "users").write_text("alice secret1\n")
    path = tmp_path / "lns.toml"
    path.write_text(PEERS_ONLY)
    cfg = cfgmod.load_config(path, "lns")
    backends = _authenticators(cfg, "lns")
    assert sorted(backends) == ["local", "radius"]
    # Each accepts every method some policy demands; the session's policy narrows it.
    assert all(b.methods == {"chap", "pap", "mschapv2"} for b in backends.values())


def test_a_reload_naming_a_back_end_not_started_waits_for_a_restart(tmp_path: Path) -> None:
    (tmp_path / "users").write_text("alice secret1\n")
    path = tmp_path / "lns.toml"
    path.write_text('[aaa]\nusers_file = "users"\n')
    cfg = cfgmod.load_config(path, "lns")
    reloader = Reloader(path, cfg, ident="test")
    reloader.authenticators = {"local": Aaa()}
    path.write_text(PEERS_ONLY)
    new = cfgmod.load_config(path, "lns")
    answer = reloader.apply(new)
    assert "peer" in answer["restart_needed"] and "peer" not in answer["applied"]
    assert reloader.cfg.peer == ()
