"""Reads a py-spy ``--format raw`` file (``bench_daemons.py --py-spy FILE``) and prints the
functions with the most samples: on their own (self) and with what they call (inclusive).

Usage: python bench/pyspy_top.py FILE [--top 40]
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence


def function_of(frame: str) -> str:
    """``name (file:line)`` -> ``name (file)``: the inclusive figures add up lines."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file")
    p.add_argument("--top", type=int, default=40)
    args = p.parse_args(argv)
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(args.file) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            n = int(count)
            total += n
            frames = stack.split(";")
            own[frames[-1]] += n
            for name in {function_of(frame) for frame in frames}:
                inclusive[name] += n
    print(f"# {total} samples")
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"--- {title}")
        for name, n in counter.most_common(args.top):
            print(f"{100 * n / total:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
