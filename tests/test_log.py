"""kl2tp.log: escaping of peer-supplied strings and the log formats."""

from __future__ import annotations

import pytest

from kl2tp.log import escape


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("lac-1.example.net", "lac-1.example.net"),
        ("", ""),
        ("a\nb", "a\\x0ab"),
        ("a\r\nFAKE: session up", "a\\x0d\\x0aFAKE: session up"),
        ("\x1b[2J", "\\x1b[2J"),
        ("tab\there", "tab\\x09here"),
        ("del\x7f", "del\\x7f"),
        ("c1\x85", "c1\\x85"),
        ("sep\u2028x", "sep\\u2028x"),
        ("rtl\u202eevil", "rtl\\u202eevil"),
        ("back\\slash", "back\\\\slash"),
        ("Пётр", "Пётр"),
        (b"\xff\xfe".decode("utf-8", "surrogateescape"), "\\xff\\xfe"),
        ("nul\x00", "nul\\x00"),
    ],
)
def test_escape(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped


def test_escape_output_is_one_printable_line() -> None:
    every = "".join(chr(c) for c in range(0x250)) + "\u2028\u2029\u202e\ufeff"
    out = escape(every)
    assert out.isprintable()
    assert "\n" not in out and "\r" not in out


def test_escape_takes_any_object() -> None:
    assert escape(42) == "42"


# -- formats, destinations, debug condition ---------------------------------------------------

import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

from kl2tp import log as klog  # noqa: E402
from kl2tp.daemon.notify import Notifier  # noqa: E402

EVIL = "lac\r\nDec 01 2026 00:00:00.000: Tnl 1: tunnel up\x1b[2J"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    yield buf
    klog.STATE.condition = None
    klog.configure(ident="test", journal=False, stream=io.StringIO())


def _event(hostname: str = EVIL) -> None:
    logging.getLogger("kl2tp.daemon").info(
        "tunnel up",
        extra={
            "event": "tunnel-up",
            "fields": {"peer": "192.0.2.1:1701", "peer_hostname": hostname, "duration": 1.5},
            "tunnel_id": 7,
            "session_id": 0,
        },
    )


@pytest.mark.parametrize("fmt", ["text", "logfmt", "json"])
def test_every_format_keeps_a_hostile_field_on_one_line(stream: io.StringIO, fmt: str) -> None:
    klog.configure(ident="test", fmt=fmt, journal=False, stream=stream)
    _event()
    logging.getLogger("kl2tp.daemon").info("peer said %s", EVIL)  # unescaped by the caller
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.isprintable() and "\x1b" not in line
    if fmt == "json":
        obj = json.loads(lines[0])
        assert obj["event"] == "tunnel-up" and obj["tunnel_id"] == 7
        assert obj["peer_hostname"] == klog.escape(EVIL) and obj["duration"] == 1.5
        assert obj["ts"].startswith("20") and obj["level"] == "info"
    elif fmt == "logfmt":
        assert "tunnel_id=7" in lines[0] and 'msg="tunnel up"' in lines[0]
        assert "event=tunnel-up" in lines[0] and "duration=1.5" in lines[0]
    else:
        assert lines[0].split(": ", 1)[1].startswith("Tnl 7: tunnel up peer=192.0.2.1:1701")
        year = lines[0].split()[2]
        assert year.isdigit() and len(year) == 4


def test_text_lines_carry_the_ids_of_the_task_context(stream: io.StringIO) -> None:
    klog.configure(ident="test", journal=False, stream=stream)
    token = klog.CONTEXT.set(klog.LogContext(tunnel=12, session=34, peer="192.0.2.9"))
    try:
        logging.getLogger("kl2tp.daemon").warning("something")
        logging.getLogger("kl2tp.daemon").warning("Tnl/Cl 5/6: named already")
    finally:
        klog.CONTEXT.reset(token)
    first, second = stream.getvalue().splitlines()
    assert first.endswith("Tnl/Cl 12/34: something")
    assert second.endswith(": Tnl/Cl 5/6: named already")


def test_debug_condition_passes_one_user_only(stream: io.StringIO) -> None:
    klog.configure(ident="test", journal=False, stream=stream, categories=["ppp"])
    sessions = {(1, 10): {"username": "alice"}, (1, 11): {"username": "bob"}}
    klog.STATE.session_lookup = lambda t, s: sessions.get((t, s))
    klog.STATE.condition = klog.DebugCondition("user", "alice")
    ppp = logging.getLogger("kl2tp.ppp")
    ppp.debug("%s %s: %s", "Tnl/Cl 1/10", "LCP", "O CONFREQ")
    ppp.debug("%s %s: %s", "Tnl/Cl 1/11", "LCP", "O CONFREQ")
    token = klog.CONTEXT.set(klog.LogContext(1, 11, extra=sessions[(1, 11)]))
    ppp.debug("bob's own task")
    ppp.info("info always passes")
    klog.CONTEXT.reset(token)
    text = stream.getvalue()
    assert "Tnl/Cl 1/10 LCP" in text
    assert "1/11 LCP" not in text and "bob's own task" not in text
    assert "info always passes" in text


def test_journal_native_protocol(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    try:
        handler = klog.JournalHandler("kl2tp-lns", path)
        handler.addFilter(klog.ContextFilter())
        logger = logging.getLogger("kl2tp.test.journal")
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.info(
            "session up",
            extra={"event": "session-up", "fields": {"user": "a\nb"}, "tunnel_id": 3},
        )
        logger.removeHandler(handler)
        handler.close()
        data = server.recv(65536)
    finally:
        server.close()
    assert b"MESSAGE=Tnl 3: session up user=a\\x0ab\n" in data
    assert b"PRIORITY=6\n" in data and b"SYSLOG_IDENTIFIER=kl2tp-lns\n" in data
    assert b"KL2TP_TUNNEL_ID=3\n" in data and b"KL2TP_EVENT=session-up\n" in data
    assert b"KL2TP_USER=a\\x0ab\n" in data


def test_journal_encodes_multiline_values_with_a_length() -> None:
    data = klog.encode_journal([("MESSAGE", "a\nb"), ("X", "y")])
    assert data == b"MESSAGE\n" + struct.pack("<Q", 3) + b"a\nb\nX=y\n"


def test_under_journal_checks_the_stream_identity() -> None:
    assert not klog.under_journal({})
    assert not klog.under_journal({"JOURNAL_STREAM": "1:2"})


def test_syslog_destination_over_udp() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(10)
    try:
        port = server.getsockname()[1]
        klog.configure(ident="kl2tp-lns", fmt="logfmt", syslog=f"127.0.0.1:{port}")
        logging.getLogger("kl2tp.daemon").warning("hello %s", "syslog\n")
        data = server.recv(65536).decode()
    finally:
        server.close()
        klog.configure(ident="test", journal=False, stream=io.StringIO())
    assert data.startswith("<28>kl2tp-lns[")  # daemon.warning
    assert 'msg="hello syslog\\x0a"' in data


def test_sd_notify_datagrams(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    try:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
        assert notifier.enabled and notifier.watchdog_usec == 2_000_000
        notifier.ready("serving")
        notifier.reloading()
        notifier.stopping()
        notifier.close()
        got = [server.recv(4096).decode() for _ in range(3)]
    finally:
        server.close()
    assert got[0] == "READY=1\nSTATUS=serving"
    assert got[1].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert got[2].startswith("STOPPING=1")
    assert not Notifier.from_env({}).enabled
    assert Notifier.from_env({"NOTIFY_SOCKET": "@abstract"}).address == "\0abstract"


@pytest.mark.parametrize(
    ("msg", "args", "ids"),
    [
        ("Tnl/Cl %d/%d: call cleared %s", (5, 7, "x"), (5, 7)),
        ("Tnl %d: send to %s failed", (9, "a"), (9, 0)),
        ("Tnl 12: literal", (), (12, 0)),
        ("%s %s: %s", ("Tnl/Cl 3/4", "LCP", "O CONFREQ"), (3, 4)),
        ("%s", ("nothing",), (0, 0)),
    ],
)
def test_ids_come_from_the_line_without_formatting_it(
    msg: str, args: tuple[object, ...], ids: tuple[int, int]
) -> None:
    record = logging.LogRecord("kl2tp.l2tp", logging.DEBUG, "x", 1, msg, args, None)
    assert klog.record_ids(record) == ids
