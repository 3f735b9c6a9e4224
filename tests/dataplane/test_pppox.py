"""Wire layouts the PPPoL2TP and /dev/ppp calls depend on (checked against the uapi headers)."""

from __future__ import annotations

import struct

import pytest

from kl2tp.dataplane import pppox

# From <linux/ppp-ioctl.h> as compiled on x86_64 (_IOR/_IOW/_IOWR('t', nr, type)).
IOCTLS = [
    ("PPPIOCGCHAN", 0x80047437),
    ("PPPIOCATTCHAN", 0x40047438),
    ("PPPIOCDISCONN", 0x00007439),
    ("PPPIOCCONNECT", 0x4004743A),
    ("PPPIOCNEWUNIT", 0xC004743E),
    ("PPPIOCSNPMODE", 0x4008744B),
    ("PPPIOCGNPMODE", 0xC008744C),
    ("PPPIOCSMRU", 0x40047452),
    ("PPPIOCGUNIT", 0x80047456),
]


@pytest.mark.parametrize(("name", "value"), IOCTLS)
def test_ioctl_numbers_match_the_kernel_header(name: str, value: int) -> None:
    assert getattr(pppox, name) == value


def test_sockaddr_pppol2tp_is_the_packed_38_byte_ipv4_layout() -> None:
    addr = pppox.sockaddr_pppol2tp(7, ("192.0.2.9", 1701), 0x1234, 0x5678, 0x9ABC, 0xDEF0)
    assert len(addr) == 38
    family, proto, pid, fd = struct.unpack_from("=HIii", addr, 0)
    assert (family, proto, pid, fd) == (24, 1, 0, 7)
    # struct sockaddr_in: family in host order, port and address in network order, 8 zeros.
    sin_family, port, ip = struct.unpack_from("=H2s4s", addr, 14)
    assert sin_family == 2
    assert port == (1701).to_bytes(2, "big")
    assert ip == bytes([192, 0, 2, 9])
    assert addr[22:30] == bytes(8)
    assert struct.unpack_from("=HHHH", addr, 30) == (0x1234, 0x5678, 0x9ABC, 0xDEF0)


def test_sockaddr_pppol2tpin6_puts_ids_before_the_50_byte_ipv6_address() -> None:
    addr = pppox.sockaddr_pppol2tp(3, ("2001:db8::1", 1701), 1, 2, 3, 4)
    assert len(addr) == 50
    assert struct.unpack_from("=HIii", addr, 0) == (24, 1, 0, 3)
    assert struct.unpack_from("=HHHH", addr, 14) == (1, 2, 3, 4)
    sin6_family, port = struct.unpack_from("=H2s", addr, 22)
    assert sin6_family == 10
    assert port == (1701).to_bytes(2, "big")
    assert addr[30:46] == bytes.fromhex("20010db8000000000000000000000001")


def test_link_protocols_go_to_the_channel_and_ncps_to_the_unit() -> None:
    channel = pppox.PppoL2tpChannel.__new__(pppox.PppoL2tpChannel)
    channel.channel_fd, channel.unit_fd = 10, 11
    for proto in (0xC021, 0xC023, 0xC223):  # LCP, PAP, CHAP
        assert pppox.fd_for_protocol(channel, proto) == 10
    for proto in (0x8021, 0x8057, 0x80FD):  # IPCP, IPv6CP, CCP
        assert pppox.fd_for_protocol(channel, proto) == 11
