"""The reuseport steering program in the kernel, on loopback: every datagram of a tunnel
reaches the socket of the worker owning its id; SCCRQs spread by a hash that a
retransmission does not change."""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from kl2tp.aaa.pool import BLOCK, AddressPool, BlockLeases, set_worker_share
from kl2tp.daemon.workers import (
    flow_hash,
    merge_metrics,
    merge_values,
    open_listen_sockets,
    steering_program,
)
from kl2tp.l2tp.avp import Avp, ProtocolVersion
from kl2tp.l2tp.constants import AvpType, MessageType
from kl2tp.l2tp.endpoint import TunnelIds
from kl2tp.l2tp.message import ControlMessage, encode_control, encode_data


@pytest.fixture(params=[2, 3])
def group(request: pytest.FixtureRequest) -> Iterator[list[socket.socket]]:
    socks = open_listen_sockets(("127.0.0.1", 0), request.param)
    for sock in socks:
        sock.settimeout(2.0)
    yield socks
    for sock in socks:
        sock.close()


def receiver(socks: list[socket.socket], sender: socket.socket, data: bytes) -> int:
    """Send ``data`` to the group; the index of the one socket that got it."""
    sender.sendto(data, socks[0].getsockname())
    # One datagram, so exactly one socket becomes readable; select on all of them.
    import select

    ready, _, _ = select.select(socks, [], [], 2.0)
    assert len(ready) == 1
    assert ready[0].recv(2048) == data
    return socks.index(ready[0])


def sccrq(peer_tid: int, *, extra_avps: int = 0) -> bytes:
    avps = [
        Avp(AvpType.PROTOCOL_VERSION, ProtocolVersion(1, 0)),
        Avp(AvpType.HOST_NAME, "lac-" + "x" * extra_avps),
        Avp(AvpType.FRAMING_CAPABILITIES, 3),
        Avp(AvpType.VENDOR_NAME, "test"),
        Avp(AvpType.ASSIGNED_TUNNEL_ID, peer_tid),
    ]
    return encode_control(ControlMessage(MessageType.SCCRQ, 0, 0, 0, 0, tuple(avps)))


def test_tunnel_ids_reach_their_class(group: list[socket.socket]) -> None:
    n = len(group)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for tid in (1, 2, 3, 4, 5, 100, 4097, 65534, 65535):
            ctrl = encode_control(ControlMessage(None, tid, 0, 1, 1))  # a ZLB: L bit set
            data = encode_data(tid, 7, b"\xff\x03\xc0\x21")  # no L bit
            assert receiver(group, sender, ctrl) == tid % n
            assert receiver(group, sender, data) == tid % n


def test_sccrqs_spread_and_retransmissions_stay(group: list[socket.socket]) -> None:
    n = len(group)
    seen = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        source = sender.getsockname()
        for peer_tid in random.Random(14).sample(range(1, 65536), 24):
            message = sccrq(peer_tid, extra_avps=peer_tid % 5)
            first = receiver(group, sender, message)
            assert first == flow_hash(peer_tid, source, n)
            assert receiver(group, sender, message) == first  # the retransmission
            seen.add(first)
    # One LAC (one address and port) still spreads its tunnels over every worker.
    assert seen == set(range(n))


def test_a_short_datagram_goes_to_worker_0(group: list[socket.socket]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        assert receiver(group, sender, b"\xc8") == 0


def test_a_second_daemon_cannot_join_the_group() -> None:
    socks = open_listen_sockets(("127.0.0.1", 0), 2)
    try:
        with pytest.raises(OSError):
            open_listen_sockets(socks[0].getsockname(), 2)
    finally:
        for sock in socks:
            sock.close()


def test_program_fits_and_rejects_nonsense() -> None:
    assert len(steering_program(256)) < 4096
    with pytest.raises(ValueError):
        steering_program(0)
    raw = b"".join(struct.pack("=HBBI", *insn) for insn in steering_program(2))
    assert len(raw) % 8 == 0


def test_tunnel_id_classes_are_disjoint_and_cover_every_id() -> None:
    rng = random.Random(1)
    classes = [TunnelIds(rng, id_class=(k, 3)) for k in range(3)]
    ids = [set() for _ in classes]
    for k, pool in enumerate(classes):
        while pool.free:
            tid = pool.allocate()
            assert tid % 3 == k
            ids[k].add(tid)
    assert set().union(*ids) == set(range(1, 65536))


class _Lender:
    """The supervisor's side without processes: blocks from one BlockLeases."""

    def __init__(self, leases: BlockLeases, worker: int) -> None:
        self.leases, self.worker = leases, worker
        self.wanted = 0
        self.returned: list[int] = []

    def want(self, pool: AddressPool) -> None:
        self.wanted += 1
        block = self.leases.lease(self.worker, int(pool.range.first), int(pool.range.last))
        if block is None:
            pool.no_block()
        else:
            assert pool.add_block(block)

    def give_back(self, block: int) -> None:
        self.returned.append(block)
        self.leases.give_back(self.worker, block)


def test_workers_lease_blocks_of_one_pool_and_never_hand_out_an_address_twice() -> None:
    leases = BlockLeases()
    pools: list[AddressPool] = []
    lenders: list[_Lender] = []
    try:
        for k in range(2):
            set_worker_share(k, 2)
            pool = AddressPool("10.1.0.0/24", exclude=[IPv4Address("10.1.0.1")])
            lender = _Lender(leases, k)
            pool.lender = lender
            pools.append(pool)
            lenders.append(lender)
    finally:
        set_worker_share(0, 1)
    assert sum(p.size for p in pools) == 253  # the sizes add up to the pool's
    assert pools[0].allocate() is None  # no block yet: it asks for one
    assert lenders[0].wanted == 1 and pools[0].blocks == 1
    # Worker 0 alone takes three quarters of the pool (one block stays with worker 1).
    pools[1].allocate()
    got0: set[int] = set()
    while (address := pools[0].allocate()) is not None:
        got0.add(int(address))
    got1 = {int(a) for a in iter(pools[1].allocate, None)} | {int(a) for a in pools[1]._in_use}
    assert not got0 & got1
    assert len(got0) + len(got1) == 253 and len(got0) > 253 // 2
    assert pools[0].free < 0  # it holds more than its part of the sum
    # A peer asking for the other worker's address gets one of ours.
    theirs = next(iter(got1))
    pools[0].release(IPv4Address(next(iter(got0))))
    assert pools[0].allocate(preferred=IPv4Address(theirs)) != IPv4Address(theirs)
    # Wholly free blocks go back once enough others stay free; the other worker takes them.
    for value in sorted(got0):
        pools[0].release(IPv4Address(value))
    assert lenders[0].returned and pools[0].blocks >= 1
    assert leases.held(0) == pools[0].blocks
    for value in sorted(got1):
        pools[1].release(IPv4Address(value))
    assert leases.drop_worker(1) == pools[1].blocks


def test_block_leases_lend_each_block_once() -> None:
    leases = BlockLeases()
    first, last = int(IPv4Address("10.2.0.0")), int(IPv4Address("10.2.0.255"))
    blocks = [leases.lease(k % 2, first, last) for k in range(4)]
    assert sorted(b for b in blocks if b is not None) == list(
        range(first // BLOCK, last // BLOCK + 1)
    )
    assert leases.lease(0, first, last) is None
    # An overlapping range (a reload grew the pool) never gets a block that is lent.
    assert leases.lease(1, first, last + 256) == (last + 1) // BLOCK
    leases.give_back(1, blocks[0] or 0)  # not worker 1's: nothing happens
    assert leases.holder(blocks[0] or 0) == 0
    leases.give_back(0, blocks[0] or 0)
    assert leases.lease(1, first, last) == blocks[0]
    assert leases.drop_worker(0) == 1  # blocks[2]
    assert leases.lease(1, first, last) == blocks[2]


def test_merge_sums_counts_and_keeps_labels_apart() -> None:
    cleared = [{"cleared": {"sessions": [[2, 5]]}}, {"cleared": {"sessions": [[3, 7]]}}]
    assert merge_values(cleared) == {"cleared": {"sessions": [[2, 5], [3, 7]]}}
    assert merge_values(
        [{"a": 1, "b": {"c": 2}, "role": "lns"}, {"a": 2, "b": {"c": 3, "d": 1}}]
    ) == {
        "a": 3,
        "b": {"c": 5, "d": 1},
        "role": "lns",
    }
    one = '# HELP x X\n# TYPE x gauge\nx{s="up"} 2.0\nx{s="down"} 1.0\n'
    two = '# HELP x X\n# TYPE x gauge\nx{s="up"} 3.0\n'
    assert merge_metrics([one, two]) == '# HELP x X\n# TYPE x gauge\nx{s="up"} 5\nx{s="down"} 1\n'


def test_show_summary_prints_a_line_per_worker() -> None:
    from kl2tp.cli import _format_summary_show

    result = {
        "role": "lns",
        "dataplane": "null",
        "tunnels": {"total": 0, "by_state": {}},
        "sessions": {"total": 0, "by_state": {}},
        "workers": [
            {"index": 0, "pid": 11, "up": True, "restarts": 0},
            {"index": 1, "pid": None, "up": False, "restarts": 3},
        ],
    }
    lines = _format_summary_show(result).splitlines()
    assert lines[-2:] == [
        "worker   0 pid=11 up restarts=0",
        "worker   1 pid=None restarting restarts=3",
    ]


def test_each_worker_gets_its_part_of_the_limits() -> None:
    from kl2tp.daemon.workers import share_limits
    from kl2tp.l2tp.endpoint import Limits

    limits = Limits(max_setup_tunnels=5, max_negotiating_sessions=0, sccrq_total_rate=10.0)
    tunnels, sessions, part = share_limits(2, 7, 0, limits)
    assert (tunnels, sessions) == (4, 0)  # rounded up; 0 stays "no limit"
    assert part.max_setup_tunnels == 3 and part.max_negotiating_sessions == 0
    assert part.sccrq_total_rate == 5.0
    assert share_limits(1, 7, 3, limits) == (7, 3, limits)
