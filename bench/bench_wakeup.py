"""What one wake-up costs: the floor under a paced LNS's CPU per call.

At a paced rate every datagram (or every few) reaches the LNS alone: the process sleeps,
the kernel wakes it, it handles the datagram and sleeps again. This measures the cost of
that cycle alone, for the same paced stream of small datagrams from a forked sender, in
four receivers of one process each:

- ``blocking``: a blocking ``recvfrom`` loop (what a C daemon's loop costs, in Python);
- ``epoll``: a non-blocking socket drained after each ``epoll.poll``;
- ``trio``: ``trio.lowlevel.wait_readable`` then drain (what a trio program pays);
- ``kl2tp``: the daemon's own ``UdpTransport.receive_batch`` with an empty idle hook.

Each prints the receiver's user and system CPU per datagram and its sleeps (voluntary
context switches) per datagram; at a low enough rate both counts are per wake-up. Run
alternating, several rounds: the machines are shared. Asserts nothing.

    .venv/bin/python bench/bench_wakeup.py                 # 5,000 datagrams at 2,500/s
    .venv/bin/python bench/bench_wakeup.py -n 10000 --rate 1000 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import socket
import statistics
import time
from collections.abc import Callable, Sequence

import _util
import trio
import trio.lowlevel
from bench_daemons import sleeps_of

from kl2tp.daemon.endpoint import UdpTransport

END = b"END"


def send_paced(port: int, count: int, rate: float) -> None:
    """The sender (a forked child): ``count`` 60-byte datagrams at ``rate``/s, then END."""
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = bytes(60)
    t0 = time.monotonic()
    for i in range(count):
        gap = t0 + i / rate - time.monotonic()
        if gap > 0:
            time.sleep(gap)
        out.sendto(payload, ("127.0.0.1", port))
    out.sendto(END, ("127.0.0.1", port))


def blocking(sock: socket.socket) -> int:
    sock.setblocking(True)
    n = 0
    while sock.recvfrom(2048)[0] != END:
        n += 1
    return n


def drain(sock: socket.socket) -> tuple[int, bool]:
    """Datagrams read until the socket is empty, and whether END was among them."""
    n = 0
    while True:
        try:
            data = sock.recvfrom(2048)[0]
        except BlockingIOError:
            return n, False
        if data == END:
            return n, True
        n += 1


def epoll(sock: socket.socket) -> int:
    sock.setblocking(False)
    poller = select.epoll()
    poller.register(sock.fileno(), select.EPOLLIN)
    total = 0
    while True:
        poller.poll()
        n, done = drain(sock)
        total += n
        if done:
            return total


def with_trio(sock: socket.socket) -> int:
    sock.setblocking(False)

    async def main() -> int:
        total = 0
        while True:
            await trio.lowlevel.wait_readable(sock)
            n, done = drain(sock)
            total += n
            if done:
                return total

    return trio.run(main)


def kl2tp(sock: socket.socket) -> int:
    async def main() -> int:
        transport = UdpTransport.from_socket(sock)
        total = 0
        while True:
            for data, _addr in await transport.receive_batch(lambda: None):
                if data == END:
                    return total
                total += 1

    return trio.run(main)


RECEIVERS: dict[str, Callable[[socket.socket], int]] = {
    "blocking": blocking,
    "epoll": epoll,
    "trio": with_trio,
    "kl2tp": kl2tp,
}


def run_once(kind: str, count: int, rate: float) -> tuple[float, float, float]:
    """(user us, system us, sleeps) per datagram, measured in a forked receiver."""
    read_end, write_end = os.pipe()
    receiver = os.fork()
    if receiver == 0:
        os.close(read_end)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.bind(("127.0.0.1", 0))
        sender = os.fork()
        if sender == 0:
            time.sleep(0.2)
            send_paced(sock.getsockname()[1], count, rate)
            os._exit(0)
        before, sleeps0 = resource.getrusage(resource.RUSAGE_SELF), sleeps_of(os.getpid())
        got = RECEIVERS[kind](sock)
        after, sleeps1 = resource.getrusage(resource.RUSAGE_SELF), sleeps_of(os.getpid())
        os.waitpid(sender, 0)
        n = max(got, 1)
        figures = (
            (after.ru_utime - before.ru_utime) * 1e6 / n,
            (after.ru_stime - before.ru_stime) * 1e6 / n,
            (sleeps1 - sleeps0) / n,
        )
        os.write(write_end, repr(figures).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        text = f.read()
    os.waitpid(receiver, 0)
    user, system, slept = (float(x) for x in text.strip("()").split(","))
    return user, system, slept


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=5000, help="datagrams per run")
    p.add_argument("--rate", type=float, default=2500.0, help="datagrams per second")
    p.add_argument("--rounds", type=int, default=3, help="runs of each receiver, alternating")
    p.add_argument("--kinds", default=",".join(RECEIVERS), help="receivers, comma separated")
    args = p.parse_args(argv)
    kinds = args.kinds.split(",")
    print(f"# {_util.machine()}")
    print(f"# {args.n:,} datagrams of 60 bytes at {args.rate:,.0f}/s; medians of {args.rounds}")
    results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            results[kind].append(run_once(kind, args.n, args.rate))
    rows = []
    for kind in kinds:
        runs = results[kind]
        user = statistics.median(r[0] for r in runs)
        system = statistics.median(r[1] for r in runs)
        rows.append((kind, user, system, user + system, statistics.median(r[2] for r in runs)))
    print(_util.table(("receiver", "user us", "sys us", "cpu us/dgram", "sleeps/dgram"), rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
