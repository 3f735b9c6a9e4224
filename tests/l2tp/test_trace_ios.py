"""The debug trace an IOS engineer reads (issue 11): what kl2tp prints that IOS prints.

Checked against the reference Cisco call flow's wording: the LNS traces an incoming SCCRQ from
its bytes (parse lines, then ``I SCCRQ, flg TLS, ver 2, len N, ...`` and the hex dump), says
``New tunnel created for remote NAME, address A`` before its SCCRP, and its hex dumps are read
back by ``kl2tpctl decode`` as they appear in the log; the subscriber's side shows the CHAP
Challenge and Success and the PAP Ack it receives; a held IPCP request is traced once.
"""

from __future__ import annotations

import logging
import random
import re

import pytest

from kl2tp.decode_cmd import parse_hex
from kl2tp.l2tp.endpoint import EndpointConfig, EndpointCore
from kl2tp.l2tp.message import decode
from kl2tp.l2tp.trace import AVP_LEVEL, masked
from kl2tp.l2tp.tunnel import Tunnel, TunnelConfig
from kl2tp.log import TextFormatter
from ppp.config import AuthMethod

from ..ppp.helpers import Pair, lns_config, subscriber_config

SECRET = b"hello"
PEER = ("198.51.100.7", 1701)


def handshake(caplog: pytest.LogCaptureFixture) -> tuple[EndpointCore, bytes, bytes, list[str]]:
    """A LAC tunnel core dials an LNS endpoint core; the LNS's trace lines as a log shows them
    (text format: timestamp, then the message)."""
    caplog.set_level(AVP_LEVEL, logger="kl2tp.l2tp")
    lns = EndpointCore(
        EndpointConfig(lns=True),
        TunnelConfig(hostname="l2tp-gw", secret=SECRET),
        rng=random.Random(1),
    )
    lac = Tunnel(
        TunnelConfig(hostname="hgw", secret=SECRET), 17688, initiator=True,
        rng=random.Random(2), now=0.0,
    )  # fmt: skip
    lac.connect(0.0)
    (sccrq,) = lac.datagrams_to_send(0.0)
    caplog.clear()
    lns.receive_datagram(sccrq, PEER, 0.0)
    (entry,) = lns.tunnels.values()
    (sccrp,) = [d for d, _ in lns.datagrams_to_send(0.0)] + entry.tunnel.datagrams_to_send(0.0)
    lac.receive_datagram(sccrp, 0.0)
    scccn = lac.datagrams_to_send(0.0)[0]
    lns.receive_datagram(scccn, PEER, 0.0)
    for tid in lns.ready():
        lns.feed(lns.tunnels[tid], 0.0)
    formatter = TextFormatter()
    lines = [formatter.format(r) for r in caplog.records if r.name.startswith("kl2tp.l2tp")]
    return lns, sccrq, scccn, lines


def dump_after(lines: list[str], marker: str) -> list[str]:
    """The hex dump lines that follow the first line containing ``marker``."""
    start = next(i for i, line in enumerate(lines) if marker in line)
    out = []
    for line in lines[start + 1 :]:
        if not re.search(r"L2TP: {10}[0-9A-F]{2}( [0-9A-F]{2})*$", line):
            break
        out.append(line)
    return out


def test_incoming_sccrq_is_traced_from_its_bytes(caplog: pytest.LogCaptureFixture) -> None:
    lns, sccrq, _, lines = handshake(caplog)
    (tid,) = lns.tunnels
    text = "\n".join(lines)
    # IOS order: parse lines, "No missing AVPs", the packet line, its hex dump.
    parse = text.index(f"Tnl {tid} L2TP: Parse SCCRQ")
    assert text.index(f"Tnl {tid} L2TP: Hostname hgw") > parse
    assert text.index(f"Tnl {tid} L2TP: Assigned Tunnel ID 17688") > parse
    missing = text.index(f"Tnl {tid} L2TP: No missing AVPs in SCCRQ")
    packet = text.index(
        f"Tnl {tid} L2TP: I SCCRQ, flg TLS, ver 2, len {len(sccrq)}, tnl 0, cl 0, ns 0, nr 0"
    )
    assert parse < missing < packet
    created = text.index(f"Tnl {tid} L2TP: New tunnel created for remote hgw, address {PEER[0]}")
    assert packet < created < text.index(f"Tnl {tid} L2TP: O SCCRP  to hgw tnlid 17688")


def test_kl2tpctl_decode_reads_the_dump_in_kl2tps_own_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, sccrq, _, lines = handshake(caplog)
    dump = dump_after(lines, "I SCCRQ, flg TLS")
    assert len(dump) == (len(sccrq) + 15) // 16
    assert all(re.match(r"\w{3} \d\d \d{4} [\d:.]+: Tnl \d+ L2TP: ", line) for line in dump)
    data, truncated = parse_hex("\n".join(dump))
    assert (data, truncated) == (sccrq, False)  # nothing in an SCCRQ is masked
    # Our own packets too: the SCCRP under its "O" line.
    out = dump_after(lines, "O SCCRP, flg TLS")
    assert decode(parse_hex("\n".join(out))[0], SECRET).msg_type is not None


def test_the_dump_never_shows_a_challenge_response(caplog: pytest.LogCaptureFixture) -> None:
    _, _, scccn, lines = handshake(caplog)
    response = decode(scccn, SECRET).get(13)
    assert isinstance(response, bytes) and len(response) == 16
    dump = dump_after(lines, "I SCCCN, flg TLS")
    data, _ = parse_hex("\n".join(dump))
    assert data == masked(scccn) != scccn
    assert decode(data, SECRET).get(13) == bytes(16)  # still decodes, value zeroed
    text = "\n".join(lines).replace(" ", "")
    assert response.hex().upper() not in text


def test_subscriber_traces_what_it_receives(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kl2tp.ppp")
    for method in (AuthMethod.CHAP, AuthMethod.MSCHAPV2, AuthMethod.PAP):
        pair = Pair(lns_config(method), subscriber_config())
        pair.open()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert re.search(r'sub CHAP: I CHALLENGE id (\d+) len \d+ from "lns"', text), text
    ident = re.search(r"sub CHAP: I CHALLENGE id (\d+)", text).group(1)  # type: ignore[union-attr]
    assert f"sub CHAP: I SUCCESS id {ident} len 4" in text  # CHAP-MD5: no message
    lengths = [int(n) for n in re.findall(r"sub CHAP: I SUCCESS id \d+ len (\d+)", text)]
    assert max(lengths) >= 4 + 42  # MS-CHAPv2: "S=<40 hex digits> M=..."
    assert re.search(r"sub PAP: I AUTH-ACK id \d+ len \d+", text)


def test_a_held_ipcp_request_is_traced_once(caplog: pytest.LogCaptureFixture) -> None:
    """The LNS holds the subscriber's first IPCP request until the pool names an address,
    then answers it: one ``I CONFREQ`` line for one request."""
    caplog.set_level(logging.DEBUG, logger="kl2tp.ppp")
    pair = Pair(lns_config(AuthMethod.CHAP), subscriber_config())
    pair.open()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("lns IPCP: I ")]
    assert lines and len(lines) == len(set(lines)), lines
