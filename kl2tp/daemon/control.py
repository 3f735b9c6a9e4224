"""The control socket: a Unix stream socket speaking one JSON object per line.

Requests are ``{"cmd": "show", "what": "tunnels"}``, ``{"cmd": "clear", "what": "tunnel",
"tunnel": TID}``, ``{"cmd": "clear", "what": "session", "tunnel": TID, "session": SID}``;
each answer is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
The socket is created mode 0600 inside a directory we create 0700 when it is missing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket as stdlib_socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger("kl2tp.daemon")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
MAX_REQUEST = 65536


class ControlError(Exception):
    """A request the daemon cannot honour; the message goes back to the client."""


async def serve_control(
    path: str,
    handler: Handler,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``path`` and answer requests with ``handler`` until cancelled."""
    _prepare_path(path)
    sock = trio.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        await sock.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(64)
    listener = trio.SocketListener(sock)
    try:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await listener.accept()
                nursery.start_soon(_client, stream, handler)
    finally:
        with trio.CancelScope(shield=True):
            await listener.aclose()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _prepare_path(path: str) -> None:
    """Make the directory (0700) and remove a stale socket; refuse a live one."""
    sock_path = Path(path)
    if not sock_path.parent.exists():
        sock_path.parent.mkdir(mode=0o700, parents=True)
    if sock_path.exists() or sock_path.is_symlink():
        if _is_live(path):
            raise ControlError(f"{path}: another daemon is listening on this control socket")
        sock_path.unlink()


def _is_live(path: str) -> bool:
    probe = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


async def _client(stream: trio.SocketStream, handler: Handler) -> None:
    buf = b""
    async with stream:
        while True:
            try:
                chunk = await stream.receive_some(4096)
            except trio.BrokenResourceError:
                return
            if not chunk:
                return
            buf += chunk
            if len(buf) > MAX_REQUEST:
                await _reply(stream, {"ok": False, "error": "request too long"})
                return
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                await _reply(stream, await _answer(line, handler))


async def _answer(line: bytes, handler: Handler) -> dict[str, Any]:
    try:
        request = json.loads(line)
        if not isinstance(request, dict):
            raise ControlError("request must be a JSON object")
        return {"ok": True, "result": await handler(request)}
    except (ValueError, ControlError) as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # a bug must not take the daemon down with it
        log.exception("control request failed: %r", line[:200])
        return {"ok": False, "error": f"internal error: {exc}"}


async def _reply(stream: trio.SocketStream, obj: dict[str, Any]) -> None:
    with contextlib.suppress(trio.BrokenResourceError):
        await stream.send_all(json.dumps(obj).encode() + b"\n")


def request(path: str, obj: dict[str, Any], timeout: float = 30.0) -> Any:
    """Blocking client for kl2tpctl: send one request, return its result or raise."""
    sock = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(json.dumps(obj).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    answer = json.loads(data)
    if not answer.get("ok"):
        raise ControlError(answer.get("error", "unknown error"))
    return answer["result"]
