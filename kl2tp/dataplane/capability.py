"""Can this kernel run the kernel data plane?

:func:`check_kernel` probes the three things the kernel back end needs, without changing
anything: the ``l2tp`` generic-netlink family (l2tp_netlink), PPPoL2TP sockets (l2tp_ppp) and
/dev/ppp (ppp_generic). The daemon calls it at start-up with ``kind = "kernel"`` and refuses to
start with the returned message, which names every module to load.
"""

from __future__ import annotations

import errno
import os
import socket

from kl2tp.dataplane.netlink import L2tpNetlink, NetlinkError
from kl2tp.dataplane.pppox import AF_PPPOX, PX_PROTO_OL2TP

PPP_DEVICE = "/dev/ppp"


def _has_l2tp_genl() -> bool:
    try:
        with L2tpNetlink():
            return True
    except NetlinkError as exc:
        if exc.errno in (errno.ENOENT, errno.EOPNOTSUPP):
            return False
        raise


def _has_pppol2tp() -> bool:
    try:
        sock = socket.socket(AF_PPPOX, socket.SOCK_DGRAM, PX_PROTO_OL2TP)
    except OSError:
        # EAFNOSUPPORT: no PPPoX at all; EPROTONOSUPPORT: pppox without l2tp_ppp.
        return False
    sock.close()
    return True


def _has_dev_ppp(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def check_kernel(ppp_device: str = PPP_DEVICE) -> str | None:
    """None when the kernel data plane can run here, else one message saying what to load.

    Args:
        ppp_device: path of the PPP device (a parameter so tests can point it elsewhere).

    Raises:
        OSError: only for errors that are not "missing feature" (for example running out of
            file descriptors), which the caller should report as they are.
    """
    missing: list[tuple[str, str]] = []
    if not _has_l2tp_genl():
        missing.append(("the l2tp generic-netlink family", "l2tp_netlink"))
    if not _has_pppol2tp():
        missing.append(("PPPoL2TP sockets", "l2tp_ppp"))
    if not _has_dev_ppp(ppp_device):
        missing.append((ppp_device, "ppp_generic"))
    if not missing:
        return None
    what = ", ".join(name for name, _ in missing)
    # l2tp_ppp needs l2tp_netlink's core and ppp_generic; load all three so one command works.
    modules = "l2tp_netlink l2tp_ppp ppp_generic"
    return (
        f"the kernel data plane needs {what}, which this kernel ({os.uname().release}) "
        f"does not provide: load the modules with `modprobe -a {modules}` as root "
        "(on Ubuntu, first `apt install linux-modules-extra-$(uname -r)`), "
        'or set [dataplane] kind = "null" to run without the kernel data path'
    )
