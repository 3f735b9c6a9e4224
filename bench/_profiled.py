"""Run kl2tp-lns or kl2tp-lac under cProfile: ``_profiled.py OUT.prof lns|lac ARGS...``.

The stats are written when the entry point returns (the LNS returns on SIGTERM).
"""

from __future__ import annotations

import cProfile
import sys

import _util  # noqa: F401  (puts the repository on sys.path)

from kl2tp.cli import lac_main, lns_main


def main() -> int:
    out, role, *args = sys.argv[1:]
    entry = lns_main if role == "lns" else lac_main
    prof = cProfile.Profile()
    try:
        rc = prof.runcall(entry, args)
    finally:
        prof.dump_stats(out)
    return int(rc)


if __name__ == "__main__":
    raise SystemExit(main())
