"""Capturing a test run with dumpcap and reading it back with Wireshark's dissectors."""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.parts import missing

BOUND = 60.0
"""Seconds a capture may take to start, or tshark to read one."""


def require_tshark() -> tuple[str, str]:
    """dumpcap and tshark; skips the test without them (fails it in the full run:
    scripts/lab-deps.sh installs tshark)."""
    dumpcap, tshark = shutil.which("dumpcap"), shutil.which("tshark")
    if dumpcap is None or tshark is None:
        missing("tshark is not installed (apt-get install tshark)", "KL2TP_REQUIRE_TSHARK")
    return dumpcap, tshark


@contextlib.contextmanager
def capture(path: Path, interface: str, capture_filter: str) -> Iterator[Path]:
    """Capture ``interface`` (BPF ``capture_filter``) into ``path`` while the block runs;
    dumpcap is stopped (and the file complete) on the way out, whatever happens."""
    dumpcap, _ = require_tshark()
    argv = [dumpcap, "-q", "-n", "-i", interface, "-f", capture_filter, "-w", str(path)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("Capturing on"):
                started.set()
        started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not started.wait(BOUND) or proc.poll() is not None:
            raise RuntimeError("dumpcap did not start:\n" + "".join(lines))
        yield path
        time.sleep(0.2)  # the last packets of the run: let dumpcap see them
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # dumpcap finishes the file on SIGINT
            try:
                proc.wait(BOUND)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(5)
        if proc.stderr is not None:
            proc.stderr.close()


def tshark(path: Path, *args: str, decode_as: Sequence[str] = ()) -> str:
    """``tshark -r PATH ARGS`` with ``-d`` for each of ``decode_as``; its output."""
    _, binary = require_tshark()
    argv = [binary, "-r", str(path), "-n"]
    for rule in decode_as:
        argv += ["-d", rule]
    done = subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=BOUND, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def malformed(path: Path, *, decode_as: Sequence[str] = ()) -> str:
    """Frames any dissector called malformed or flagged at error/warning level (expert
    info), one line each; empty when the dissectors had nothing to say."""
    return tshark(
        path,
        "-Y",
        "_ws.malformed || _ws.expert.severity >= warning",
        decode_as=decode_as,
    )


def protocols(path: Path, *, decode_as: Sequence[str] = ()) -> collections.Counter[str]:
    """How many frames each dissector (``frame.protocols`` entry) read."""
    out = tshark(path, "-T", "fields", "-e", "frame.protocols", decode_as=decode_as)
    counts: collections.Counter[str] = collections.Counter()
    for line in out.splitlines():
        counts.update(set(line.split(":")))
    return counts


def control_fields(path: Path, field: str, *, decode_as: Sequence[str] = ()) -> list[list[str]]:
    """The values of ``field`` in each L2TP control message (ZLBs have none), one list per
    message (a field may occur several times in one)."""
    out = tshark(path, "-Y", "l2tp.type == 1", "-T", "fields", "-e", field, decode_as=decode_as)
    return [line.split(",") for line in out.splitlines() if line.strip()]


def message_types(path: Path, *, decode_as: Sequence[str] = ()) -> collections.Counter[int]:
    """How many L2TP control messages of each Message Type (ZLBs not counted)."""
    fields = control_fields(path, "l2tp.avp.message_type", decode_as=decode_as)
    return collections.Counter(int(values[0]) for values in fields)


def avp_types(path: Path, *, decode_as: Sequence[str] = ()) -> set[int]:
    """AVP types Wireshark decoded in the control messages (not hidden ones: it shows
    their name and framing only)."""
    fields = control_fields(path, "l2tp.avp.type", decode_as=decode_as)
    return {int(v) for values in fields for v in values if v}
