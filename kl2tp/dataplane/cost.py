"""What programming the kernel costs the daemon, and the file-descriptor limit it needs.

:class:`KernelCost` counts, per data-plane operation (open a tunnel, open a session, bring it
up, close it, close a tunnel), how many ran and what they cost, split by the kind of kernel
call: L2TP generic netlink (``genl``), rtnetlink (``rtnl``: rename, MTU and up, addresses,
routes) and the PPP side (``ppp``: the PPPoL2TP socket and its connect, the two ``/dev/ppp``
opens and their ioctls, and closing them, which unregisters the pppN). The kinds are CPU time
of the data plane's worker thread around those calls (``CLOCK_THREAD_CPUTIME_ID``: the
kernel's work in the system call, counted as our system time, plus the Python wrapper; not
the time waiting for the GIL or sleeping in the kernel, e.g. in an RCU grace period). Each
operation also has its whole CPU time (``cpu``) and wall time (``total``). One clock read
and an addition per kernel call: cheap enough to stay on. ``kl2tpctl show summary`` shows
them as ``kernel_cost``.

:func:`raise_nofile_limit`: a kernel session holds three descriptors (the PPPoL2TP socket and
the /dev/ppp channel and unit fds) and a tunnel one (its UDP socket), so the usual soft limit
of 1,024 open files stops an LNS at ~250 sessions. The daemon raises its soft limit to the
hard limit at start and says how many sessions that leaves room for; only the hard limit is
the operator's to set (systemd ``LimitNOFILE=``, ``ulimit -Hn``: docs/kl2tp-lns.8.md).
"""

from __future__ import annotations

import logging
import resource
import time

import attrs

log = logging.getLogger("kl2tp.kernel")

FDS_PER_SESSION = 3
"""PPPoL2TP socket, /dev/ppp channel fd, /dev/ppp unit fd."""
FDS_PER_TUNNEL = 1
"""The tunnel's connected UDP socket."""
FDS_RESERVED = 256
"""Everything else a daemon keeps open: listening and control sockets, netlink sockets,
journal, log, RADIUS sockets, metrics, trio's own; generous on purpose."""
FULL_TUNNEL = 65535
"""Sessions one tunnel can carry (16-bit session ids): below room for that, the daemon warns."""


def fds_needed(sessions: int, tunnels: int = 1) -> int:
    """Descriptors a daemon holding ``sessions`` kernel sessions in ``tunnels`` tunnels needs."""
    return FDS_RESERVED + FDS_PER_SESSION * sessions + FDS_PER_TUNNEL * tunnels


def sessions_room(limit: int) -> int:
    """Kernel sessions (in one tunnel) that ``limit`` open files leave room for."""
    return max(0, (limit - FDS_RESERVED - FDS_PER_TUNNEL) // FDS_PER_SESSION)


def raise_nofile_limit() -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; log what that leaves room for.

    Returns:
        (soft limit before, soft limit now).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = soft
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard
        if hard == resource.RLIM_INFINITY:
            # An unlimited hard limit cannot be the soft one: take the kernel's ceiling.
            with open("/proc/sys/fs/nr_open", encoding="ascii") as f:
                target = int(f.read())
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            new = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, hard, exc)
    room = sessions_room(new)
    if room < FULL_TUNNEL:
        log.warning(
            "open files: limit %d (hard limit) leaves room for %d kernel sessions (%d "
            "descriptors each); for %d sessions set LimitNOFILE=%d (systemd) or ulimit -Hn",
            new,
            room,
            FDS_PER_SESSION,
            FULL_TUNNEL,
            fds_needed(FULL_TUNNEL),
        )
    elif new != soft:
        log.info(
            "open files: soft limit raised from %d to %d: room for %d kernel sessions",
            soft,
            new,
            room,
        )
    return soft, new


def emfile_hint() -> str:
    """What to tell the operator when a kernel session fails with EMFILE."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return (
        f"out of file descriptors (limit {soft}, {FDS_PER_SESSION} per kernel session): raise "
        "the hard limit (systemd LimitNOFILE=, ulimit -Hn) and restart, see kl2tp-lns(8)"
    )


@attrs.define(slots=True)
class OpCost:
    """Count and time of one data-plane operation (nanoseconds, summed over every run)."""

    count: int = 0
    """How many times it ran."""
    ns: int = 0
    """Its whole wall-clock time in the worker thread."""
    cpu: int = 0
    """Its whole CPU time (the worker thread's)."""
    genl: int = 0
    """CPU in L2TP generic netlink requests."""
    rtnl: int = 0
    """CPU in rtnetlink requests."""
    ppp: int = 0
    """CPU in PPPoL2TP socket calls, /dev/ppp opens, ioctls and closes."""
    _wall0: int = 0

    def begin(self) -> int:
        """Count a run; returns the CPU clock to pass to the first lap and to :meth:`end`."""
        self.count += 1
        self._wall0 = time.perf_counter_ns()
        return time.thread_time_ns()

    def lap_genl(self, t: int) -> int:
        now = time.thread_time_ns()
        self.genl += now - t
        return now

    def lap_rtnl(self, t: int) -> int:
        now = time.thread_time_ns()
        self.rtnl += now - t
        return now

    def lap_ppp(self, t: int) -> int:
        now = time.thread_time_ns()
        self.ppp += now - t
        return now

    def end(self, t0: int) -> None:
        """Add the whole operation's CPU and wall time (``t0`` from :meth:`begin`; one
        operation at a time: the data plane runs them in one worker thread)."""
        self.cpu += time.thread_time_ns() - t0
        self.ns += time.perf_counter_ns() - self._wall0

    def as_dict(self) -> dict[str, int]:
        """Count and totals in microseconds: sums only, so that the supervisor of several
        workers can add them up (divide by ``count`` for the cost of one run)."""
        out = {"count": self.count}
        for name in ("ns", "cpu", "genl", "rtnl", "ppp"):
            key = "total" if name == "ns" else name
            out[f"{key}_us"] = round(getattr(self, name) / 1000)
        return out


OPS = ("open_tunnel", "close_tunnel", "open_session", "session_up", "close_session")


@attrs.define(slots=True)
class KernelCost:
    """Per-operation costs of one data plane (``show summary``'s ``kernel_cost``)."""

    open_tunnel: OpCost = attrs.field(factory=OpCost)
    """Steps 1-2 of the recipe: bound and connected UDP socket, genl TUNNEL_CREATE."""
    close_tunnel: OpCost = attrs.field(factory=OpCost)
    """genl TUNNEL_DELETE and closing the socket (its sessions count under close_session)."""
    open_session: OpCost = attrs.field(factory=OpCost)
    """genl SESSION_CREATE, PPPoL2TP socket, channel and unit, the pppN renamed."""
    session_up: OpCost = attrs.field(factory=OpCost)
    """MTU and up, addresses, host and framed routes, NP modes to pass."""
    close_session: OpCost = attrs.field(factory=OpCost)
    """Closing unit, channel and socket (the pppN goes) and genl SESSION_DELETE."""

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {name: getattr(self, name).as_dict() for name in OPS}
