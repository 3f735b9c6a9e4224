"""PPP core throughput and memory: an LNS link and a subscriber link back to back in memory.

Each negotiation: LCP both ways (MRU, magic), CHAP (MD5) from the LNS, IPCP with the LNS
assigning the address and two DNS servers, until both sides report NetworkUp. The LNS's AAA
verdict is computed in line with ``verify_chap_md5`` (what the local users backend does).

  negotiations/s   N pairs negotiated back to back (interleaved, like many calls at once)
  memory           tracemalloc per Opened link (LNS and subscriber apart)

Usage: python bench/bench_ppp_core.py [--sizes 1000,10000] [--memory 100000] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import random
from collections.abc import Sequence
from ipaddress import IPv4Address

from _util import CpuWatch, Stopwatch, machine, no_gc, table, traced_memory

from ppp import (
    AddressRequest,
    AuthMethod,
    AuthRequest,
    ChapCredentials,
    IpcpConfig,
    Link,
    LinkConfig,
    NetworkUp,
    verify_chap_md5,
)

PASSWORD = "bench-password"
DNS = (IPv4Address("192.0.2.53"), IPv4Address("192.0.2.54"))


def lns_config(*, send_address_control: bool = True) -> LinkConfig:
    return LinkConfig(
        send_address_control=send_address_control,
        auth=(AuthMethod.CHAP,),
        hostname="lns",
        ipcp=IpcpConfig(local_address=IPv4Address("10.0.0.1"), assign_peer_address=True, dns=DNS),
    )


def subscriber_config() -> LinkConfig:
    return LinkConfig(username="user", password=PASSWORD, ipcp=IpcpConfig(request_dns=True))


class Pairs:
    """N LNS/subscriber link pairs in one process and a lean driver."""

    def __init__(self, count: int, *, seed: int = 1) -> None:
        self.now = 0.0
        self.lns_sw = Stopwatch()
        self.sub_sw = Stopwatch()
        rng_lns = random.Random(seed)
        rng_sub = random.Random(seed + 1)
        lns_cfg, sub_cfg = lns_config(), subscriber_config()
        self.pairs = [
            (
                Link(lns_cfg, rng=rng_lns, name=f"lns {n}"),
                Link(sub_cfg, rng=rng_sub, name=f"sub {n}"),
            )
            for n in range(count)
        ]
        self.up = 0
        self._next_address = int(IPv4Address("10.1.0.0"))

    def _lns_events(self, link: Link) -> None:
        now = self.now
        while (event := link.next_event()) is not None:
            if isinstance(event, AuthRequest):
                creds = event.credentials
                assert isinstance(creds, ChapCredentials)
                ok = verify_chap_md5(PASSWORD, creds.ident, creds.challenge, creds.response)
                link.auth_result(now, ok)
            elif isinstance(event, AddressRequest):
                self._next_address += 1
                link.address_result(now, IPv4Address(self._next_address))
            elif isinstance(event, NetworkUp):
                self.up += 1

    def _sub_events(self, link: Link) -> None:
        while (event := link.next_event()) is not None:
            if isinstance(event, NetworkUp):
                self.up += 1

    def negotiate(self) -> None:
        """Open every pair and move frames until all are quiet."""
        now = self.now
        lns_sw, sub_sw = self.lns_sw, self.sub_sw
        for lns, sub in self.pairs:
            with lns_sw:
                lns.open(now)
            with sub_sw:
                sub.open(now)
        active = self.pairs
        while active:
            still = []
            for pair in active:
                lns, sub = pair
                moved = False
                with lns_sw:
                    self._lns_events(lns)
                    out = lns.frames_to_send()
                if out:
                    moved = True
                    with sub_sw:
                        for frame in out:
                            sub.receive_frame(frame, now)
                with sub_sw:
                    self._sub_events(sub)
                    out = sub.frames_to_send()
                if out:
                    moved = True
                    with lns_sw:
                        for frame in out:
                            lns.receive_frame(frame, now)
                if moved:
                    still.append(pair)
            active = still


def run_size(count: int) -> tuple[float, float, float]:
    """(negotiations/s, LNS us per link, subscriber us per link), CPU time."""
    pairs = Pairs(count)
    with no_gc():
        wall = CpuWatch()
        with wall:
            pairs.negotiate()
    assert pairs.up == 2 * count, (pairs.up, count)
    return count / wall.cpu, pairs.lns_sw.seconds / count * 1e6, pairs.sub_sw.seconds / count * 1e6


def memory(count: int) -> tuple[float, float]:
    """Bytes per Opened link: (LNS, subscriber)."""
    with traced_memory() as current:
        base = current()
        pairs = Pairs(count)
        pairs.negotiate()
        assert pairs.up == 2 * count
        full = current()
        lns_only = [lns for lns, _ in pairs.pairs]
        pairs.pairs = []
        del pairs
        gc.collect()
        without_sub = current()
        del lns_only
    sub = (full - without_sub) / count
    lns = (without_sub - base) / count
    return lns, sub


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000", help="pairs to negotiate, comma separated")
    p.add_argument("--memory", type=int, default=100_000, help="links for the memory figure")
    p.add_argument("--profile", metavar="FILE", help="cProfile 10k negotiations to FILE")
    args = p.parse_args(argv)
    print(f"# PPP core bench  ({machine()})")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(run_size, 10_000)
        prof.dump_stats(args.profile)
        print(f"profile written to {args.profile}")
        return 0
    rows = []
    for size in (int(s) for s in args.sizes.split(",") if s):
        rate, lns_us, sub_us = run_size(size)
        rows.append((size, rate, lns_us, sub_us))
    print()
    print("LCP + CHAP + IPCP negotiations, both links in one process, CPU time")
    print(table(("pairs", "negotiations/s", "LNS us", "subscriber us"), rows))
    if args.memory:
        lns, sub = memory(args.memory)
        print()
        print(f"memory at {args.memory:,} Opened link pairs (tracemalloc, bytes per link)")
        print(table(("link", "bytes"), [("LNS", lns), ("subscriber", sub)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
