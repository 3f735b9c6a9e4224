#!/bin/sh
# Install what the kernel lab (tests/lab/run) needs on a Debian 12 machine.
#
# Idempotent: when every package is already installed it returns without touching apt.
# Run as root.  `scripts/lab-deps.sh --qemu` also installs the qemu route's packages.
#
# Why each package:
#   linux-source-6.1            the kernel tree the User-Mode Linux guest is built from
#   flex bison bc build-essential  what `make ARCH=um linux` needs (no libelf: no modules)
#   iproute2 iputils-ping       ip/ping inside the guest (it runs the host's userland)
#   xl2tpd ppp                  third-party L2TP/PPP peers the lab tests interoperate with
#   pppoe                       rp-pppoe's userspace client: pppd's subscriber over PPPoE
#                               (pty "pppoe -I ..."; the guest kernel has no PPPoE module)
#   freeradius freeradius-utils RADIUS server and radclient for the AAA lab tests
#   l2tpns                      another vendor's LNS (C, TUN data path): host interop test
#                               (tests/interop/) and the side-by-side bench
#   tshark                      Wireshark's dissector reads a whole test run (tests/interop/)
#   iperf3                      bulk TCP and small-packet UDP through the kernel data path vs
#                               bare veth (tests/lab/test_datapath.py, bench/bench_lab_datapath.py)
#   ethtool                     that bench's third path: veth with segmentation offloads off
#   busybox-static              the qemu route's initramfs; handy `poweroff -f` in the guest
#   qemu-system-x86 cpio        the qemu route only (--qemu): the VM and its initramfs
set -eu

packages="linux-source-6.1 flex bison bc build-essential xz-utils iproute2 iputils-ping
xl2tpd ppp pppoe freeradius freeradius-utils busybox-static l2tpns tshark iperf3 ethtool"
case "${1:-}" in
    --qemu) packages="$packages qemu-system-x86 cpio" ;;
    "") ;;
    *) echo "usage: $0 [--qemu]" >&2; exit 2 ;;
esac

missing=""
for p in $packages; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "lab-deps: missing packages:$missing (run this script as root)" >&2
    exit 1
fi
echo "lab-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
# --no-install-recommends keeps the freeradius/xl2tpd pulls small; policy-rc.d stops the
# packages' postinst from starting daemons on the host (the tests start their own).
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
fi
status=0
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >&2 || status=$?
[ -n "$created_policy" ] && rm -f "$policy"
exit $status
