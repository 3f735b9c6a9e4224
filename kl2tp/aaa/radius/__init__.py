"""RADIUS: the client (`client`), the AAA back end (`backend`), accounting (`accounting`).

The keys below name what a back end's Access-Accept said in `kl2tp.aaa.base.AuthResult`
``attributes``; the session code reads them without importing pyrad.
"""

__all__ = [
    "ATTR_CLASS",
    "ATTR_FRAMED_NETMASK",
    "ATTR_FRAMED_POOL",
    "ATTR_FRAMED_ROUTES",
    "ATTR_IDLE_TIMEOUT",
    "ATTR_INTERIM_INTERVAL",
    "ATTR_SESSION_TIMEOUT",
]

ATTR_SESSION_TIMEOUT = "session_timeout"
"""`AuthResult.attributes` key: Session-Timeout, seconds (int)."""
ATTR_IDLE_TIMEOUT = "idle_timeout"
"""Idle-Timeout, seconds (int)."""
ATTR_INTERIM_INTERVAL = "interim_interval"
"""Acct-Interim-Interval, seconds (int)."""
ATTR_FRAMED_POOL = "framed_pool"
"""Framed-Pool: the name of the pool to take the address from (str)."""
ATTR_FRAMED_ROUTES = "framed_routes"
"""Framed-Route texts as the server sent them (tuple of str; the session parses them)."""
ATTR_FRAMED_NETMASK = "framed_netmask"
"""Framed-IP-Netmask (IPv4Address): the subscriber routes the network around its address."""
ATTR_CLASS = "class"
"""Class attributes to echo in accounting (tuple of bytes)."""
