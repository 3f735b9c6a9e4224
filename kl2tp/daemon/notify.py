"""systemd's service notification protocol (sd_notify(3)), written out: no libsystemd needed.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a Unix datagram socket path, or an
abstract one starting with ``@``) and, with ``WatchdogSec=``, ``WATCHDOG_USEC``. The daemon
sends ``READY=1`` once it serves, ``RELOADING=1`` with ``MONOTONIC_USEC`` while it reloads,
``STOPPING=1`` when it shuts down, ``STATUS=...`` for ``systemctl status`` and ``WATCHDOG=1``
at half the watchdog interval. Each message is one datagram of ``KEY=VALUE`` lines.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

import trio

log = logging.getLogger("kl2tp.daemon")


class Notifier:
    """Sends notifications to systemd; does nothing when not run by systemd."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        """The socket path (``\\0`` first for an abstract one), None: not under systemd."""
        self.watchdog_usec = watchdog_usec
        """The watchdog interval systemd asked for, in microseconds."""
        self.sent: list[str] = []
        """Every message sent (for tests and ``show summary``)."""
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """From ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` (``WATCHDOG_PID`` must be ours)."""
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET") or None
        if address is not None and address.startswith("@"):
            address = "\0" + address[1:]
        watchdog: int | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(usec)
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        """Whether systemd listens."""
        return self.address is not None

    def send(self, **fields: object) -> None:
        """Send ``KEY=VALUE`` lines (keys upper-cased). Never raises: a lost notification
        must not take the daemon down (systemd then times out and says so)."""
        if self.address is None:
            return
        text = "\n".join(f"{k.upper()}={v}" for k, v in fields.items())
        self.sent.append(text)
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto(text.encode(), self.address)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address.lstrip("\0"), exc)

    def ready(self, status: str = "") -> None:
        """The daemon serves."""
        self.send(ready=1, **({"status": status} if status else {}))

    def reloading(self) -> None:
        """A reload starts (systemd >= 253 wants the monotonic time with it)."""
        self.send(reloading=1, monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self) -> None:
        """The daemon shuts down."""
        self.send(stopping=1, status="clearing sessions and tunnels")

    async def watchdog(self) -> None:
        """Ping the watchdog at half its interval until cancelled (no-op without one)."""
        if self.address is None or not self.watchdog_usec:
            return
        interval = self.watchdog_usec / 2e6
        while True:
            self.send(watchdog=1)
            await trio.sleep(interval)

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
