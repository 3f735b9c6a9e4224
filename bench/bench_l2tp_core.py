"""L2TP core throughput and memory: LAC and LNS tunnel cores back to back in memory.

No sockets, no trio: datagrams move between the cores in lists, the clock is a float that
only advances when both sides are idle and a timer (delayed ack) is due. What is timed is the
work of both cores together (one process, one CPU), split per side.

  sessions/s up    LAC place_call x N, ICRQ/ICRP/ICCN and acks, until every call is
                   established on both sides (the LNS answers each IncomingCall at once)
  sessions/s down  LAC hangup x N, CDN and acks, until the LNS has cleared them all
  memory           tracemalloc, per established session (LAC core and LNS core apart)
  codec            encode_control / decode per message type, microseconds

Usage: python bench/bench_l2tp_core.py [--sizes 1000,10000,60000] [--tunnels 10,100]
       [--memory 100000] [--skip-codec] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import random
import sys
from collections.abc import Sequence

from _util import CpuWatch, Stopwatch, machine, no_gc, per_call_us, table, traced_memory

from kl2tp.l2tp import events as ev
from kl2tp.l2tp.avp import Avp, ProtocolVersion, ResultCode
from kl2tp.l2tp.constants import AvpType, MessageType
from kl2tp.l2tp.message import ControlMessage, decode, encode_control, encode_data
from kl2tp.l2tp.tunnel import Tunnel, TunnelConfig

MAX_PER_TUNNEL = 65_000
"""Session ids are 16 bits (RFC 2661): one tunnel holds at most 65,534 sessions."""


class TunnelPairs:
    """`count` LAC/LNS tunnel pairs in one process, established, with a lean driver.

    The driver does what the daemon's glue does per datagram (feed, drain events, answer
    calls) and nothing else, so the figures are the cores' cost.
    """

    def __init__(self, count: int, *, seed: int = 1, secret: bytes | None = b"bench") -> None:
        self.now = 0.0
        self.lac_cpu = Stopwatch()
        self.lns_cpu = Stopwatch()
        self.pairs: list[tuple[Tunnel, Tunnel]] = []
        self.up = 0
        self.closed = 0
        # Every call of a run is placed before any is answered: no bound on calls in setup
        # per tunnel (the daemon's default is 1,000), which this bench does not measure.
        lac_cfg = TunnelConfig(hostname="lac", secret=secret, max_setup_sessions_per_tunnel=1 << 30)
        lns_cfg = TunnelConfig(hostname="lns", secret=secret, max_setup_sessions_per_tunnel=1 << 30)
        rng_lac = random.Random(seed)
        rng_lns = random.Random(seed + 1)
        for n in range(count):
            lac = Tunnel(lac_cfg, 1 + n, initiator=True, rng=rng_lac, now=self.now)
            lns = Tunnel(lns_cfg, 30_001 + n, initiator=False, rng=rng_lns, now=self.now)
            self.pairs.append((lac, lns))
            lac.connect(self.now)
        self.settle()
        for lac, lns in self.pairs:
            assert lac.state == "established" and lns.state == "established"
        self.up = 0

    def _drain(self, tunnel: Tunnel, lns: bool) -> None:
        now = self.now
        while (event := tunnel.next_event()) is not None:
            if isinstance(event, ev.IncomingCall):
                tunnel.answer_call(event.sid, now)
            elif isinstance(event, ev.CallEstablished):
                if lns:
                    self.up += 1
            elif isinstance(event, ev.CallClosed) and lns:
                self.closed += 1

    def pump(self) -> bool:
        """Move datagrams both ways until quiet. Returns True if anything moved."""
        moved_any = False
        now = self.now
        lac_sw, lns_sw = self.lac_cpu, self.lns_cpu
        while True:
            moved = False
            for lac, lns in self.pairs:
                with lac_sw:
                    self._drain(lac, False)
                    out = lac.datagrams_to_send(now)
                if out:
                    moved = True
                    with lns_sw:
                        for data in out:
                            lns.receive_datagram(data, now)
                with lns_sw:
                    self._drain(lns, True)
                    out = lns.datagrams_to_send(now)
                if out:
                    moved = True
                    with lac_sw:
                        for data in out:
                            lac.receive_datagram(data, now)
            if not moved:
                return moved_any
            moved_any = True

    def settle(self, until: float | None = None) -> None:
        """Pump; when quiet, step the clock to the next due timer and go on."""
        while True:
            self.pump()
            timers = [
                (t, tunnel)
                for pair in self.pairs
                for tunnel in pair
                if (t := tunnel.get_timer()) is not None
            ]
            if not timers:
                return
            due = min(t for t, _ in timers)
            if until is not None and due > until:
                return
            # Only delayed acks are expected here; stop before hello/idle timers.
            if due > self.now + 1.0 and until is None:
                return
            self.now = max(self.now, due)
            for t, tunnel in timers:
                if t <= self.now:
                    sw = self.lns_cpu if tunnel.local_tunnel_id > 30_000 else self.lac_cpu
                    with sw:
                        tunnel.handle_timer(self.now)

    def place(self, total: int) -> list[tuple[Tunnel, int]]:
        """Place `total` calls spread over the tunnels (LAC side); returns (tunnel, sid)."""
        calls = []
        k = len(self.pairs)
        with self.lac_cpu:
            for n in range(total):
                lac = self.pairs[n % k][0]
                call = ev.CallParams(serial=n, bearer_type=1, framing_type=1)
                calls.append((lac, lac.place_call(self.now, call)))
        return calls

    def hangup(self, calls: Sequence[tuple[Tunnel, int]]) -> None:
        with self.lac_cpu:
            for lac, sid in calls:
                lac.hangup(sid, self.now, 3)

    def reset_clocks(self) -> None:
        self.lac_cpu = Stopwatch()
        self.lns_cpu = Stopwatch()


def run_size(total: int, tunnels: int) -> dict[str, float]:
    """Set up and tear down `total` calls over `tunnels` tunnels; rates in calls/s."""
    net = TunnelPairs(tunnels)
    net.reset_clocks()
    with no_gc():
        wall = CpuWatch()
        with wall:
            calls = net.place(total)
            net.settle()
        assert net.up == total, (net.up, total)
        up_lac, up_lns = net.lac_cpu.seconds, net.lns_cpu.seconds
        net.reset_clocks()
        wall_down = CpuWatch()
        with wall_down:
            net.hangup(calls)
            net.settle()
        assert net.closed == total, (net.closed, total)
    return {
        "up": total / wall.cpu,
        "up_lac_us": up_lac / total * 1e6,
        "up_lns_us": up_lns / total * 1e6,
        "down": total / wall_down.cpu,
        "down_lac_us": net.lac_cpu.seconds / total * 1e6,
        "down_lns_us": net.lns_cpu.seconds / total * 1e6,
    }


def memory(total: int, tunnels: int) -> tuple[float, float, float]:
    """Bytes per established session: (LAC core, LNS core, per tunnel pair)."""
    with traced_memory() as current:
        base = current()
        net = TunnelPairs(tunnels)
        with_tunnels = current()
        net.place(total)
        net.settle()
        assert net.up == total
        full = current()
        lac_sessions = sum(len(lac.sessions) for lac, _ in net.pairs)
        assert lac_sessions == total
        # Forget the LAC side: what goes away is the LAC's share.
        lns_only = [lns for _, lns in net.pairs]
        net.pairs = []
        del net
        gc.collect()
        without_lac = current()
        del lns_only
    per_pair = (with_tunnels - base) / tunnels
    # What went away with the LAC tunnels is the LAC's share (less its tunnels' own cost,
    # taken as half a pair: negligible next to the sessions).
    lac = (full - without_lac - per_pair / 2 * tunnels) / total
    lns = (full - with_tunnels) / total - lac
    return lac, lns, per_pair


def sample_messages() -> dict[str, ControlMessage]:
    """One of each common message, shaped like what the cores send."""
    A = AvpType
    MT = MessageType
    return {
        "SCCRQ": ControlMessage(
            MT.SCCRQ,
            0,
            0,
            0,
            0,
            (
                Avp(A.PROTOCOL_VERSION, ProtocolVersion(1, 0)),
                Avp(A.FRAMING_CAPABILITIES, 3),
                Avp(A.BEARER_CAPABILITIES, 3),
                Avp(A.HOST_NAME, "lac"),
                Avp(A.VENDOR_NAME, "kl2tp"),
                Avp(A.ASSIGNED_TUNNEL_ID, 17688),
                Avp(A.RECEIVE_WINDOW_SIZE, 16),
                Avp(A.CHALLENGE, bytes(range(16))),
            ),
        ),
        "ICRQ": ControlMessage(
            MT.ICRQ,
            55270,
            0,
            5,
            3,
            (
                Avp(A.ASSIGNED_SESSION_ID, 4711),
                Avp(A.CALL_SERIAL_NUMBER, 12),
                Avp(A.BEARER_TYPE, 1),
                Avp(A.CALLING_NUMBER, "2085730592"),
            ),
        ),
        "ICRP": ControlMessage(MT.ICRP, 17688, 4711, 3, 6, (Avp(A.ASSIGNED_SESSION_ID, 815),)),
        "ICCN": ControlMessage(
            MT.ICCN,
            55270,
            815,
            6,
            4,
            (Avp(A.TX_CONNECT_SPEED, 64000), Avp(A.FRAMING_TYPE, 1)),
        ),
        "CDN": ControlMessage(
            MT.CDN,
            55270,
            815,
            7,
            4,
            (Avp(A.ASSIGNED_SESSION_ID, 4711), Avp(A.RESULT_CODE, ResultCode(3, 0))),
        ),
        "ZLB": ControlMessage(None, 55270, 0, 8, 4),
    }


def codec_figures() -> list[tuple[str, int, float, float]]:
    rows = []
    for name, msg in sample_messages().items():
        data = encode_control(msg)
        enc = per_call_us(functools.partial(encode_control, msg))
        dec = per_call_us(functools.partial(decode, data))
        rows.append((name, len(data), enc, dec))
    frame = bytes.fromhex("ff03c021010100140104 05dc0506 12345678".replace(" ", ""))
    data = encode_data(55270, 815, frame)
    rows.append(
        (
            "data (LCP)",
            len(data),
            per_call_us(lambda: encode_data(55270, 815, frame)),
            per_call_us(lambda: decode(data)),
        )
    )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,60000", help="sessions in one tunnel")
    p.add_argument("--across", default="1000,10000,100000", help="sessions across tunnels")
    p.add_argument("--tunnels", default="10,100", help="tunnel counts for --across")
    p.add_argument("--memory", type=int, default=100_000, help="sessions for the memory figure")
    p.add_argument("--memory-tunnels", type=int, default=10)
    p.add_argument("--skip-codec", action="store_true")
    p.add_argument("--profile", metavar="FILE", help="cProfile one 10k-session up/down to FILE")
    args = p.parse_args(argv)

    print(f"# L2TP core bench  ({machine()})")
    print("# both cores in one process; tunnel secret set (challenge/response); no hiding")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(run_size, 10_000, 1)
        prof.dump_stats(args.profile)
        print(f"profile written to {args.profile}")
        return 0

    rows: list[tuple[object, ...]] = []
    for size in (int(s) for s in args.sizes.split(",") if s):
        if size > MAX_PER_TUNNEL:
            print(f"skip {size} in one tunnel: session ids are 16 bits", file=sys.stderr)
            continue
        r = run_size(size, 1)
        rows.append(
            (1, size, r["up"], r["up_lac_us"], r["up_lns_us"], r["down"], r["down_lac_us"],
             r["down_lns_us"])
        )  # fmt: skip
    for k in (int(s) for s in args.tunnels.split(",") if s):
        for size in (int(s) for s in args.across.split(",") if s):
            if size < k or size / k > MAX_PER_TUNNEL:
                continue
            r = run_size(size, k)
            rows.append(
                (k, size, r["up"], r["up_lac_us"], r["up_lns_us"], r["down"], r["down_lac_us"],
                 r["down_lns_us"])
            )  # fmt: skip
    print()
    print("sessions up (ICRQ/ICRP/ICCN) and down (CDN), both cores in one process, CPU time")
    print(
        table(
            ("tunnels", "sessions", "up/s", "LAC us", "LNS us", "down/s", "LAC us", "LNS us"),
            rows,
        )
    )

    if args.memory:
        k = max(args.memory_tunnels, -(-args.memory // MAX_PER_TUNNEL))
        lac, lns, pair = memory(args.memory, k)
        print()
        print(f"memory at {args.memory:,} established sessions in {k} tunnels (tracemalloc)")
        print(
            table(
                ("what", "bytes"),
                [
                    ("per session, LAC core", lac),
                    ("per session, LNS core", lns),
                    ("per tunnel pair (both cores, no sessions)", pair),
                ],
            )
        )

    if not args.skip_codec:
        print()
        print("codec, microseconds per message (no secret, no hiding)")
        print(table(("message", "bytes", "encode us", "decode us"), codec_figures()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
