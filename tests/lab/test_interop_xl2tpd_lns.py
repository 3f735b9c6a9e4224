"""Interop (b) and (c): kl2tp-lac in client mode dials Debian's xl2tpd + pppd as LNS.

Six kl2tp-lac clients (kernel data plane) run in the subscriber namespace of
``labdaemons.three_namespaces``, each on its own address (in the 6.1 guest kernel each L2TPv2
tunnel needs its own address/port pair, see test_interop_xl2tpd_lac): a CHAP, a PAP and an
MS-CHAPv2 subscriber, each once with plain AVPs and once hiding them. One xl2tpd in the LNS
namespace has an ``[lns]`` section per client (picked by the client's address), whose pppd
demands that client's method; tunnel authentication is on everywhere, and the hidden clients'
sections have xl2tpd's ``hidden bit`` on.

The daemons are shared by every test here. Then half the calls hang up from the kl2tp end
(SIGTERM: CDN, StopCCN, exit 0) and half from the xl2tpd end (its pppd is killed: xl2tpd
clears the call; the client dials again), and nothing of a cleared call may remain on either
side; last, stopping the clients leaves both namespaces as they were.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from labdaemons import (
    BIN,
    CASES,
    LNS,
    LNS_ADDR,
    NOTHING,
    SECRET,
    SUB,
    Case,
    Daemon,
    Xl2tpd,
    leftovers,
    netns_pids,
    ppp_addresses,
    ppp_secrets,
    query,
    three_namespaces,
    wait_for,
)
from labutil import run

pytestmark = pytest.mark.lab

REQUIRE = {"chap": "require-chap", "pap": "require-pap", "mschapv2": "require-mschap-v2"}
"""What xl2tpd's pppd demands of each client."""
LCP_AUTH = {"chap": "<auth chap MD5>", "pap": "<auth pap>", "mschapv2": "<auth chap MS-v2>"}
"""How pppd's debug log shows the Auth-Protocol it agreed on."""


def lns_local(case: Case) -> str:
    """xl2tpd's PPP address in this call's section."""
    return f"10.50.{case.index}.1"


@attrs.define
class Lab:
    tmp: pathlib.Path
    xl2tpd: Xl2tpd
    clients: dict[Case, Daemon]

    def sock(self, case: Case) -> pathlib.Path:
        return self.tmp / f"{case.name}.sock"

    def session(self, case: Case) -> dict[str, Any] | None:
        if not self.sock(case).exists():
            return None
        sessions = query(self.sock(case), "show", "sessions")
        if len(sessions) == 1 and "address" in sessions[0] and "interface" in sessions[0]:
            return dict(sessions[0])
        return None

    def pppd_log(self, case: Case) -> str:
        path = self.xl2tpd.dir / f"{case.name}.pppd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        parts = [f"--- kl2tp-lac {c.name}\n{d.output()}" for c, d in self.clients.items()]
        parts.append(f"--- xl2tpd\n{self.xl2tpd.output()}")
        parts += [f"--- pppd {c.name}\n{self.pppd_log(c)}" for c in CASES]
        return "\n".join(parts)

    def wait_session(self, case: Case, what: str = "call up") -> dict[str, Any]:
        try:
            return dict(wait_for(lambda: self.session(case), f"{case.name}'s {what}", bound=60))
        except pytest.fail.Exception as exc:
            pytest.fail(f"{exc}\n{self.logs()}")


def client_toml(tmp: pathlib.Path, case: Case) -> pathlib.Path:
    path = tmp / f"{case.name}.toml"
    path.write_text(
        f"""
[l2tp]
listen = "{case.address}:0"
hostname = "kl2tp-{case.name}"
secret = "{SECRET}"
hide_avps = {str(case.hidden).lower()}
[dataplane]
kind = "kernel"
interface_template = "{case.name}%d"
[control]
socket = "{tmp / f"{case.name}.sock"}"
[ppp]
lcp_echo_interval = 0
[lac]
mode = "client"
[[lac.lns]]
address = "{LNS_ADDR}"
[subscriber]
username = "{case.name}"
password = "{case.password}"
auth = "{case.method}"
"""
    )
    return path


def xl2tpd_lns(tmp: pathlib.Path) -> Xl2tpd:
    sections = ""
    options: dict[str, str] = {}
    for c in CASES:
        sections += (
            f"[lns {c.name}]\nlac = {c.address}\nip range = 10.50.{c.index}.2-10.50.{c.index}.9\n"
            f"local ip = {lns_local(c)}\nchallenge = yes\n"
            f"hidden bit = {'yes' if c.hidden else 'no'}\nlength bit = yes\n"
            f"hostname = xl2tpd-lns\nname = xl2tpd-lns\nrequire authentication = yes\n"
            f"pppoptfile = @DIR@/{c.name}.options\n"
        )
        options[c.name] = (
            f"name xl2tpd-lns\n{REQUIRE[c.method]}\nlcp-echo-interval 0\nnodefaultroute\n"
            f"debug\nlogfile @DIR@/{c.name}.pppd.log\n"
        )
    return Xl2tpd(LNS, tmp / "xl2tpd", LNS_ADDR, sections, options)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("interop-lns")
    ppp_secrets({c.name: c.password for c in CASES})
    with three_namespaces():
        for case in CASES:
            run("ip", "-n", SUB, "addr", "add", f"{case.address}/24", "dev", "v-sub")
        xl2tpd = xl2tpd_lns(tmp)
        clients: dict[Case, Daemon] = {}
        try:
            for case in CASES:
                argv = [str(BIN / "kl2tp-lac"), "-c", str(client_toml(tmp, case)),
                        "-d", "l2tp,ppp,kernel"]  # fmt: skip
                clients[case] = Daemon(SUB, argv, tmp / f"{case.name}.log", private=True)
            yield Lab(tmp, xl2tpd, clients)
        finally:
            for daemon in clients.values():
                daemon.kill()
            xl2tpd.stop()


def lns_links() -> dict[str, int]:
    """pppd's interfaces in the LNS namespace: name -> ifindex."""
    links = json.loads(run("ip", "-n", LNS, "-j", "link", "show").stdout)
    return {x["ifname"]: x["ifindex"] for x in links if x.get("link_type") == "ppp"}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_client_call_up_authenticated_and_pings_through_both_kernels(lab: Lab, case: Case) -> None:
    sess = lab.wait_session(case)
    address, ifname = sess["address"], sess["interface"]
    assert address.startswith(f"10.50.{case.index}.")
    assert ifname.startswith(case.name)
    assert ppp_addresses(SUB)[ifname] == (address, lns_local(case))
    assert (lns_local(case), address) in ppp_addresses(LNS).values()
    # xl2tpd's pppd asked for this client's method, and the client answered it.
    # pppd passes IP once it logs the addresses (after IPCP, which the client saw open first).
    log = wait_for(lambda: "remote IP address" in (t := lab.pppd_log(case)) and t, "pppd's IPCP")
    assert LCP_AUTH[case.method] in log, log
    assert re.search(rf"rcvd \[(CHAP Response|PAP AuthReq) .*{case.name}", log), log
    before = sess["kernel"]
    out = run("ip", "netns", "exec", SUB, "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "5",
              "-I", ifname, lns_local(case), check=False).stdout  # fmt: skip
    assert "3 packets transmitted, 3 received" in out, out
    after = lab.session(case)
    assert after is not None
    # Through kl2tp-lac's kernel session, not its Python: nothing reached it at all, since
    # the client waits for the LNS to speak first and its kernel session exists by then.
    assert after["kernel"]["rx_packets"] - before["rx_packets"] == 3
    assert after["kernel"]["tx_packets"] - before["tx_packets"] == 3
    counters = query(lab.sock(case), "show", "summary")["counters"]
    assert counters.get("data_rx", 0) == 0, counters


def test_hidden_avps_went_both_ways(lab: Lab) -> None:
    """xl2tpd took the hidden clients' hidden AVPs (their calls came up; each ICRQ is longer
    than its plain twin by a Random Vector and the hiding) and sent its own Random Vectors."""
    for case in CASES:
        lab.wait_session(case)

    def icrq_lengths(case: Case) -> set[int]:
        log = lab.clients[case].output()
        return {int(m) for m in re.findall(r"O ICRQ, flg TLS, ver 2, len (\d+),", log)}

    for plain, hidden in zip(CASES[:3], CASES[3:], strict=True):
        assert min(icrq_lengths(hidden)) > max(icrq_lengths(plain)) + 22


def test_client_trace_shows_what_the_lns_sent(lab: Lab) -> None:
    """kl2tp-lac's debug log shows the Challenge and Success (or PAP Ack) it received."""
    for case in CASES:
        lab.wait_session(case)
        log = lab.clients[case].output()
        if case.method == "pap":
            assert re.search(r"PAP: I AUTH-ACK id \d+ len \d+", log), log
        else:
            assert re.search(r'CHAP: I CHALLENGE id \d+ len \d+ from "xl2tpd-lns"', log), log
            assert re.search(r"CHAP: I SUCCESS id \d+ len \d+", log), log


def test_hangup_from_either_end_leaves_nothing_behind(lab: Lab) -> None:
    """Even cases hang up from the client (SIGTERM), odd ones from xl2tpd's side (its pppd
    for that call is killed), all at once. Each old call must leave both sides completely;
    the clients hung up on dial again."""
    calls = {case: lab.wait_session(case) for case in CASES}
    links = lns_links()
    lns_if = {
        case: next(
            name for name, (local, peer) in ppp_addresses(LNS).items() if peer == sess["address"]
        )
        for case, sess in calls.items()
    }
    old_index = {case: links[lns_if[case]] for case in CASES}
    pppd = {
        case: next(pid for pid, cmd in netns_pids(LNS).items() if f"/{case.name}.options" in cmd)
        for case in CASES
    }
    by_client = [case for case in CASES if case.index % 2 == 0]
    for case in CASES:
        if case in by_client:
            lab.clients[case].signal(signal.SIGTERM)
        else:
            os.kill(pppd[case], signal.SIGTERM)
    for case in by_client:  # one SIGTERM: a second one while it clears would kill it
        assert lab.clients[case].proc.wait(timeout=60) == 0, lab.clients[case].output()

    def left() -> list[str]:
        lns_now, sub_now, links_now = leftovers(LNS), leftovers(SUB), lns_links()
        out = []
        for case, sess in calls.items():
            if pppd[case] in lns_now["pppd"]:
                out.append(f"{case.name}: xl2tpd's pppd")
            if old_index[case] in links_now.values():
                out.append(f"{case.name}: xl2tpd's ppp interface")
            if sess["peer_id"] in lns_now["sessions"]:
                out.append(f"{case.name}: xl2tpd's kernel session")
            if sess["local_id"] in sub_now["sessions"]:
                out.append(f"{case.name}: the client's kernel session")
            if case in by_client and any(i.startswith(case.name) for i in sub_now["ppp"]):
                out.append(f"{case.name}: the client's interface")
        return out

    try:
        wait_for(lambda: not left(), "every old call to leave both sides", bound=60)
    except pytest.fail.Exception as exc:
        pytest.fail(f"{exc}: {left()}\n{lab.logs()}")
    # The clients the LNS side hung up on are back with a new call.
    for case in CASES:
        if case not in by_client:
            new = lab.wait_session(case, "new call")
            assert new["local_id"] != calls[case]["local_id"]


def test_stopping_the_clients_leaves_nothing(lab: Lab) -> None:
    for case, daemon in lab.clients.items():
        if daemon.proc.poll() is None:
            lab.wait_session(case)
            daemon.signal(signal.SIGTERM)
    for daemon in lab.clients.values():
        assert daemon.proc.wait(timeout=60) == 0, daemon.output()
    wait_for(lambda: leftovers(SUB) == NOTHING, "nothing left on the client side")
    wait_for(lambda: leftovers(LNS) == NOTHING, "nothing left on xl2tpd's side")
