"""KernelMechanics reads many sessions' counters from one SESSION_GET dump, and only ours
(the lab reads real counters; here a fake l2tp client shows the logic)."""

from __future__ import annotations

from kl2tp.dataplane.kernel import KernelMechanics
from kl2tp.dataplane.netlink import L2tpStats, SessionInfo


def info(tid: int, sid: int, rx_bytes: int) -> SessionInfo:
    return SessionInfo(tid, sid, 0, 0, 7, None, True, False, False, L2tpStats(rx_bytes=rx_bytes))


class FakeL2tp:
    def __init__(self) -> None:
        self.dumps = 0

    def list_sessions(self) -> list[SessionInfo]:
        self.dumps += 1
        return [info(1, 10, 100), info(1, 11, 110), info(2, 20, 200), info(99, 1, 5)]


def test_one_dump_answers_every_session_and_only_ours() -> None:
    mech = KernelMechanics.__new__(KernelMechanics)  # no kernel: only the lookup logic runs
    l2tp = FakeL2tp()
    mech.l2tp = l2tp  # type: ignore[assignment]
    mech.sessions = {(1, 10): None, (2, 20): None, (3, 30): None}  # type: ignore[dict-item]
    got = mech.sessions_counters([(1, 10), (2, 20), (3, 30), (99, 1)])
    assert l2tp.dumps == 1
    assert {key: c.rx_bytes for key, c in got.items()} == {(1, 10): 100, (2, 20): 200}
    assert mech.sessions_counters([(99, 1)]) == {} and l2tp.dumps == 1  # none ours: no dump
