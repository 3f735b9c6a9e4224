#!/bin/sh
# Make (once) and print the cached Debian 12 root the deploy tests apply the kl2tp role to.
#
# The root is debootstrapped with what Ansible needs to run in it (python3) and what the
# checks use (systemd for `systemd-analyze verify`), then kept as a tarball in
# /var/cache/kl2tp-deploy (KL2TP_DEPLOY_CACHE): a rerun only prints its path. The tests
# unpack a fresh copy every run, so the role always meets a clean root. Run as root.
set -eu
cache=${KL2TP_DEPLOY_CACHE:-/var/cache/kl2tp-deploy}
tarball=$cache/rootfs-bookworm.tar
mirror=${KL2TP_DEPLOY_MIRROR:-http://deb.debian.org/debian}
if [ -s "$tarball" ]; then
    echo "$tarball"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "deploy-rootfs: $tarball is missing (run this script as root)" >&2
    exit 1
fi
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase --include=python3,systemd bookworm "$work/root" "$mirror" >&2
# Downloaded .debs are not needed in the copy the tests unpack.
rm -rf "$work/root/var/cache/apt/archives/"*.deb
tar -C "$work/root" -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
echo "$tarball"
