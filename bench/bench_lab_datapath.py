"""The kernel data path against bare veth, in the lab guest, one run.

One subscriber call, kl2tp-lac in client mode (kernel data plane) to kl2tp-lns (kernel data
plane), across the lab's three namespaces (tests/lab/labdaemons.py): subscriber 10.31.0.2 --
router -- 10.32.0.2 LNS. The same iperf3 client in the subscriber's namespace sends to the
same iperf3 server in the LNS's namespace either

- **ppp**: to the LNS's PPP address through the subscriber's pppN: PPP -> L2TP -> UDP in the
  subscriber's kernel, routed by the middle namespace, decapsulated into the LNS's pppN; or
- **veth**: to the LNS's veth address: the same namespaces and router, no tunnel;
- **veth-nogso**: the same with TSO, GSO and GRO off on the four veth ends (``ethtool -K``):
  bare veth moves TCP as 64 KB super-packets, a pppN (no GSO in ppp_generic or l2tp) one
  MTU-sized packet at a time, so this path shows the per-packet cost without tunnelling;

alternating, ``--repeat`` times each: a bulk TCP transfer upstream (``-t``) and downstream
(``-R``: the LNS sends, as to a subscriber downloading) and a small-packet UDP stream
(``-u -l 64 -b 0``: as fast as the sender can). ``--txqueuelen N`` sets both pppN's transmit
queue (ppp_generic's default is 3 packets) before the runs; the qdisc drops on both pppN are
printed either way. Prints throughput (TCP bits/s, UDP
datagrams/s received) per path, the ppp/veth ratio of the medians, the daemons' CPU time
during the ppp transfers, their data-packet counters (PPP frames that reached Python: 0 is
the point) and the kernel session counters that moved.

    tests/lab/run -- .venv/bin/python bench/bench_lab_datapath.py [--repeat 3] [-t 5]

The guest has one CPU: sender, receiver, both kernels' encapsulation and the router all
share it, so the figures are the cost per packet of each path, not a line rate.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "lab"))

from labdaemons import (  # noqa: E402
    LNS,
    LNS_ADDR,
    MID,
    PPP_LOCAL,
    SUB,
    Call,
    client_call,
    cpu_seconds,
    data_counters,
    iperf3,
    iperf3_server,
    session_kernel,
    three_namespaces,
)
from labutil import run as run_cmd  # noqa: E402

UDP_LEN = 64


def tcp_bps(report: dict[str, Any]) -> float:
    return float(report["end"]["sum_received"]["bits_per_second"])


def udp_pps(report: dict[str, Any]) -> tuple[float, float]:
    """Datagrams per second the server received, and the loss fraction."""
    s = report["end"]["sum"]
    got = s["packets"] - s["lost_packets"]
    return got / s["seconds"], s["lost_packets"] / max(s["packets"], 1)


def mtu(ns: str, dev: str) -> int:
    out = json.loads(run_cmd("ip", "-n", ns, "-j", "link", "show", dev).stdout)
    return int(out[0]["mtu"])


VETHS = ((SUB, "v-sub"), (MID, "v-mid-sub"), (MID, "v-mid-lns"), (LNS, "v-lns"))
PATHS = ("veth", "ppp", "veth-nogso")


def offloads(on: bool) -> None:
    """TSO, GSO and GRO on or off on every veth end of the topology."""
    state = "on" if on else "off"
    for ns, dev in VETHS:
        run_cmd("ip", "netns", "exec", ns, "ethtool", "-K", dev,
                "tso", state, "gso", state, "gro", state)  # fmt: skip


def qdisc(ns: str, dev: str) -> str:
    """The interface's qdisc line and its sent/dropped figures."""
    out = run_cmd("ip", "netns", "exec", ns, "tc", "-s", "qdisc", "show", "dev", dev).stdout
    return " | ".join(line.strip() for line in out.splitlines()[:2])


def measure(args: argparse.Namespace, call: Call, tmp: pathlib.Path) -> dict[str, Any]:
    dst = {"ppp": PPP_LOCAL, "veth": LNS_ADDR, "veth-nogso": LNS_ADDR}
    tcp: dict[str, list[float]] = {p: [] for p in PATHS}
    down: dict[str, list[float]] = {p: [] for p in PATHS}
    udp: dict[str, list[float]] = {p: [] for p in PATHS}
    loss: dict[str, list[float]] = {p: [] for p in PATHS}
    cpu = {"lns": 0.0, "lac": 0.0}
    ppp_seconds = 0.0
    before_k = {"lns": session_kernel(call.lns_sock), "lac": session_kernel(call.lac_sock)}
    before_d = {"lns": data_counters(call.lns_sock), "lac": data_counters(call.lac_sock)}
    if args.txqueuelen:
        for ns, dev in ((SUB, call.sub_if), (LNS, call.lns_if)):
            run_cmd("ip", "-n", ns, "link", "set", "dev", dev, "txqueuelen", str(args.txqueuelen))
    with iperf3_server(LNS, tmp / "iperf3.log"):
        for rep in range(args.repeat):
            order = PATHS if rep % 2 == 0 else PATHS[::-1]
            for kind in ("tcp", "tcp-down", "udp"):
                for path in order:
                    offloads(path != "veth-nogso")
                    c0 = {"lns": cpu_seconds(call.lns.proc.pid),
                          "lac": cpu_seconds(call.lac.proc.pid)}  # fmt: skip
                    if kind == "tcp":
                        r = iperf3(SUB, dst[path], "-t", str(args.time))
                        tcp[path].append(tcp_bps(r))
                    elif kind == "tcp-down":
                        r = iperf3(SUB, dst[path], "-R", "-t", str(args.time))
                        down[path].append(tcp_bps(r))
                    else:
                        r = iperf3(SUB, dst[path], "-u", "-l", str(UDP_LEN), "-b", "0",
                                   "-t", str(args.time))  # fmt: skip
                        pps, lost = udp_pps(r)
                        udp[path].append(pps)
                        loss[path].append(lost)
                    if path == "ppp":
                        cpu["lns"] += cpu_seconds(call.lns.proc.pid) - c0["lns"]
                        cpu["lac"] += cpu_seconds(call.lac.proc.pid) - c0["lac"]
                        ppp_seconds += args.time
                    if kind == "udp":
                        print(f"  {kind} {path}: {udp[path][-1]:.0f} datagrams/s received, "
                              f"loss {loss[path][-1]:.1%}", flush=True)  # fmt: skip
                    else:
                        got = (tcp if kind == "tcp" else down)[path][-1]
                        print(f"  {kind} {path}: {got / 1e6:.1f} Mbit/s", flush=True)
    after_k = {"lns": session_kernel(call.lns_sock), "lac": session_kernel(call.lac_sock)}
    after_d = {"lns": data_counters(call.lns_sock), "lac": data_counters(call.lac_sock)}
    med = statistics.median
    return {
        "repeat": args.repeat,
        "seconds_each": args.time,
        "mtu": {
            "sub_ppp": mtu(SUB, call.sub_if),
            "lns_ppp": mtu(LNS, call.lns_if),
            "veth": mtu(SUB, "v-sub"),
        },
        "txqueuelen": args.txqueuelen,
        "ppp_qdisc": {ns: qdisc(ns, dev) for ns, dev in ((SUB, call.sub_if), (LNS, call.lns_if))},
        "tcp_mbit_s": {p: [round(v / 1e6, 1) for v in tcp[p]] for p in tcp},
        "tcp_down_mbit_s": {p: [round(v / 1e6, 1) for v in down[p]] for p in down},
        "tcp_down_ratio_ppp_to_veth": round(med(down["ppp"]) / med(down["veth"]), 3),
        "tcp_down_ratio_ppp_to_veth_nogso": round(med(down["ppp"]) / med(down["veth-nogso"]), 3),
        "udp_pps": {p: [round(v) for v in udp[p]] for p in udp},
        "udp_loss": {p: [round(v, 3) for v in loss[p]] for p in loss},
        "tcp_ratio_ppp_to_veth": round(med(tcp["ppp"]) / med(tcp["veth"]), 3),
        "tcp_ratio_ppp_to_veth_nogso": round(med(tcp["ppp"]) / med(tcp["veth-nogso"]), 3),
        "udp_ratio_ppp_to_veth": round(med(udp["ppp"]) / med(udp["veth"]), 3),
        "udp_ratio_ppp_to_veth_nogso": round(med(udp["ppp"]) / med(udp["veth-nogso"]), 3),
        "daemon_cpu_s_during_ppp": {k: round(v, 2) for k, v in cpu.items()},
        "daemon_cpu_share_during_ppp": {k: round(v / ppp_seconds, 4) for k, v in cpu.items()},
        "data_counters_moved": {
            side: {k: after_d[side][k] - before_d[side][k] for k in after_d[side]}
            for side in after_d
        },
        "kernel_session_moved": {
            side: {k: after_k[side][k] - before_k[side][k] for k in after_k[side]}
            for side in after_k
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--txqueuelen", type=int, default=0, help="set on both pppN first")
    parser.add_argument("-t", "--time", type=int, default=5, help="seconds per iperf3 run")
    args = parser.parse_args()
    if not os.environ.get("KL2TP_LAB"):
        print("run this inside the lab guest: tests/lab/run -- .venv/bin/python " + sys.argv[0])
        return 2
    print(f"guest: {os.cpu_count()} cpu, kernel {os.uname().release}", flush=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kl2tp-datapath-"))
    with three_namespaces(), client_call(tmp) as call:
        out = measure(args, call, tmp)
    print(json.dumps(out, sort_keys=True))
    print(
        f"TCP up ppp/veth {out['tcp_ratio_ppp_to_veth']} (/veth without GSO "
        f"{out['tcp_ratio_ppp_to_veth_nogso']}), down {out['tcp_down_ratio_ppp_to_veth']} "
        f"({out['tcp_down_ratio_ppp_to_veth_nogso']}), UDP {UDP_LEN} B ppp/veth "
        f"{out['udp_ratio_ppp_to_veth']}; daemons' CPU during the ppp runs "
        f"{out['daemon_cpu_share_during_ppp']}; PPP frames through Python "
        f"{out['data_counters_moved']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
