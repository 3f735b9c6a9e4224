"""A kl2tp data plane that is about to be killed with SIGKILL (used by test_stale_cleanup).

Usage: python stale_instance.py STATE_DIR LOCAL PEER

Programs tunnel 30 (with session 300 and its interface) and tunnel 31 as instance "stale",
then forks a child that keeps tunnel 30's file descriptors open (as an inherited fd would),
prints one JSON line and waits to be killed. Tunnel 31 has no other holder, so the kernel
removes it when this process dies.
"""

from __future__ import annotations

import json
import os
import sys
import time

from kl2tp.dataplane.base import SessionSpec, TunnelSpec
from kl2tp.dataplane.kernel import KernelMechanics


def main() -> None:
    state_dir, local, peer = sys.argv[1:4]
    mech = KernelMechanics(instance="stale", state_dir=state_dir, ifname_template="kl%d")
    mech.open_tunnel(TunnelSpec(30, 40, (local, 1701), (peer, 1701)))
    session = mech.open_session(SessionSpec(30, 40, 300, 400, lns_mode=True))
    mech.open_tunnel(TunnelSpec(31, 41, (local, 1701), (peer, 1701)))
    child = os.fork()
    if child == 0:
        # The child keeps tunnel 30, its session and unit alive; it must not keep the journal
        # (a lock held by a live process means "instance running") nor tunnel 31.
        os.close(mech.journal._fd)
        mech.tunnels[31].sock.close()
        time.sleep(3600)
        os._exit(0)
    print(json.dumps({"child": child, "ifname": session.ifname}), flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    main()
