"""A full call in memory: L2TP tunnel cores and PPP link cores together, no sockets, no trio.

Per call: ICRQ/ICRP/ICCN (+ acks), then PPP over L2TP data messages (LCP both ways, CHAP,
IPCP with an assigned address and DNS) until both links report NetworkUp; teardown is a CDN
from the LAC and ``lower_down`` on both links. The LNS link is opened on CallEstablished; the
subscriber link opens on the first frame from the LNS (so no frame reaches a session before
its ICCN did). This is what a call costs in Python without any I/O: the ceiling for calls/s
on one core, per side.

Usage: python bench/bench_full_call.py [--sizes 1000,10000] [--tunnels 1,10] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import random
from collections.abc import Sequence
from ipaddress import IPv4Address

from _util import CpuWatch, machine, no_gc, table
from bench_l2tp_core import TunnelPairs
from bench_ppp_core import PASSWORD, lns_config, subscriber_config

from kl2tp.l2tp import events as ev
from kl2tp.l2tp.tunnel import Tunnel
from ppp import AddressRequest, AuthRequest, ChapCredentials, Link, LinkConfig, NetworkUp
from ppp import verify_chap_md5 as verify

data_ready = getattr(Tunnel, "data_ready", None)


class FullCalls(TunnelPairs):
    """Tunnel pairs whose established calls run PPP through the tunnels' data messages."""

    def __init__(self, count: int) -> None:
        self.lns_cfg: LinkConfig = lns_config(send_address_control=False)
        self.sub_cfg: LinkConfig = subscriber_config()
        self.rng_lns = random.Random(7)
        self.rng_sub = random.Random(8)
        self.links: dict[tuple[int, int], Link] = {}
        """(local tunnel id, local sid) -> link, both sides."""
        self.ppp_up = 0
        self.next_address = int(IPv4Address("10.1.0.0"))
        super().__init__(count)

    def _drain(self, tunnel: Tunnel, lns: bool) -> None:
        now = self.now
        tid = tunnel.local_tunnel_id
        links = self.links
        while (event := tunnel.next_event()) is not None:
            if isinstance(event, ev.DataReceived):
                key = (tid, event.sid)
                link = links.get(key)
                if link is None:
                    if lns:
                        continue
                    link = links[key] = Link(self.sub_cfg, rng=self.rng_sub)
                    link.open(now)
                link.receive_frame(event.payload, now)
                self._link_io(tunnel, event.sid, link, lns)
            elif isinstance(event, ev.IncomingCall):
                tunnel.answer_call(event.sid, now)
            elif isinstance(event, ev.CallEstablished):
                if lns:
                    sid = event.sid
                    link = links[(tid, sid)] = Link(self.lns_cfg, rng=self.rng_lns)
                    link.open(now)
                    self._link_io(tunnel, sid, link, lns)
                if data_ready is not None:
                    # The session takes data from here on (the daemon: its channel is open).
                    # Trees before data_ready hand data over without it.
                    data_ready(tunnel, event.sid, now)
            elif isinstance(event, ev.CallClosed):
                link = links.pop((tid, event.sid), None)
                if link is not None:
                    link.lower_down(now)
                    while link.next_event() is not None:
                        pass
                if lns:
                    self.closed += 1

    def _link_io(self, tunnel: Tunnel, sid: int, link: Link, lns: bool) -> None:
        """What the daemon's per-session glue does: events to AAA/pool, frames to L2TP."""
        now = self.now
        while True:
            for frame in link.frames_to_send():
                tunnel.send_data(sid, frame)
            event = link.next_event()
            if event is None:
                return
            if isinstance(event, AuthRequest):
                creds = event.credentials
                assert isinstance(creds, ChapCredentials)
                ok = verify(PASSWORD, creds.ident, creds.challenge, creds.response)
                link.auth_result(now, ok)
            elif isinstance(event, AddressRequest):
                self.next_address += 1
                link.address_result(now, IPv4Address(self.next_address))
            elif isinstance(event, NetworkUp):
                self.ppp_up += 1


def run_size(total: int, tunnels: int) -> dict[str, float]:
    net = FullCalls(tunnels)
    net.reset_clocks()
    with no_gc():
        wall = CpuWatch()
        with wall:
            calls = net.place(total)
            net.settle()
        assert net.ppp_up == 2 * total, (net.ppp_up, total)
        up = (wall.cpu, net.lac_cpu.seconds, net.lns_cpu.seconds)
        net.reset_clocks()
        down = CpuWatch()
        with down:
            net.hangup(calls)
            net.settle()
        assert net.closed == total
    return {
        "up": total / up[0],
        "up_lac_us": up[1] / total * 1e6,
        "up_lns_us": up[2] / total * 1e6,
        "lns_ceiling": total / up[2],
        "down": total / down.cpu,
        "down_lac_us": net.lac_cpu.seconds / total * 1e6,
        "down_lns_us": net.lns_cpu.seconds / total * 1e6,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--tunnels", default="1,10")
    p.add_argument("--profile", metavar="FILE", help="cProfile 10k calls in 1 tunnel to FILE")
    args = p.parse_args(argv)
    print(f"# full call bench: L2TP + PPP cores in memory  ({machine()})")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(run_size, 10_000, 1)
        prof.dump_stats(args.profile)
        print(f"profile written to {args.profile}")
        return 0
    rows = []
    for k in (int(s) for s in args.tunnels.split(",") if s):
        for size in (int(s) for s in args.sizes.split(",") if s):
            r = run_size(size, k)
            rows.append(
                (k, size, r["up"], r["up_lac_us"], r["up_lns_us"], r["lns_ceiling"], r["down"],
                 r["down_lac_us"], r["down_lns_us"])
            )  # fmt: skip
    print()
    print("full calls (L2TP session + LCP/CHAP/IPCP), both sides in one process, CPU time;")
    print("'LNS calls/s' = calls per second of one core spent on the LNS side alone")
    print(
        table(
            ("tunnels", "calls", "up/s", "LAC us", "LNS us", "LNS calls/s", "down/s", "LAC us",
             "LNS us"),
            rows,
        )
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
