"""Wireshark's dissectors (tshark, Debian) read whole test runs with zero malformed packets
(issue 11, must work 5): the control messages both ends send (hidden AVPs too: Wireshark
checks their framing, it does not decrypt L2TPv2 hidden AVPs), the proxy AVPs of an ICCN
in the clear, and the PPP inside the data messages (LCP, PAP, CHAP, MS-CHAPv2, IPCP,
IPv6CP), between kl2tp's own LAC and LNS and between kl2tp-lac and l2tpns."""

from __future__ import annotations

import struct
from pathlib import Path

from tests.daemon.harness import BIN, Daemon, free_udp_port, wait_for
from tests.interop.capture import avp_types, capture, malformed, message_types, protocols
from tests.interop.lac import PASSWORD, TUNNEL_SECRET, lac_config, simulate
from tests.peers.l2tpns import L2tpnsPeer

SCCRQ, SCCRP, SCCCN, STOPCCN, HELLO, ICRQ, ICRP, ICCN, CDN = 1, 2, 3, 4, 6, 10, 11, 12, 14
PROXY_AVPS = {26, 27, 28, 29, 30, 31, 32, 33}
"""Initial/Last Sent/Last Received LCP CONFREQ, Proxy Authen Type/Name/Challenge/ID/
Response (RFC 2661 4.4.5)."""


def kl2tp_configs(tmp: Path, port: int) -> tuple[Path, str]:
    """An LNS config (hidden AVPs, IPv6CP, every method, Hellos each second) and the LAC's
    common part (to which each run adds its ``[subscriber]``)."""
    users = tmp / "users"
    users.write_text("".join(f"user{n} {PASSWORD}\n" for n in range(1, 41)))
    lns = tmp / "lns.toml"
    lns.write_text(
        f"""
[l2tp]
listen = "127.0.0.1:{port}"
hostname = "kl2tp-lns"
workers = 1
secret = "{TUNNEL_SECRET}"
hide_avps = true
hello_interval = 1
[dataplane]
kind = "null"
[control]
socket = "{tmp / "lns.sock"}"
[aaa]
users_file = "{users}"
[ppp]
auth = ["chap", "mschapv2", "pap"]
pool = "10.20.0.0/24"
local_address = "10.20.0.1"
ipv6 = true
"""
    )
    lac = f"""
[l2tp]
listen = "127.0.0.1:0"
hostname = "kl2tp-lac"
secret = "{TUNNEL_SECRET}"
hide_avps = {{hide}}
hello_interval = 1
[dataplane]
kind = "null"
[control]
socket = "{tmp / "lac.sock"}"
[ppp]
ipv6 = true
[[lac.lns]]
address = "127.0.0.1:{port}"
"""
    return lns, lac


def test_kl2tp_lac_and_lns_dissect_cleanly(tmp_path: Path) -> None:
    port = free_udp_port()
    lns_config, lac_common = kl2tp_configs(tmp_path, port)
    lns = Daemon([str(BIN / "kl2tp-lns"), "--config", str(lns_config)], tmp_path / "lns.log")
    pcap = tmp_path / "kl2tp.pcapng"
    try:
        wait_for(lambda: (tmp_path / "lns.sock").exists(), "the LNS's control socket")
        with capture(pcap, "lo", f"udp port {port}"):
            # The proxy run in the clear (its AVPs decoded), the others hidden.
            for auth, proxy in (("chap", "true"), ("pap", "false"), ("mschapv2", "false")):
                config = tmp_path / f"lac-{auth}.toml"
                subscriber = f'auth = "{auth}"\nproxy = {proxy}\npassword = "{PASSWORD}"\n'
                hide = "false" if proxy == "true" else "true"
                config.write_text(
                    lac_common.replace("{hide}", hide) + "[subscriber]\n" + subscriber
                )
                run = simulate(config, 5, rate=50, hold=2.5)  # 2.5 s: Hellos both ways
                assert run.summary["established"] == 5, (run.summary, run.output[-3000:])
    finally:
        lns.stop()
    decode = (f"udp.port=={port},l2tp",)
    assert malformed(pcap, decode_as=decode) == ""
    seen = protocols(pcap, decode_as=decode)
    for name in ("l2tp", "ppp", "lcp", "chap", "pap", "ipcp", "ipv6cp"):
        assert seen[name] > 0, (name, seen)
    assert "_ws.malformed" not in seen and "malformed" not in seen
    types = message_types(pcap, decode_as=decode)
    for kind in (SCCRQ, SCCRP, SCCCN, STOPCCN, HELLO, ICRQ, ICRP, ICCN, CDN):
        assert types[kind] > 0, (kind, types)
    assert avp_types(pcap, decode_as=decode) >= PROXY_AVPS


def test_kl2tp_lac_and_l2tpns_dissect_cleanly(l2tpns: L2tpnsPeer, tmp_path: Path) -> None:
    pcap = tmp_path / "l2tpns.pcapng"
    with capture(pcap, l2tpns.netns.host_ifname, "udp port 1701"):
        for auth, proxy in (("chap", True), ("mschapv2", False)):
            config = lac_config(
                tmp_path,
                l2tpns.lns.address,
                listen=l2tpns.netns.host_address,
                auth=auth,
                proxy=proxy,
            )
            run = simulate(config, 10, rate=100)
            assert run.summary["established"] == 10, (run.summary, run.output[-3000:])
    assert malformed(pcap) == ""
    seen = protocols(pcap)
    for name in ("l2tp", "ppp", "lcp", "chap", "ipcp"):
        assert seen[name] > 0, (name, seen)
    types = message_types(pcap)
    for kind in (SCCRQ, SCCRP, SCCCN, STOPCCN, ICRQ, ICRP, ICCN, CDN):
        assert types[kind] > 0, (kind, types)
    assert avp_types(pcap) >= PROXY_AVPS


def _pcap(packets: list[bytes]) -> bytes:
    """A classic pcap file of raw IPv4 packets (LINKTYPE_RAW)."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    for n, packet in enumerate(packets):
        out += struct.pack("<IIII", n, 0, len(packet), len(packet)) + packet
    return out


def _udp(payload: bytes, dport: int = 1701) -> bytes:
    udp = struct.pack(">HHHH", 1701, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(
        ">BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0,
        64,
        17,
        0,
        bytes([127, 0, 0, 1]),
        bytes([127, 0, 0, 1]),
    )
    return ip + udp


def test_the_malformed_check_sees_a_malformed_packet(tmp_path: Path) -> None:
    """The check itself: a control message whose Length runs past the datagram, and one
    whose AVP runs past the message, are flagged; a well-formed ZLB is not."""
    zlb = bytes.fromhex("C802000C4518000000010002")
    long_length = bytes.fromhex("C80200404518000000010002")  # says 64 bytes, has 12
    cut_avp = bytes.fromhex("C80200144518000000010002") + bytes.fromhex("800A000000000001")
    pcap = tmp_path / "bad.pcap"
    pcap.write_bytes(_pcap([_udp(zlb), _udp(long_length), _udp(cut_avp)]))
    flagged = [line for line in malformed(pcap).splitlines() if line.strip()]
    assert len(flagged) == 2, flagged
    good = tmp_path / "good.pcap"
    good.write_bytes(_pcap([_udp(zlb)]))
    assert malformed(good) == ""
