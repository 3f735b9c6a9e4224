"""Fuzzing the endpoint (issue 8): mutated datagrams from the reference trace, the project's
own encodings and a legitimate exchange, from the legitimate peer and from strangers, with the
clock moving, into a live LNS endpoint core with a tunnel and two calls. Nothing may raise,
every count stays within its bound, and everything half-made is gone once its time is up
(the invariants are in fuzz_target.py; bench/fuzz.py runs the same target for hours)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.l2tp.fuzz_target import ADDRS, DTS, EndpointTarget, Op

ops = st.builds(
    Op,
    seed=st.integers(0, 1000),
    edits=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=4).map(tuple),
    cut=st.none() | st.integers(0, 2000),
    extra=st.binary(max_size=24),
    retarget=st.integers(0, 3),
    addr=st.integers(0, len(ADDRS) - 1),
    dt=st.sampled_from(DTS),
)


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(ops, min_size=1, max_size=40))
def test_the_endpoint_survives_mutated_traffic(batch: list[Op]) -> None:
    EndpointTarget().run(batch)


def test_every_seed_unmutated_from_everywhere() -> None:
    target = EndpointTarget()
    n = len(target.seeds)
    target.run([Op(seed=i, retarget=r, addr=a) for i in range(n) for r in range(4) for a in (0, 2)])
