"""Debian's xl2tpd + pppd run inside the guest: LAC dials LNS with CHAP, ping through ppp.

This proves the lab can host the third-party peers later tests pit kl2tp against.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import time
from collections.abc import Iterator

import pytest
from labutil import Link, run

pytestmark = pytest.mark.lab

LNS_LOCAL = "10.202.0.1"
CHAP_SECRETS = '"lac-user" * "s3cret" *\n'


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text)
    return path


def xl2tpd(ns: str, d: pathlib.Path, conf: str, ppp_options: str) -> subprocess.Popen[bytes]:
    """Start xl2tpd in the foreground inside ``ns`` with its files under ``d``."""
    d.mkdir()
    write(d / "options", ppp_options)
    write(d / "xl2tpd.conf", conf.replace("@OPTIONS@", str(d / "options")))
    with open(d / "log", "wb") as log:
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, "xl2tpd", "-D", "-c", str(d / "xl2tpd.conf"),
             "-p", str(d / "pid"), "-C", str(d / "control")],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip


@pytest.fixture
def xl2tpd_pair(veth_pair: Link, tmp_path: pathlib.Path) -> Iterator[Link]:
    # pppd reads its CHAP secrets from /etc/ppp; /etc is the guest's overlay, not the host's.
    if not os.environ.get("KL2TP_LAB"):
        pytest.fail("refusing to write /etc/ppp/chap-secrets outside the lab guest")
    write(pathlib.Path("/etc/ppp/chap-secrets"), CHAP_SECRETS)
    lns = xl2tpd(
        veth_pair.a,
        tmp_path / "lns",
        f"[global]\nlisten-addr = {veth_pair.a_addr}\nport = 1701\n"
        f"[lns default]\nip range = 10.202.0.2-10.202.0.9\nlocal ip = {LNS_LOCAL}\n"
        "require chap = yes\nrefuse pap = yes\nrequire authentication = yes\n"
        "name = lns\nlength bit = yes\npppoptfile = @OPTIONS@\n",
        "require-chap\nrefuse-pap\nname lns\nlcp-echo-interval 0\nnodefaultroute\n",
    )
    lac = xl2tpd(
        veth_pair.b,
        tmp_path / "lac",
        f"[global]\nlisten-addr = {veth_pair.b_addr}\nport = 1701\n"
        f"[lac lab]\nlns = {veth_pair.a_addr}\nautodial = yes\nredial = no\n"
        "require authentication = no\nname = lac-user\nlength bit = yes\n"
        "pppoptfile = @OPTIONS@\n",
        "name lac-user\nremotename lns\nnoauth\nlcp-echo-interval 0\nnodefaultroute\nnoipdefault\n",
    )
    try:
        yield veth_pair
    finally:
        for proc in (lac, lns):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def ppp_address(ns: str) -> tuple[str, str] | None:
    """(interface, address) of the first ppp interface with an IPv4 address in ``ns``."""
    out = run("ip", "-n", ns, "-o", "-4", "addr", "show").stdout
    match = re.search(r"^\d+: (ppp\d+)\s+inet (\S+) peer", out, re.M)
    return (match.group(1), match.group(2)) if match else None


def test_xl2tpd_lac_dials_xl2tpd_lns_and_pings_through_ppp(
    xl2tpd_pair: Link, tmp_path: pathlib.Path
) -> None:
    deadline = time.monotonic() + 60
    while (addr := ppp_address(xl2tpd_pair.b)) is None:
        if time.monotonic() > deadline:
            logs = "".join(
                (tmp_path / side / "log").read_text(errors="replace") for side in ("lns", "lac")
            )
            pytest.fail(f"no ppp interface came up in the LAC namespace; xl2tpd logs:\n{logs}")
        time.sleep(0.2)
    _, lac_ip = addr
    assert lac_ip.startswith("10.202.0.")
    proc = run("ip", "netns", "exec", xl2tpd_pair.b, "ping", "-n", "-q", "-c", "3", "-i", "0.2",
               "-W", "3", LNS_LOCAL)  # fmt: skip
    assert "3 packets transmitted, 3 received" in proc.stdout
    # The data went through the kernel: pppd's pppol2tp plugin attached a kernel session.
    sessions = run("ip", "netns", "exec", xl2tpd_pair.a, "cat", "/proc/net/pppol2tp").stdout
    assert "SESSION" in sessions
