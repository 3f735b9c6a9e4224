"""Framed-Route (RFC 2865 5.22) and Framed-IP-Netmask (5.9) into typed routes."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from kl2tp.values import FramedRoute, netmask_route, parse_framed_route


@pytest.mark.parametrize(
    ("text", "network", "metric"),
    [
        # RFC 2865 5.22's own examples: prefix/len, gateway, several metrics (first kept)...
        ("192.168.1.0/24 192.168.1.1 1 2 -1 3 400", "192.168.1.0/24", 1),
        # ...and a classful prefix without a length (class C: /24).
        ("192.168.1.0 192.168.1.1 1", "192.168.1.0/24", 1),
        ("10.1.0.0/24 0.0.0.0 1", "10.1.0.0/24", 1),
        ("10.1.0.0/24", "10.1.0.0/24", 0),
        ("10.1.0.0/24 0.0.0.0", "10.1.0.0/24", 0),
        ("10.0.0.0 0.0.0.0 5", "10.0.0.0/8", 5),  # class A
        ("172.16.0.0 0.0.0.0 5", "172.16.0.0/16", 5),  # class B
        # The PREFIX NETMASK form many servers are set up with.
        ("10.1.0.0 255.255.255.0 0.0.0.0 1", "10.1.0.0/24", 1),
        ("10.1.2.3 255.255.255.255", "10.1.2.3/32", 0),
        ("  10.2.0.0/16\t10.9.9.9  7 ", "10.2.0.0/16", 7),
        ("0.0.0.0/0 0.0.0.0 100", "0.0.0.0/0", 100),
    ],
)
def test_rfc_forms(text: str, network: str, metric: int) -> None:
    assert parse_framed_route(text) == FramedRoute(IPv4Network(network), metric)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("10.1.0.0/33 0.0.0.0 1", "prefix length"),
        ("10.1.0.0/ 0.0.0.0", "prefix length"),
        ("10.1.0.0/\uff124", "prefix length"),  # a non-ASCII (fullwidth) digit
        ("10.1.0.5/24 0.0.0.0 1", "host bits"),
        ("10.2.3.4 0.0.0.0 1", "host bits"),  # classful /8
        ("224.0.0.0 0.0.0.0", "class A, B or C"),
        ("example.net/24", "bad prefix"),
        ("2001:db8::/32", "bad prefix"),
        ("10.1.0.0/24 gw 1", "bad gateway"),
        ("10.1.0.0/24 0.0.0.0 -1", "bad metric"),
        ("10.1.0.0/24 0.0.0.0 4294967296", "bad metric"),
        ("10.1.0.0/24 0.0.0.0 one", "bad metric"),
    ],
)
def test_bad_routes_raise_value_error_saying_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_framed_route(text)


def test_str_is_what_show_session_prints() -> None:
    assert str(parse_framed_route("10.1.0.0 255.255.255.0 0.0.0.0 3")) == "10.1.0.0/24 metric 3"


def test_netmask_routes_the_subscribers_network() -> None:
    peer = IPv4Address("10.20.0.7")
    assert netmask_route(peer, IPv4Address("255.255.255.248")) == FramedRoute(
        IPv4Network("10.20.0.0/29")
    )
    assert netmask_route(peer, IPv4Address("255.255.255.255")) is None  # the host route
    with pytest.raises(ValueError, match="bad netmask"):
        netmask_route(peer, IPv4Address("255.0.255.0"))
    with pytest.raises(ValueError, match="bad netmask"):
        netmask_route(peer, IPv4Address("0.0.0.0"))
