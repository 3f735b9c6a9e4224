"""Logging for operators: escaping of peer-supplied text, formats and destinations.

Everything a peer sends (host names, user names, calling numbers, Result Code messages,
vendor strings) may hold control characters. Written to a log as they are, a CR or LF forges
a whole log line, an ESC sequence rewrites an operator's terminal, a U+202E reorders what is
read. :func:`escape` makes any string safe to put on one log line in every format; call it on
peer-supplied strings before they reach a format string.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import logging.handlers
import os
import re
import socket
import struct
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from kl2tp.values import split_host_port

__all__ = [
    "AVP_LEVEL",
    "CATEGORIES",
    "DebugCondition",
    "LogContext",
    "UsageError",
    "configure",
    "escape",
    "sanitize",
]

CATEGORIES = ("l2tp", "ppp", "aaa", "kernel", "daemon")
"""Debug categories: the loggers ``kl2tp.<category>``."""
AVP_LEVEL = 5
"""Log level below DEBUG for per-AVP parse lines (``--debug l2tp+avp``)."""
FORMATS = ("text", "logfmt", "json")

_UNSAFE = re.compile(r"[^\x20-\x5b\x5d-\x7e]")
"""Anything but printable ASCII without the backslash: the slow path looks closer."""


def _escape_char(m: re.Match[str]) -> str:
    ch = m.group(0)
    if ch == "\\":
        return "\\\\"
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
        # A byte that was not UTF-8, kept by the "surrogateescape" decoder: show the byte.
        return f"\\x{code - 0xDC00:02x}"
    if ch.isprintable():
        return ch
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(s: object) -> str:
    """``s`` as one printable line: no control, format or separator characters.

    Non-printable characters (C0 and C1 controls, DEL, line and paragraph separators,
    bidirectional overrides, lone surrogates) become ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``;
    a backslash becomes ``\\\\`` so the escaped form cannot be mistaken for one. Printable
    non-ASCII text (a user name in Cyrillic) is kept as it is. Not a string: ``str(s)`` first.
    """
    text = s if isinstance(s, str) else str(s)
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape_char, text)


_CONTROL = re.compile(r"[^\x20-\x7e]")


def _sanitize_char(m: re.Match[str]) -> str:
    ch = m.group(0)
    return ch if ch.isprintable() else _escape_char(m)


def sanitize(text: str) -> str:
    """``text`` with every non-printable character escaped, backslashes kept as they are.

    The formatters run it over every message, so a peer-supplied string that reached a log
    call unescaped still cannot break the line; :func:`escape` is for fields, where a
    reader must be able to tell an escape from the text.
    """
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(_sanitize_char, text)


# -- who a line is about ---------------------------------------------------------------------


@attrs.define(slots=True)
class LogContext:
    """The tunnel (and session) a task works for; every line it logs carries the ids.

    Set by the tunnel and session tasks (:data:`CONTEXT`); trio tasks inherit the context of
    the task that started them, so a session's PPP and AAA lines carry its ids too.
    """

    tunnel: int = 0
    """Our tunnel id (0: none)."""
    session: int = 0
    """Our session id (0: none)."""
    peer: str = ""
    """The peer's address (no port)."""
    extra: Mapping[str, Any] | None = None
    """The session's show fields (``username`` once PPP knows it), read when a line is
    logged, so the user name is there from the moment it is known."""

    @property
    def user(self) -> str:
        """The session's user name, '' while unknown."""
        return str(self.extra.get("username", "")) if self.extra is not None else ""


CONTEXT: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "kl2tp_log_context", default=None
)
"""The current task's :class:`LogContext`."""

_IDS = re.compile(r"Tnl(?:/Cl)? (\d+)(?:/(\d+))?")
_ID_FORMATS = {"Tnl %d": 1, "Tnl/Cl %d/%d": 2}


def record_ids(record: logging.LogRecord) -> tuple[int, int]:
    """(tunnel, session) of a record: the ``Tnl/Cl T/S`` its text starts with (the
    IOS-style lines name them), else its task's context, else zeros.

    Cheap: the text is never formatted for this, only its first argument looked at (the
    debug condition runs it on every trace line of a busy LNS).
    """
    tid = getattr(record, "tunnel_id", None)
    if tid is not None:
        return int(tid), int(getattr(record, "session_id", 0) or 0)
    msg = record.msg if isinstance(record.msg, str) else ""
    args = record.args if isinstance(record.args, tuple) else ()
    if msg.startswith("Tnl"):
        m = _IDS.match(msg)
        if m is not None:
            return int(m.group(1)), int(m.group(2) or 0)
        head = msg.split(":", 1)[0].split(" ", 2)
        count = _ID_FORMATS.get(" ".join(head[:2]), 0)
        ids = [a for a in args[:count] if isinstance(a, int)]
        if count and len(ids) == count:
            return ids[0], ids[1] if count == 2 else 0
    elif msg.startswith("%s") and args and isinstance(args[0], str):
        m = _IDS.match(args[0])
        if m is not None:
            return int(m.group(1)), int(m.group(2) or 0)
    ctx = CONTEXT.get()
    if ctx is not None:
        return ctx.tunnel, ctx.session
    return 0, 0


# -- runtime debug ---------------------------------------------------------------------------


@attrs.frozen
class DebugCondition:
    """``kl2tpctl debug condition``: debug lines only for one user, peer or tunnel (IOS
    ``debug condition username``). Lines at info and above always pass."""

    kind: str
    """``user``, ``peer`` or ``tunnel``."""
    value: str
    """The user name, peer address or tunnel id."""


SessionLookup = Callable[[int, int], Mapping[str, Any] | None]
"""(tunnel, session) -> that session's show fields, None when unknown."""
PeerLookup = Callable[[int], str | None]
"""tunnel -> the peer's address, None when unknown."""


class _State:
    condition: DebugCondition | None = None
    session_lookup: SessionLookup | None = None
    peer_lookup: PeerLookup | None = None


STATE = _State()
"""The process's debug condition and how the filter finds sessions by id."""


class ContextFilter(logging.Filter):
    """Attaches ``tunnel_id``/``session_id`` to every record and applies the debug
    condition to lines below INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        tid, sid = record_ids(record)
        record.tunnel_id = tid
        record.session_id = sid
        cond = STATE.condition
        if cond is None or record.levelno >= logging.INFO:
            return True
        return _matches(cond, tid, sid)


def _matches(cond: DebugCondition, tid: int, sid: int) -> bool:
    ctx = CONTEXT.get()
    if cond.kind == "tunnel":
        return str(tid) == cond.value
    if cond.kind == "peer":
        if ctx is not None and ctx.tunnel == tid and ctx.peer:
            return ctx.peer == cond.value
        lookup = STATE.peer_lookup
        return bool(tid) and lookup is not None and lookup(tid) == cond.value
    # user
    if ctx is not None and ctx.tunnel == tid and ctx.session == sid and ctx.extra is not None:
        return ctx.user == cond.value
    if not sid:
        return False
    lookup_session = STATE.session_lookup
    fields = lookup_session(tid, sid) if lookup_session is not None else None
    return fields is not None and fields.get("username") == cond.value


class UsageError(ValueError):
    """A bad category list or condition (the command line exits 2, kl2tpctl shows it)."""


def parse_categories(text: str) -> tuple[list[str], bool]:
    """``"l2tp,ppp+avp"`` -> (["l2tp", "ppp"], avp). ``all`` means every category.

    Raises:
        UsageError: an unknown category.
    """
    avp = False
    names: list[str] = []
    for word in text.replace("+", ",").split(","):
        word = word.strip()
        if not word:
            continue
        if word == "avp":
            avp = True
        elif word == "all":
            names.extend(c for c in CATEGORIES if c not in names)
        elif word in CATEGORIES:
            if word not in names:
                names.append(word)
        else:
            raise UsageError(
                f"unknown debug category {word!r} (choose from {', '.join(CATEGORIES)}, all, avp)"
            )
    return names, avp


def set_debug(categories: Iterable[str], on: bool, *, avp: bool = False) -> None:
    """Turn the debug trace of ``categories`` on (DEBUG, or AVP_LEVEL with ``avp``) or off
    (back to the level of ``kl2tp``)."""
    for name in categories:
        logger = logging.getLogger(f"kl2tp.{name}")
        if on:
            logger.setLevel(AVP_LEVEL if avp else logging.DEBUG)
        else:
            logger.setLevel(logging.NOTSET)


def debug_state() -> dict[str, Any]:
    """What ``kl2tpctl debug`` shows: the level of each category and the condition."""
    out: dict[str, Any] = {}
    for name in CATEGORIES:
        level = logging.getLogger(f"kl2tp.{name}").getEffectiveLevel()
        out[name] = "avp" if level <= AVP_LEVEL else "on" if level <= logging.DEBUG else "off"
    cond = STATE.condition
    out["condition"] = None if cond is None else {"kind": cond.kind, "value": cond.value}
    return out


# -- formats ---------------------------------------------------------------------------------

_LEVEL_NAMES = {AVP_LEVEL: "avp", logging.DEBUG: "debug", logging.INFO: "info"}


def _level(record: logging.LogRecord) -> str:
    return _LEVEL_NAMES.get(record.levelno) or record.levelname.lower()


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


_NEEDS_QUOTES = re.compile(r'[ ="]')
_BARE = re.compile(r"[\x21\x23-\x3c\x3e-\x5b\x5d-\x7e]+")
"""A value written as it is: printable ASCII but the space, quote, equals and backslash."""


def _logfmt_value(value: Any, *, escaped: bool = False) -> str:
    if value.__class__ is str:  # the common case first: user names, addresses
        if _BARE.fullmatch(value) is not None:
            return value  # one match instead of escaping and looking for quotes
        text = value if escaped else escape(value)
    elif isinstance(value, bool):
        return "true" if value else "false"
    elif isinstance(value, int | float):
        return str(value)
    else:
        text = str(value) if escaped else escape(value)
    if text == "" or _NEEDS_QUOTES.search(text) is not None:
        return '"' + text.replace('"', '\\"') + '"'
    return text


def _ids_prefix(record: logging.LogRecord, msg: str) -> str:
    tid = getattr(record, "tunnel_id", 0)
    if not tid or msg.startswith("Tnl"):
        return ""
    sid = getattr(record, "session_id", 0)
    return f"Tnl/Cl {tid}/{sid}: " if sid else f"Tnl {tid}: "


class TextFormatter(logging.Formatter):
    """Today's lines with a year: ``Dec 01 2026 18:44:15.043: Tnl/Cl 5/7: session up ...``.

    Event fields follow the message as ``key=value``; ids the message does not start with
    are put in front. ``timestamps=False`` for the journal, which has its own.
    """

    def __init__(self, *, timestamps: bool = True) -> None:
        super().__init__()
        self.timestamps = timestamps
        self._second = -1
        self._stamp = ""
        """The timestamp up to the seconds of the last line's second: a busy LNS logs
        hundreds of lines a second, and formatting a date is most of a line's cost."""

    def _when(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:
            when = datetime.datetime.fromtimestamp(second)
            self._second, self._stamp = second, f"{when:%b %d %Y %H:%M:%S}"
        return f"{self._stamp}.{int(msecs):03d}: "

    def format(self, record: logging.LogRecord) -> str:
        msg = sanitize(record.getMessage())
        fields = _fields(record)
        if fields:
            msg += " " + " ".join([f"{k}={_logfmt_value(v)}" for k, v in fields.items()])
        line = _ids_prefix(record, msg) + msg
        if self.timestamps:
            line = self._when(record.created, record.msecs) + line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _iso(record: logging.LogRecord) -> str:
    when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


def _structured(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": _iso(record),
        "level": _level(record),
        "logger": record.name,
        "msg": sanitize(record.getMessage()),
    }
    tid = getattr(record, "tunnel_id", 0)
    if tid:
        out["tunnel_id"] = tid
        sid = getattr(record, "session_id", 0)
        if sid:
            out["session_id"] = sid
    event = getattr(record, "event", None)
    if event:
        out["event"] = event
    for key, value in _fields(record).items():
        out.setdefault(key, value if isinstance(value, int | float | bool) else escape(value))
    if record.exc_info:
        out["exception"] = sanitize(logging.Formatter().formatException(record.exc_info))
    return out


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=info logger=kl2tp.daemon msg="session up" tunnel_id=5 ... user=alice``."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(
            f"{k}={_logfmt_value(v, escaped=True)}" for k, v in _structured(record).items()
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line, the same keys as logfmt."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_structured(record), ensure_ascii=True)


def formatter(kind: str, *, timestamps: bool = True) -> logging.Formatter:
    """The formatter of ``[log] format``."""
    if kind == "logfmt":
        return LogfmtFormatter()
    if kind == "json":
        return JsonFormatter()
    return TextFormatter(timestamps=timestamps)


# -- destinations ----------------------------------------------------------------------------

JOURNAL_SOCKET = "/run/systemd/journal/socket"
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
}
_FIELD_NAME = re.compile(r"[^A-Z0-9_]")


def journal_fields(record: logging.LogRecord, message: str, ident: str) -> list[tuple[str, str]]:
    """The journal fields of one record: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, CODE_*,
    KL2TP_TUNNEL_ID/KL2TP_SESSION_ID and every event field as ``KL2TP_<NAME>``."""
    fields = [
        ("MESSAGE", message),
        ("PRIORITY", str(_PRIORITY.get(record.levelno, 7))),
        ("SYSLOG_IDENTIFIER", ident),
        ("LOGGER", record.name),
        ("CODE_FILE", record.pathname),
        ("CODE_LINE", str(record.lineno)),
        ("CODE_FUNC", record.funcName),
    ]
    tid = getattr(record, "tunnel_id", 0)
    if tid:
        fields.append(("KL2TP_TUNNEL_ID", str(tid)))
        sid = getattr(record, "session_id", 0)
        if sid:
            fields.append(("KL2TP_SESSION_ID", str(sid)))
    event = getattr(record, "event", None)
    if event:
        fields.append(("KL2TP_EVENT", str(event)))
    for key, value in _fields(record).items():
        name = "KL2TP_" + _FIELD_NAME.sub("_", key.upper())
        fields.append((name, str(value) if isinstance(value, int | float) else escape(value)))
    return fields


def encode_journal(fields: Sequence[tuple[str, str]]) -> bytes:
    """The journal's native protocol: ``NAME=value\\n``, or for a value with a newline
    ``NAME\\n`` + its length as 64-bit little endian + the value + ``\\n``."""
    out = bytearray()
    for name, value in fields:
        data = value.encode("utf-8", "backslashreplace")
        if b"\n" in data:
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    """Writes records to journald's native socket, with structured fields (no libsystemd)."""

    def __init__(self, ident: str, path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.ident = ident
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.setFormatter(TextFormatter(timestamps=False))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            data = encode_journal(journal_fields(record, message, self.ident))
            try:
                self.sock.sendto(data, self.path)
            except OSError:
                # Too big for one datagram (journald would want a memfd): send it shortened.
                short = message[:2048] + " ...(truncated)"
                self.sock.sendto(
                    encode_journal(journal_fields(record, short, self.ident)), self.path
                )
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


def under_journal(env: Mapping[str, str] | None = None) -> bool:
    """True when stderr is systemd's journal stream (``JOURNAL_STREAM`` names its device
    and inode, systemd.exec(5)) and the journal socket exists."""
    env = os.environ if env is None else env
    stream = env.get("JOURNAL_STREAM", "")
    if not stream or not os.path.exists(JOURNAL_SOCKET):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def syslog_handler(address: str, ident: str) -> logging.Handler:
    """``[log] syslog``: a local socket path (``/dev/log``) or ``HOST[:PORT]`` over UDP."""
    target: str | tuple[str, int]
    if address.startswith("/"):
        target = address
    else:
        # [log] syslog was checked when the configuration was read.
        host, port = split_host_port(address) or (address, None)
        target = (host or address, int(port) if port else 514)
    handler = logging.handlers.SysLogHandler(
        address=target, facility=logging.handlers.SysLogHandler.LOG_DAEMON
    )
    handler.ident = f"{ident}[{os.getpid()}]: "
    return handler


# -- set-up ----------------------------------------------------------------------------------


def configure(
    *,
    ident: str,
    level: str = "info",
    fmt: str = "text",
    syslog: str = "",
    categories: Sequence[str] = (),
    debug: str | None = None,
    journal: bool | None = None,
    stream: Any = None,
) -> None:
    """Set up the ``kl2tp`` loggers: one destination (syslog when asked, else the journal
    under systemd, else stderr), the format, the level and the debug categories.

    Args:
        ident: the program name (``kl2tp-lns``), for syslog and the journal.
        debug: ``--debug``: categories added to ``categories`` (``all``, ``+avp``).
        journal: force the journal on or off; None: detect (``JOURNAL_STREAM``).

    Raises:
        UsageError: an unknown debug category.
    """
    names, avp = parse_categories(",".join([*categories, *([debug] if debug else [])]))
    logging.addLevelName(AVP_LEVEL, "AVP")
    handler: logging.Handler
    if syslog:
        handler = syslog_handler(syslog, ident)
    elif journal if journal is not None else under_journal():
        handler = JournalHandler(ident)
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    # syslog and the journal stamp every line themselves.
    handler.setFormatter(formatter(fmt, timestamps=isinstance(handler, logging.StreamHandler)))
    handler.addFilter(ContextFilter())
    root = logging.getLogger("kl2tp")
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]
    root.propagate = False
    set_level(level, ())
    if names or avp:
        set_debug(names or ["l2tp"], True, avp=avp)


def set_level(level: str, categories: Sequence[str]) -> None:
    """Apply ``[log] level`` and ``[log] categories`` again (on reload)."""
    logging.getLogger("kl2tp").setLevel(getattr(logging, level.upper(), logging.INFO))
    for name in CATEGORIES:
        logging.getLogger(f"kl2tp.{name}").setLevel(logging.NOTSET)
    set_debug(categories, True)
