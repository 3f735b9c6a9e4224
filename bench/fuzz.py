"""Long fuzz campaigns against the endpoint (issue 8): the target of the suite's bounded
hypothesis test (tests/l2tp/fuzz_target.py), run for as long as you like.

With atheris installed (``.venv/bin/pip install atheris``; not a project dependency), libFuzzer
drives it coverage-guided: each input is split into ops by ``FuzzedDataProvider``. Without it,
hypothesis runs the same strategy for ``--examples`` examples. A failure prints the input (a
crash file for atheris, a minimal falsifying example for hypothesis): turn it into a row of
tests/daemon/test_hostile_table.py or a case of tests/l2tp/test_endpoint_fuzz.py.

    .venv/bin/python bench/fuzz.py -atheris_runs=200000          # atheris, 200k inputs
    .venv/bin/python bench/fuzz.py -max_total_time=3600          # atheris, one hour
    .venv/bin/python bench/fuzz.py --hypothesis --examples 50000 # hypothesis only
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def ops_from(data: bytes) -> list[Any]:
    """Split one atheris input into ops (the same shape the hypothesis strategy draws)."""
    import atheris

    from tests.l2tp.fuzz_target import ADDRS, DTS, Op

    fdp = atheris.FuzzedDataProvider(data)
    ops = []
    while fdp.remaining_bytes() and len(ops) < 40:
        edits = tuple(
            (fdp.ConsumeIntInRange(0, 2000), fdp.ConsumeIntInRange(0, 255))
            for _ in range(fdp.ConsumeIntInRange(0, 4))
        )
        cut = fdp.ConsumeIntInRange(0, 2000) if fdp.ConsumeBool() else None
        ops.append(
            Op(
                seed=fdp.ConsumeIntInRange(0, 1000),
                edits=edits,
                cut=cut,
                extra=fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24)),
                retarget=fdp.ConsumeIntInRange(0, 3),
                addr=fdp.ConsumeIntInRange(0, len(ADDRS) - 1),
                dt=DTS[fdp.ConsumeIntInRange(0, len(DTS) - 1)],
            )
        )
    return ops


def run_atheris(argv: list[str]) -> None:
    import atheris

    # Coverage feedback for the code under test: kl2tp is first imported here.
    with atheris.instrument_imports(include=["kl2tp"]):
        from tests.l2tp.fuzz_target import EndpointTarget

    def one(data: bytes) -> None:
        EndpointTarget().run(ops_from(data))

    atheris.Setup(argv, one)
    atheris.Fuzz()


def run_hypothesis(examples: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.l2tp.fuzz_target import EndpointTarget, Op
    from tests.l2tp.test_endpoint_fuzz import ops

    count = [0]

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(st.lists(ops, min_size=1, max_size=40))
    def campaign(batch: list[Op]) -> None:
        count[0] += 1
        EndpointTarget().run(batch)

    start = time.perf_counter()
    campaign()
    took = time.perf_counter() - start
    print(f"hypothesis: {count[0]} inputs in {took:.0f} s, no failure")


def main() -> None:
    argv = sys.argv
    if "--hypothesis" in argv:
        examples = 10000
        if "--examples" in argv:
            examples = int(argv[argv.index("--examples") + 1])
        run_hypothesis(examples)
        return
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: running hypothesis (10,000 examples)")
        run_hypothesis(10000)
        return
    run_atheris(argv)


if __name__ == "__main__":
    main()
