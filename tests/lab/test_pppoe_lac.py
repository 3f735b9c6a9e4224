"""A real pppd subscriber dials PPPoE into kl2tp-lac, which tunnels it to kl2tp-lns.

    kl-sub                 kl-lac                        kl-lns                kl-wan
    pppd + pppoe (pty) --- acc: kl2tp-lac  10.32.0.1 --- 10.32.0.2 kl2tp-lns --- 10.33.0.2
    ppp0 10.40.0.x          mode pppoe, kernel plane     kernel plane, lns0    (beyond the LNS)

rp-pppoe's userspace ``pppoe`` does Discovery and carries pppd's frames (``pty``), so the
guest kernel needs no PPPoE module; kl2tp-lac answers Discovery on AF_PACKET, runs LCP and
CHAP with pppd, picks the LNS, sends the ICCN with proxy LCP/auth and relays the frames on
its kernel session's PPPoL2TP socket; kl2tp-lns (kernel data plane) accepts the proxy
values, answers the CHAP response and runs IPCP. The subscriber then pings a host behind
the LNS. Hanging up from either end leaves nothing behind on the LAC or the LNS.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
from collections.abc import Iterator

import pytest
from labdaemons import (
    BIN,
    LNS,
    LNS_ADDR,
    MID,
    PPP_LOCAL,
    SECRET,
    SUB,
    Daemon,
    ctl,
    kernel_objects,
    lns_config,
    ppp_addresses,
    start_lns,
    three_namespaces,
    wait_for,
)
from labutil import run

pytestmark = pytest.mark.lab

WAN = "kl-wan"
WAN_LNS_ADDR, WAN_ADDR = "10.33.0.1", "10.33.0.2"


@pytest.fixture
def lab(tmp_path: pathlib.Path) -> Iterator[dict[str, object]]:
    """The four boxes, kl2tp-lns and kl2tp-lac (mode pppoe on v-mid-sub) running."""
    if not os.environ.get("KL2TP_LAB"):
        pytest.fail("this test belongs in the lab guest")
    with three_namespaces():
        run("ip", "netns", "add", WAN)
        daemons: list[Daemon] = []
        try:
            run("ip", "link", "add", "v-wan", "netns", WAN, "type", "veth",
                "peer", "name", "v-lns-wan", "netns", LNS)  # fmt: skip
            run("ip", "-n", WAN, "link", "set", "lo", "up")
            run("ip", "-n", WAN, "addr", "add", f"{WAN_ADDR}/24", "dev", "v-wan")
            run("ip", "-n", WAN, "link", "set", "v-wan", "up")
            run("ip", "-n", WAN, "route", "add", "10.40.0.0/23", "via", WAN_LNS_ADDR)
            run("ip", "-n", LNS, "addr", "add", f"{WAN_LNS_ADDR}/24", "dev", "v-lns-wan")
            run("ip", "-n", LNS, "link", "set", "v-lns-wan", "up")
            run("ip", "netns", "exec", LNS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            lns = start_lns(tmp_path, lns_config(tmp_path, users={"alice": "wonderland"}))
            daemons.append(lns)
            lac_cfg = tmp_path / "lac.toml"
            lac_cfg.write_text(
                f"""
[l2tp]
hostname = "lab-lac"
secret = "{SECRET}"
[dataplane]
kind = "kernel"
[control]
socket = "{tmp_path / "lac.sock"}"
[lac]
mode = "pppoe"
[[lac.lns]]
address = "{LNS_ADDR}"
[pppoe]
interface = "v-mid-sub"
ac_name = "lab-ac"
"""
            )
            lac = Daemon(MID, [str(BIN / "kl2tp-lac"), "-c", str(lac_cfg), "-d", "kernel,daemon"],
                         tmp_path / "lac.log")  # fmt: skip
            daemons.append(lac)
            wait_for(
                lambda: "PPPoE on v-mid-sub" in lac.output() or lac.proc.poll() is not None,
                "the LAC's access side",
            )
            assert lac.proc.poll() is None, lac.output()
            yield {"lns": lns, "lac": lac, "tmp": tmp_path}
            for daemon in (lac, lns):
                assert daemon.stop() == 0, daemon.output()
        finally:
            for daemon in daemons:
                daemon.kill()
            run("ip", "netns", "del", WAN, check=False)


def pppd(tmp: pathlib.Path, password: str = "wonderland") -> subprocess.Popen[bytes]:
    """pppd dialling PPPoE from the subscriber's box, its log in tmp/pppd.log."""
    log = tmp / "pppd.log"
    return subprocess.Popen(
        ["ip", "netns", "exec", SUB, "pppd", "nodetach", "debug", "logfile", str(log),
         "pty", "pppoe -I v-sub -U", "noauth", "user", "alice", "password", password,
         "noipdefault", "defaultroute", "mtu", "1492", "mru", "1492", "default-asyncmap",
         "noaccomp", "nopcomp", "novj", "noccp", "nodeflate", "nobsdcomp",
         "lcp-echo-interval", "0", "maxfail", "1", "ifname", "ppp-sub"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def _clean(ns: str) -> bool:
    objects = kernel_objects(ns)
    return not objects["sessions"] and not objects["ppp"]


def test_pppd_over_pppoe_through_the_lac_pings_beyond_the_lns(lab: dict[str, object]) -> None:
    tmp = lab["tmp"]
    assert isinstance(tmp, pathlib.Path)
    proc = pppd(tmp)
    try:
        up = wait_for(lambda: ppp_addresses(SUB).get("ppp-sub"), "pppd's address")
        local, peer = up
        assert peer == PPP_LOCAL and local.startswith("10.40.")
        run("ip", "netns", "exec", SUB, "ping", "-c", "3", "-W", "5", WAN_ADDR, timeout=120)
        lns_rows = ctl(tmp / "lns.sock", "show", "sessions")
        lac_rows = ctl(tmp / "lac.sock", "show", "sessions")
        assert [(r["username"], r["address"]) for r in lns_rows] == [("alice", local)]
        assert [r["username"] for r in lac_rows] == ["alice"]
        # The LAC made a kernel session but no PPP interface: it only relays.
        lac_objects = kernel_objects(MID)
        assert len(lac_objects["sessions"]) == 1 and not lac_objects["ppp"]
        log = (tmp / "pppd.log").read_text()
        assert "CHAP authentication succeeded" in log
        # The subscriber hangs up: LCP Terminate through the relay and a PADT.
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        wait_for(lambda: not ctl(tmp / "lns.sock", "show", "sessions"), "the LNS's CDN")
        wait_for(lambda: not ctl(tmp / "lac.sock", "show", "sessions"), "the LAC's cleanup")
        wait_for(lambda: _clean(LNS) and _clean(MID), "no kernel session left")
    finally:
        _reap(proc)


def test_lns_clearing_the_call_hangs_pppd_up(lab: dict[str, object]) -> None:
    tmp = lab["tmp"]
    assert isinstance(tmp, pathlib.Path)
    proc = pppd(tmp)
    try:
        wait_for(lambda: ppp_addresses(SUB).get("ppp-sub"), "pppd's address")
        ctl(tmp / "lns.sock", "clear", "user", "alice")
        # The LAC's PADT ends rp-pppoe, and pppd with it.
        wait_for(lambda: proc.poll() is not None, "pppd to exit")
        wait_for(lambda: not ctl(tmp / "lac.sock", "show", "sessions"), "the LAC's cleanup")
        wait_for(lambda: _clean(LNS) and _clean(MID), "no kernel session left")
        summary = ctl(tmp / "lac.sock", "show", "summary")
        assert summary["ppp"]["pppoe"]["sessions"] == 0
    finally:
        _reap(proc)


def test_wrong_password_fails_without_leftovers(lab: dict[str, object]) -> None:
    tmp = lab["tmp"]
    assert isinstance(tmp, pathlib.Path)
    proc = pppd(tmp, password="wrong")
    try:
        wait_for(lambda: proc.poll() is not None, "pppd to give up")
        assert "CHAP authentication failed" in (tmp / "pppd.log").read_text()
        wait_for(lambda: not ctl(tmp / "lac.sock", "show", "sessions"), "the LAC's cleanup")
        wait_for(lambda: _clean(LNS) and _clean(MID), "no kernel session left")
        assert ctl(tmp / "lns.sock", "show", "sessions") == []
    finally:
        _reap(proc)
