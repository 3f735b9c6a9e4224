"""The kernel data plane: l2tp_core / l2tp_ppp / ppp_generic carry the subscribers' packets.

Two layers:

- :class:`KernelMechanics` (synchronous) runs the recipe of ../shared/KERNEL-LAB.md with the
  typed adapters in :mod:`.netlink` and :mod:`.pppox`: per tunnel a UDP socket bound to our
  address and connected to the peer plus a managed L2TPv2 tunnel on it; per session a PPP
  pseudowire, a PPPoL2TP socket, the /dev/ppp channel and unit, and the pppN interface named
  from a template, addressed and routed once the NCPs are up. Every call blocks.
- :class:`KernelDataPlane` implements :class:`kl2tp.dataplane.base.DataPlane` for trio: every
  blocking call runs in one worker thread at a time (``trio.to_thread.run_sync`` under a
  one-slot limiter, so the netlink sockets are never used concurrently), and each session's
  PPP control frames are read and written on its /dev/ppp fds (:class:`KernelPppChannel`).

Stale objects. A kl2tp killed with SIGKILL normally leaves nothing: its file descriptors close,
which deletes the managed tunnels (and their sessions) and destroys the PPP units. An fd
inherited by a child, or a tunnel still being torn down, can keep objects alive, and they
would then block ids and interface names. So every instance keeps a journal of the kernel
objects it creates, ``<state_dir>/<instance>.journal`` (default /run/kl2tp), one JSON line per
creation or removal, appended with a single ``write`` (O(1) per operation, compacted when it
grows). The journal is ``flock``-ed while the instance runs, so two live instances cannot share
one. At start-up, :meth:`KernelMechanics.cleanup_stale` replays the previous journal and
removes exactly the recorded objects that still exist *and still match the record*: a tunnel
must have the recorded id, peer id, local and peer address and port; an interface the recorded
index and name. Objects kl2tp did not create, or whose ids were reused by other software since,
are never touched.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import functools
import ipaddress
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs
import trio

from kl2tp.dataplane.base import (
    Address,
    Counters,
    DataPlaneError,
    FrameSink,
    NetworkSpec,
    SessionSpec,
    TunnelSpec,
)
from kl2tp.dataplane.cost import KernelCost, emfile_hint, raise_nofile_limit
from kl2tp.dataplane.netlink import L2tpNetlink, L2tpStats, NetlinkError, RtNetlink
from kl2tp.dataplane.pppox import (
    PPP_DEVICE,
    PPP_IP,
    PPP_IPV6,
    NpMode,
    PppoL2tpChannel,
    connect_pppol2tp,
    fd_for_protocol,
    open_session_channel,
    set_mru,
    set_npmode,
)
from kl2tp.values import FramedRoute

log = logging.getLogger("kl2tp.kernel")

T = TypeVar("T")

IFNAMSIZ = 16
DEFAULT_STATE_DIR = "/run/kl2tp"
DEFAULT_IFNAME_TEMPLATE = "l2tp%d"
_READ_SIZE = 65536


def _link_local(ifid: bytes) -> ipaddress.IPv6Address:
    """fe80::/64 plus a 64-bit IPv6CP interface identifier."""
    if len(ifid) != 8:
        raise ValueError(f"an IPv6CP interface identifier has 8 bytes, not {len(ifid)}")
    return ipaddress.IPv6Address(bytes.fromhex("fe80000000000000") + ifid)


def to_counters(stats: L2tpStats) -> Counters:
    """The daemon's counter set from the kernel's (every receive discard counts as an error)."""
    return Counters(
        tx_packets=stats.tx_packets,
        tx_bytes=stats.tx_bytes,
        tx_errors=stats.tx_errors,
        rx_packets=stats.rx_packets,
        rx_bytes=stats.rx_bytes,
        rx_errors=stats.rx_errors
        + stats.rx_seq_discards
        + stats.rx_cookie_discards
        + stats.rx_invalid,
    )


@attrs.frozen(slots=True)
class TunnelRecord:
    """A tunnel as the journal records it: enough to recognise it later."""

    tunnel_id: int
    """Local tunnel id."""
    peer_tunnel_id: int
    """Peer tunnel id."""
    local: Address
    """Local address and port of the tunnel socket (after bind/connect)."""
    peer: Address
    """Peer address and port."""


@attrs.frozen(slots=True)
class LinkRecord:
    """A session interface as the journal records it."""

    index: int
    """Interface index (never reused while the interface exists)."""
    name: str
    """Interface name we gave it."""


class Journal:
    """Append-only log of the kernel objects one instance created (see the module docstring).

    Raises:
        DataPlaneError: on construction, if another live process holds the same journal.
    """

    def __init__(self, state_dir: str, instance: str) -> None:
        os.makedirs(state_dir, mode=0o755, exist_ok=True)
        self.path = os.path.join(state_dir, f"{instance}.journal")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise DataPlaneError(
                f"another kl2tp with instance name {instance!r} is running ({self.path} is "
                "locked): give each instance its own name"
            ) from None
        self._lines = 0
        self._live = 0

    def read(self) -> tuple[dict[int, TunnelRecord], dict[int, LinkRecord]]:
        """Objects the journal says exist (created and not removed)."""
        tunnels: dict[int, TunnelRecord] = {}
        links: dict[int, LinkRecord] = {}
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                    op = rec["op"]
                    if op == "+tunnel":
                        tunnels[rec["id"]] = TunnelRecord(
                            rec["id"], rec["peer_id"], tuple(rec["local"]), tuple(rec["peer"])
                        )
                    elif op == "-tunnel":
                        tunnels.pop(rec["id"], None)
                    elif op == "+link":
                        links[rec["index"]] = LinkRecord(rec["index"], rec["name"])
                    elif op == "-link":
                        links.pop(rec["index"], None)
                except (ValueError, KeyError, TypeError):
                    log.warning("%s: ignoring a damaged line: %r", self.path, line[:200])
        return tunnels, links

    def _append(self, rec: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(rec, separators=(",", ":")) + "\n").encode())
        self._lines += 1

    def add_tunnel(self, rec: TunnelRecord) -> None:
        self._append(
            {
                "op": "+tunnel",
                "id": rec.tunnel_id,
                "peer_id": rec.peer_tunnel_id,
                "local": list(rec.local),
                "peer": list(rec.peer),
            }
        )
        self._live += 1

    def remove_tunnel(self, tunnel_id: int) -> None:
        self._append({"op": "-tunnel", "id": tunnel_id})
        self._live -= 1

    def add_link(self, rec: LinkRecord) -> None:
        self._append({"op": "+link", "index": rec.index, "name": rec.name})
        self._live += 1

    def remove_link(self, index: int) -> None:
        self._append({"op": "-link", "index": index})
        self._live -= 1

    def needs_compaction(self) -> bool:
        """True when dead lines dominate (the caller rewrites it from its live state)."""
        return self._lines > 1024 and self._lines > 4 * self._live

    def rewrite(self, tunnels: list[TunnelRecord], links: list[LinkRecord]) -> None:
        """Replace the journal by the given live objects."""
        os.ftruncate(self._fd, 0)
        self._lines = self._live = 0
        for t in tunnels:
            self.add_tunnel(t)
        for link in links:
            self.add_link(link)

    def close(self, *, remove: bool) -> None:
        """Release the lock; ``remove`` deletes the file (clean shutdown, nothing left)."""
        if self._fd < 0:
            return
        if remove:
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = -1


@attrs.define(slots=True)
class KernelTunnel:
    """A tunnel KernelMechanics programmed."""

    spec: TunnelSpec
    """What was asked for."""
    sock: socket.socket
    """The connected UDP socket the kernel tunnel lives on."""
    record: TunnelRecord
    """What the journal says about it."""
    sessions: set[int] = attrs.field(factory=set)
    """Local session ids in this tunnel."""


@attrs.define(slots=True)
class KernelSession:
    """A session KernelMechanics programmed."""

    spec: SessionSpec
    """What was asked for."""
    ppp: PppoL2tpChannel
    """PPPoL2TP socket, channel and unit."""
    ifname: str
    """Interface name."""
    ifindex: int
    """Interface index."""
    net: NetworkSpec | None = None
    """Network configuration once session_up ran."""
    routes: set[FramedRoute] = attrs.field(factory=set)
    """Framed routes installed on the interface (they go with it)."""


def _pppol2tp_address(
    tunnel: KernelTunnel, spec: SessionSpec
) -> tuple[int, tuple[str, int], int, int, int, int]:
    """What a PPPoL2TP socket is connected to: the tunnel's socket and peer, both ids pairs."""
    return (
        tunnel.sock.fileno(),
        tunnel.record.peer,
        spec.local_tunnel_id,
        spec.local_session_id,
        spec.peer_tunnel_id,
        spec.peer_session_id,
    )


def _routed(net: NetworkSpec, session: KernelSession) -> list[str]:
    """What the interface routes, for the trace: the peer's host route, framed routes."""
    out = [str(net.peer_ip)] if net.local_ip is not None and net.peer_ip is not None else []
    return out + sorted(str(route.network) for route in session.routes)


class KernelMechanics:
    """Synchronous kernel programming for one kl2tp instance (not thread-safe: one caller).

    Args:
        instance: name of this instance; its journal is ``<state_dir>/<instance>.journal``.
        state_dir: where journals live (a tmpfs such as /run: stale objects do not survive a
            reboot either).
        ifname_template: interface names, ``%d`` replaced by the PPP unit number
            (at most 15 characters once expanded).
        ppp_device: path of /dev/ppp.
        udp_checksums: compute UDP checksums on the tunnels' data packets.

    Raises:
        DataPlaneError: the journal is held by another live instance.
        NetlinkError: the kernel has no l2tp family (run the capability check first).
    """

    def __init__(
        self,
        *,
        instance: str = "kl2tp",
        state_dir: str = DEFAULT_STATE_DIR,
        ifname_template: str = DEFAULT_IFNAME_TEMPLATE,
        ppp_device: str = PPP_DEVICE,
        udp_checksums: bool = True,
    ) -> None:
        if "%d" not in ifname_template:
            raise DataPlaneError(f"ifname template {ifname_template!r} needs a %d")
        self.ifname_template = ifname_template
        self.ppp_device = ppp_device
        self.udp_checksums = udp_checksums
        self.journal = Journal(state_dir, instance)
        self._stale = self.journal.read()
        try:
            self.l2tp = L2tpNetlink()
            self.rt = RtNetlink()
        except BaseException:
            self.journal.close(remove=False)
            raise
        # The previous journal's content is in self._stale; start this run's journal afresh
        # so it only ever lists objects that can still be stale.
        self.journal.rewrite(list(self._stale[0].values()), list(self._stale[1].values()))
        self.tunnels: dict[int, KernelTunnel] = {}
        self.sessions: dict[tuple[int, int], KernelSession] = {}
        self.cost = KernelCost()
        """Time spent programming the kernel, per operation (``show summary``)."""
        self._emfile_told = False

    # -- stale objects -----------------------------------------------------------------------

    def cleanup_stale(self) -> int:
        """Remove what a killed earlier run of this instance left behind; returns how many.

        Only objects recorded in its journal that still match their record are removed.
        """
        tunnels, links = self._stale
        removed = 0
        for rec in tunnels.values():
            if rec.tunnel_id in self.tunnels:
                continue  # ours, in this run
            info = self.l2tp.get_tunnel(rec.tunnel_id)
            if info is None:
                continue
            if (info.peer_tunnel_id, info.local, info.peer) != (
                rec.peer_tunnel_id,
                rec.local,
                rec.peer,
            ):
                log.info("Tnl %d exists but is not the one we left: leaving it", rec.tunnel_id)
                continue
            if self.l2tp.delete_tunnel(rec.tunnel_id):
                log.info("removed stale kernel tunnel %d", rec.tunnel_id)
                removed += 1
        for link_rec in links.values():
            link = self.rt.link_by_index(link_rec.index)
            if link is None or link.name != link_rec.name:
                continue
            if self.rt.delete_link(link_rec.index):
                log.info("removed stale interface %s", link_rec.name)
                removed += 1
        self._stale = ({}, {})
        self._compact()
        return removed

    def _compact(self) -> None:
        self.journal.rewrite(
            [t.record for t in self.tunnels.values()],
            [LinkRecord(s.ifindex, s.ifname) for s in self.sessions.values()],
        )

    def _journal_changed(self) -> None:
        if self.journal.needs_compaction():
            self._compact()

    # -- tunnels -----------------------------------------------------------------------------

    def open_tunnel(self, spec: TunnelSpec) -> socket.socket:
        """Recipe steps 1-2; returns the connected UDP socket (control packets arrive there).

        Raises:
            OSError: bind/connect failed, or the kernel refused the tunnel (NetlinkError).
        """
        if spec.local_tunnel_id in self.tunnels:
            raise DataPlaneError(f"tunnel {spec.local_tunnel_id} is already programmed")
        cost = self.cost.open_tunnel
        t0 = cost.begin()
        try:
            return self._open_tunnel(spec, t0)
        finally:
            cost.end(t0)

    def _open_tunnel(self, spec: TunnelSpec, t: int) -> socket.socket:
        cost = self.cost.open_tunnel
        family = socket.AF_INET6 if ":" in spec.peer_addr[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(spec.local_addr)
            # The kernel sends data to the socket's destination: it must be connected.
            sock.connect(spec.peer_addr)
            local = sock.getsockname()[:2]
            peer = sock.getpeername()[:2]
            record = TunnelRecord(
                spec.local_tunnel_id,
                spec.peer_tunnel_id,
                (str(ipaddress.ip_address(local[0])), int(local[1])),
                (str(ipaddress.ip_address(peer[0])), int(peer[1])),
            )
            # Journal first: if we die between the two steps the record matches nothing.
            self.journal.add_tunnel(record)
            try:
                t = time.thread_time_ns()
                self.l2tp.create_tunnel(
                    sock.fileno(),
                    spec.local_tunnel_id,
                    spec.peer_tunnel_id,
                    udp_csum=self.udp_checksums,
                )
                cost.lap_genl(t)
            except BaseException:
                self.journal.remove_tunnel(spec.local_tunnel_id)
                raise
        except BaseException:
            sock.close()
            raise
        self.tunnels[spec.local_tunnel_id] = KernelTunnel(spec, sock, record)
        self._journal_changed()
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "Tnl %d: kernel tunnel up, %s:%d <-> %s:%d, peer id %d",
                spec.local_tunnel_id,
                *record.local,
                *record.peer,
                spec.peer_tunnel_id,
            )
        return sock

    def close_tunnel(self, tunnel_id: int) -> None:
        """Sessions, then the kernel tunnel, then its socket. Idempotent."""
        tunnel = self.tunnels.get(tunnel_id)
        if tunnel is None:
            return
        for sid in list(tunnel.sessions):
            self.close_session(tunnel_id, sid)
        cost = self.cost.close_tunnel
        t0 = t = cost.begin()
        try:
            self.l2tp.delete_tunnel(tunnel_id)
        finally:
            t = cost.lap_genl(t)
            del self.tunnels[tunnel_id]
            tunnel.sock.close()
            self.journal.remove_tunnel(tunnel_id)
            self._journal_changed()
            cost.end(t0)
        log.debug("Tnl %d: kernel tunnel removed", tunnel_id)

    # -- sessions ----------------------------------------------------------------------------

    def open_session(self, spec: SessionSpec) -> KernelSession:
        """Recipe steps 3-5 plus naming the interface (down, no address, IP dropped).

        Raises:
            OSError: the kernel refused a step; whatever was made is removed again.
        """
        key = (spec.local_tunnel_id, spec.local_session_id)
        tunnel = self.tunnels.get(spec.local_tunnel_id)
        if tunnel is None:
            raise DataPlaneError(f"session {key}: tunnel {spec.local_tunnel_id} not programmed")
        if key in self.sessions:
            raise DataPlaneError(f"session {key} is already programmed")
        cost = self.cost.open_session
        t0 = cost.begin()
        try:
            return self._open_session(spec, tunnel, t0)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE) and not self._emfile_told:
                self._emfile_told = True
                log.warning("Se %d/%d: %s", *key, emfile_hint())
            raise
        finally:
            cost.end(t0)

    def _open_session(self, spec: SessionSpec, tunnel: KernelTunnel, t: int) -> KernelSession:
        key = (spec.local_tunnel_id, spec.local_session_id)
        cost = self.cost.open_session
        self.l2tp.create_session(
            spec.local_tunnel_id,
            spec.local_session_id,
            spec.peer_session_id,
            lns_mode=spec.lns_mode,
            send_seq=spec.data_sequencing,
            recv_seq=spec.data_sequencing,
        )
        t = cost.lap_genl(t)
        if not spec.ppp_unit:
            return self._relayed_session(spec, tunnel)
        ppp: PppoL2tpChannel | None = None
        try:
            ppp = open_session_channel(
                *_pppol2tp_address(tunnel, spec),
                mru=spec.mru,
                npmode=NpMode.DROP,
                ppp_device=self.ppp_device,
            )
            ifindex = socket.if_nametoindex(ppp.kernel_ifname)
            t = cost.lap_ppp(t)
            template = spec.ifname_template or self.ifname_template
            ifname = spec.ifname or template.replace("%d", str(ppp.unit))
            if len(ifname) >= IFNAMSIZ:
                raise DataPlaneError(f"interface name {ifname!r} is longer than 15 characters")
            self.journal.add_link(LinkRecord(ifindex, ifname))
            if ifname != ppp.kernel_ifname:
                try:
                    t = time.thread_time_ns()
                    self.rt.set_link(ifindex, name=ifname)
                    cost.lap_rtnl(t)
                except BaseException:
                    self.journal.remove_link(ifindex)
                    raise
        except BaseException:
            if ppp is not None:
                ppp.close()
            self.l2tp.delete_session(spec.local_tunnel_id, spec.local_session_id)
            raise
        session = KernelSession(spec, ppp, ifname, ifindex)
        self.sessions[key] = session
        tunnel.sessions.add(spec.local_session_id)
        self._journal_changed()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Se %d/%d: kernel session on %s", *key, ifname)
            log.debug("Tnl/Cl %d/%d VPDN: Virtual interface %s created", *key, ifname)
        return session

    def _relayed_session(self, spec: SessionSpec, tunnel: KernelTunnel) -> KernelSession:
        """A session whose frames userspace relays: its PPPoL2TP socket, never bound to a PPP
        channel (no PPPIOCGCHAN), so l2tp_ppp queues received frames on the socket (ff 03
        stripped) and sends what is written to it (ff 03 added). No unit, no interface."""
        key = (spec.local_tunnel_id, spec.local_session_id)
        try:
            sock = connect_pppol2tp(*_pppol2tp_address(tunnel, spec))
            sock.setblocking(False)
        except BaseException:
            self.l2tp.delete_session(*key)
            raise
        session = KernelSession(spec, PppoL2tpChannel(sock, -1, -1, -1, -1), "", 0)
        self.sessions[key] = session
        tunnel.sessions.add(spec.local_session_id)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Se %d/%d: kernel session relayed on its PPPoL2TP socket", *key)
        return session

    def session_up(self, tunnel_id: int, session_id: int, net: NetworkSpec) -> str:
        """MTU, addresses, host route, framed routes, link up, then let IP (and IPv6) through.

        Returns the interface name.
        """
        session = self.sessions.get((tunnel_id, session_id))
        if session is None:
            raise DataPlaneError(f"session {tunnel_id}/{session_id} is not programmed")
        cost = self.cost.session_up
        t0 = cost.begin()
        try:
            self._session_up(session, net, t0)
        finally:
            cost.end(t0)
        session.net = net
        if log.isEnabledFor(logging.DEBUG):
            # IOS's words for the interface and the host route it installs once IPCP is open.
            log.debug("%%LINK-3-UPDOWN: Interface %s, changed state to up", session.ifname)
            for address in _routed(net, session):
                log.debug("Tnl/Cl %d/%d IPCP: Install route to %s", tunnel_id, session_id, address)
        return session.ifname

    def _session_up(self, session: KernelSession, net: NetworkSpec, t: int) -> None:
        cost = self.cost.session_up
        index = session.ifindex
        self.rt.set_link(index, mtu=net.mtu, up=True)
        if net.local_ip is not None:
            self.rt.add_address(index, net.local_ip, net.peer_ip)
            if net.peer_ip is not None:
                self.rt.add_host_route(index, net.peer_ip)
            self._add_routes(session, net.routes)
            t = cost.lap_rtnl(t)
            set_npmode(session.ppp.unit_fd, PPP_IP, NpMode.PASS)
            t = cost.lap_ppp(t)
        if net.local_ifid is not None:
            peer_ll = _link_local(net.peer_ifid) if net.peer_ifid is not None else None
            self.rt.add_address(index, _link_local(net.local_ifid), peer_ll)
            if peer_ll is not None:
                self.rt.add_host_route(index, peer_ll)
            t = cost.lap_rtnl(t)
            set_npmode(session.ppp.unit_fd, PPP_IPV6, NpMode.PASS)
            t = cost.lap_ppp(t)
        if net.local_ip is None and net.local_ifid is None:
            cost.lap_rtnl(t)

    def _add_routes(self, session: KernelSession, routes: tuple[FramedRoute, ...]) -> None:
        """Install the framed routes not installed yet (IPCP reopens after an LCP restart).

        Exclusive: a route another interface (or the host) holds with the same prefix and
        metric is never taken over; that route is logged and skipped, the session goes on.
        """
        for route in routes:
            if route in session.routes:
                continue
            try:
                self.rt.add_route(session.ifindex, route.network, route.metric, replace=False)
            except NetlinkError as exc:
                held = (
                    " (a route with that prefix and metric exists)"
                    if (exc.errno == errno.EEXIST)
                    else ""
                )
                log.warning(
                    "Se %d/%d: framed route %s not installed on %s: %s%s; the session goes "
                    "on without it: check `ip route show %s` and the RADIUS Framed-Route",
                    session.spec.local_tunnel_id,
                    session.spec.local_session_id,
                    route,
                    session.ifname,
                    exc.strerror,
                    held,
                    route.network,
                )
                continue
            session.routes.add(route)

    def set_mru(self, tunnel_id: int, session_id: int, mru: int) -> None:
        """Update the unit's MRU after LCP negotiated it."""
        session = self.sessions.get((tunnel_id, session_id))
        if session is not None:
            set_mru(session.ppp.unit_fd, mru)

    def close_session(self, tunnel_id: int, session_id: int) -> None:
        """Close the unit (interface, addresses and routes go with it), channel, socket,
        then the kernel session. Idempotent."""
        session = self.sessions.pop((tunnel_id, session_id), None)
        if session is None:
            return
        tunnel = self.tunnels.get(tunnel_id)
        if tunnel is not None:
            tunnel.sessions.discard(session_id)
        cost = self.cost.close_session
        t0 = t = cost.begin()
        try:
            session.ppp.close()
            t = cost.lap_ppp(t)
            # Closing the PPPoL2TP socket normally deletes the session already.
            self.l2tp.delete_session(tunnel_id, session_id)
            cost.lap_genl(t)
        finally:
            if session.ifindex:  # a relayed session has no interface in the journal
                self.journal.remove_link(session.ifindex)
                self._journal_changed()
            cost.end(t0)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Se %d/%d: kernel session removed", tunnel_id, session_id)
            if session.net is not None:
                log.debug("%%LINK-3-UPDOWN: Interface %s, changed state to down", session.ifname)
                for address in _routed(session.net, session):
                    log.debug(
                        "Tnl/Cl %d/%d IPCP: Remove route to %s", tunnel_id, session_id, address
                    )

    # -- counters ----------------------------------------------------------------------------

    def tunnel_counters(self, tunnel_id: int) -> Counters | None:
        """Kernel counters of one of our tunnels, or None if unknown."""
        if tunnel_id not in self.tunnels:
            return None
        stats = self.l2tp.get_tunnel_stats(tunnel_id)
        return None if stats is None else to_counters(stats)

    def session_counters(self, tunnel_id: int, session_id: int) -> Counters | None:
        """Kernel counters of one of our sessions, or None if unknown."""
        if (tunnel_id, session_id) not in self.sessions:
            return None
        stats = self.l2tp.get_session_stats(tunnel_id, session_id)
        return None if stats is None else to_counters(stats)

    def sessions_counters(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], Counters]:
        """Kernel counters of those of ``keys`` that are our sessions, from one dump."""
        wanted = {key for key in keys if key in self.sessions}
        if not wanted:
            return {}
        return {
            (info.tunnel_id, info.session_id): to_counters(info.stats)
            for info in self.l2tp.list_sessions()
            if (info.tunnel_id, info.session_id) in wanted
        }

    def close(self) -> None:
        """Remove everything this instance programmed and release the journal."""
        errors: list[BaseException] = []
        for tid in list(self.tunnels):
            try:
                self.close_tunnel(tid)
            except OSError as exc:
                errors.append(exc)
        self.l2tp.close()
        self.rt.close()
        # Nothing of ours is left unless a removal failed: keep the journal for next time then.
        self.journal.close(remove=not errors)
        if errors:
            raise DataPlaneError(f"could not remove every kernel object: {errors[0]}")


class KernelPppChannel:
    """PPP control frames of one kernel session, on its /dev/ppp channel and unit fds.

    Frames start with the PPP protocol field (no ff 03): see :mod:`.pppox`.
    """

    __slots__ = ("_closed", "_early", "_ppp", "dropped")

    EARLY_FRAMES = 16
    """Frames kept that reached userspace before the kernel session existed."""

    def __init__(self, ppp: PppoL2tpChannel) -> None:
        self._ppp = ppp
        self._closed = False
        self._early: collections.deque[bytes] = collections.deque()
        self.dropped = 0

    @property
    def fds(self) -> tuple[int, ...]:
        """(channel fd, unit fd)."""
        return self._ppp.channel_fd, self._ppp.unit_fd

    async def send(self, frame: bytes) -> None:
        """Write one frame: link-level protocols on the channel, NCPs on the unit."""
        if self._closed:
            raise trio.ClosedResourceError("PPP channel closed")
        if len(frame) < 2:
            raise ValueError("a PPP frame starts with a 2-byte protocol field")
        fd = self._fd_for(frame)
        while True:
            try:
                os.write(fd, frame)
                return
            except BlockingIOError:
                await trio.lowlevel.wait_writable(fd)

    def _fd_for(self, frame: bytes) -> int:
        return fd_for_protocol(self._ppp, (frame[0] << 8) | frame[1])

    def _try_read(self) -> bytes | None:
        for fd in self.fds:
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EBADF, errno.ENXIO, errno.EIO):
                    raise trio.EndOfChannel from exc
                raise
            if not data:
                raise trio.EndOfChannel  # the kernel session went away
            return data
        return None

    async def receive(self) -> bytes:
        """Next frame from either fd. Raises trio.EndOfChannel when closed or torn down."""
        while True:
            if self._closed:
                raise trio.EndOfChannel
            if self._early:
                await trio.lowlevel.checkpoint()
                return self._early.popleft()
            frame = self._try_read()
            if frame is not None:
                return frame
            async with trio.open_nursery() as nursery:
                for fd in self.fds:
                    nursery.start_soon(self._wait_readable, fd, nursery.cancel_scope)

    async def _wait_readable(self, fd: int, scope: trio.CancelScope) -> None:
        # No checkpoint between this test and the wait: detach() either ran before (we see
        # _closed) or wakes us with ClosedResourceError; receive() then sees _closed.
        if not self._closed:
            with contextlib.suppress(trio.ClosedResourceError):
                await trio.lowlevel.wait_readable(fd)
        scope.cancel()

    def deliver(self, frame: bytes) -> bool:
        """Keep a frame that reached userspace as a data message.

        Once the kernel session exists its frames arrive on the fds; only frames the peer sent
        before that (it may start LCP as soon as it has sent or seen the ICCN) come this way.
        """
        if self._closed or len(self._early) >= self.EARLY_FRAMES:
            self.dropped += 1
            return False
        self._early.append(frame)
        return True

    def detach(self) -> None:
        """Wake pending receives and stop using the fds (they are closed by the owner)."""
        if self._closed:
            return
        self._closed = True
        for fd in self.fds:
            if fd >= 0:
                trio.lowlevel.notify_closing(fd)

    async def aclose(self) -> None:
        """Stop using the fds; the data plane closes them with the session."""
        self.detach()


class SocketPppChannel(KernelPppChannel):
    """A relayed session's frames on its bare PPPoL2TP socket (``SessionSpec.ppp_unit``
    False): every PPP frame, whatever its protocol, protocol field first."""

    __slots__ = ()

    @property
    def fds(self) -> tuple[int, ...]:
        """The PPPoL2TP socket."""
        return (self._ppp.sock.fileno(),)

    def _fd_for(self, frame: bytes) -> int:
        """Every frame goes out on the socket (the kernel adds ff 03)."""
        return self._ppp.sock.fileno()


@attrs.define(slots=True)
class KernelTunnelHandle:
    """What open_tunnel returns: the tunnel's connected socket, as a trio socket."""

    spec: TunnelSpec
    """What was asked for."""
    sock: Any
    """trio socket over the connected UDP socket; control packets for the tunnel arrive here."""

    @property
    def socket(self) -> object | None:
        """The tunnel task reads and writes control packets on this socket."""
        sock: object = self.sock
        return sock


class KernelDataPlane:
    """:class:`kl2tp.dataplane.base.DataPlane` over :class:`KernelMechanics`.

    Create it with :meth:`open` (it runs the constructor's netlink work in the worker thread);
    then call :meth:`cleanup_stale` once at start-up.
    """

    name = "kernel"
    carries_frames = False
    """The kernel carries PPP frames; userspace sees only those that overtake programming."""
    kernel_counters = True
    """Tunnels and sessions have kernel packet counters."""

    def __init__(self, mechanics: KernelMechanics) -> None:
        self.mechanics = mechanics
        self._limiter = trio.CapacityLimiter(1)
        # Channels grouped by tunnel, so closing a tunnel touches only its own sessions.
        self._channels: dict[int, dict[int, KernelPppChannel]] = {}
        self._trio_sockets: dict[int, Any] = {}

    @classmethod
    async def open(
        cls,
        *,
        instance: str = "kl2tp",
        state_dir: str = DEFAULT_STATE_DIR,
        ifname_template: str = DEFAULT_IFNAME_TEMPLATE,
        ppp_device: str = PPP_DEVICE,
        udp_checksums: bool = True,
    ) -> KernelDataPlane:
        """Open the netlink clients and the journal (see :class:`KernelMechanics`).

        Raises:
            DataPlaneError: another instance holds the journal, or the kernel lacks L2TP.
        """
        # Three descriptors per kernel session: take the whole hard limit (see .cost).
        raise_nofile_limit()
        make = functools.partial(
            KernelMechanics,
            instance=instance,
            state_dir=state_dir,
            ifname_template=ifname_template,
            ppp_device=ppp_device,
            udp_checksums=udp_checksums,
        )
        try:
            mechanics = await trio.to_thread.run_sync(make)
        except OSError as exc:
            raise DataPlaneError(f"cannot open the kernel data plane: {exc}") from exc
        return cls(mechanics)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await trio.to_thread.run_sync(
                functools.partial(fn, *args), limiter=self._limiter
            )
        except OSError as exc:
            raise DataPlaneError(str(exc)) from exc

    async def open_tunnel(self, spec: TunnelSpec) -> KernelTunnelHandle:
        sock = await self._run(self.mechanics.open_tunnel, spec)
        # The trio wrapper shares the stdlib socket object, which KernelMechanics closes
        # once the kernel tunnel is gone.
        tsock = trio.socket.from_stdlib_socket(sock)
        self._trio_sockets[spec.local_tunnel_id] = tsock
        return KernelTunnelHandle(spec, tsock)

    async def close_tunnel(self, local_tunnel_id: int) -> None:
        for channel in self._channels.pop(local_tunnel_id, {}).values():
            channel.detach()
        tsock = self._trio_sockets.pop(local_tunnel_id, None)
        if tsock is not None and tsock.fileno() >= 0:
            # Wake the tunnel task's pending receive; the socket closes in close_tunnel.
            trio.lowlevel.notify_closing(tsock.fileno())
        await self._run(self.mechanics.close_tunnel, local_tunnel_id)

    async def open_session(self, spec: SessionSpec, sink: FrameSink) -> KernelPppChannel:
        session = await self._run(self.mechanics.open_session, spec)
        channel = KernelPppChannel(session.ppp) if spec.ppp_unit else SocketPppChannel(session.ppp)
        self._channels.setdefault(spec.local_tunnel_id, {})[spec.local_session_id] = channel
        return channel

    async def set_mru(self, local_tunnel_id: int, local_session_id: int, mru: int) -> None:
        await self._run(self.mechanics.set_mru, local_tunnel_id, local_session_id, mru)

    async def session_up(
        self, local_tunnel_id: int, local_session_id: int, net: NetworkSpec
    ) -> str | None:
        return await self._run(self.mechanics.session_up, local_tunnel_id, local_session_id, net)

    async def close_session(self, local_tunnel_id: int, local_session_id: int) -> None:
        channels = self._channels.get(local_tunnel_id)
        channel = channels.pop(local_session_id, None) if channels is not None else None
        if channel is not None:
            channel.detach()
        await self._run(self.mechanics.close_session, local_tunnel_id, local_session_id)

    async def tunnel_counters(self, local_tunnel_id: int) -> Counters | None:
        return await self._run(self.mechanics.tunnel_counters, local_tunnel_id)

    async def session_counters(
        self, local_tunnel_id: int, local_session_id: int
    ) -> Counters | None:
        return await self._run(self.mechanics.session_counters, local_tunnel_id, local_session_id)

    async def sessions_counters(
        self, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], Counters]:
        return await self._run(self.mechanics.sessions_counters, keys)

    async def cleanup_stale(self) -> int:
        return await self._run(self.mechanics.cleanup_stale)

    def kernel_cost(self) -> dict[str, dict[str, int]]:
        """Time spent programming the kernel, per operation and kind of call
        (``show summary``'s ``kernel_cost``; :mod:`kl2tp.dataplane.cost`)."""
        return self.mechanics.cost.as_dict()

    async def aclose(self) -> None:
        for channels in self._channels.values():
            for channel in channels.values():
                channel.detach()
        self._channels.clear()
        for tsock in self._trio_sockets.values():
            if tsock.fileno() >= 0:
                trio.lowlevel.notify_closing(tsock.fileno())
        self._trio_sockets.clear()
        with trio.CancelScope(shield=True):
            await self._run(self.mechanics.close)
