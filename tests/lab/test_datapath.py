"""Bulk TCP and a small-packet UDP stream through subscriber pppN -> L2TP -> LNS pppN move
the kernels' counters and not one frame through either daemon (issue 14 item 4).

The figures (throughput against bare veth, the daemons' CPU during the transfer) are
bench/bench_lab_datapath.py's; this test only checks where the packets went, so it asserts
counts, never times.
"""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Iterator

import pytest
from labdaemons import (
    LNS,
    PPP_LOCAL,
    SUB,
    Call,
    client_call,
    data_counters,
    iperf3,
    iperf3_server,
    session_kernel,
    three_namespaces,
)

from tests.parts import missing

pytestmark = pytest.mark.lab

TCP_BYTES = 4 << 20
UDP_LEN = 64


@pytest.fixture
def call(tmp_path: pathlib.Path) -> Iterator[Call]:
    if shutil.which("iperf3") is None:
        missing("iperf3 is not installed (scripts/lab-deps.sh installs it)")
    with three_namespaces(), client_call(tmp_path) as c:
        yield c


def test_bulk_tcp_and_small_udp_move_kernel_counters_not_the_daemons(
    call: Call, tmp_path: pathlib.Path
) -> None:
    before = {name: session_kernel(sock) for name, sock in (("lns", call.lns_sock),
                                                          ("lac", call.lac_sock))}  # fmt: skip
    with iperf3_server(LNS, tmp_path / "iperf3.log"):
        tcp = iperf3(SUB, PPP_LOCAL, "-n", str(TCP_BYTES))
        udp = iperf3(SUB, PPP_LOCAL, "-u", "-l", str(UDP_LEN), "-b", "500K", "-t", "1")
    after = {"lns": session_kernel(call.lns_sock), "lac": session_kernel(call.lac_sock)}
    grew = {side: {k: after[side][k] - before[side][k] for k in after[side]} for side in after}

    assert tcp["end"]["sum_sent"]["bytes"] >= TCP_BYTES
    received = tcp["end"]["sum_received"]["bytes"]  # what the server read while it measured
    assert received > 0
    udp_sum = udp["end"]["sum"]
    udp_got = udp_sum["packets"] - udp_sum["lost_packets"]
    assert udp_got > 0
    # Upstream, every byte iperf3 sent crossed the subscriber's kernel session (L2TP and PPP
    # headers on top) and arrived on the LNS's; the LNS's kernel counted at least every TCP
    # segment's payload and every UDP datagram that reached the server.
    assert grew["lac"]["tx_bytes"] >= received + udp_got * UDP_LEN
    assert grew["lns"]["rx_bytes"] >= received + udp_got * UDP_LEN
    assert grew["lns"]["rx_packets"] >= udp_got + received // 1500
    # Downstream: the TCP acknowledgements (and iperf3's control connection).
    assert grew["lns"]["tx_packets"] > 0
    assert grew["lac"]["rx_packets"] == grew["lns"]["tx_packets"]
    assert grew["lns"]["rx_errors"] == grew["lac"]["rx_errors"] == 0
    # Not one of those frames reached Python on either side.
    for sock in (call.lns_sock, call.lac_sock):
        assert data_counters(sock) == {"data_rx": 0, "data_early": 0}
