"""The LAC's RADIUS tunnel lookup: the Access-Request a Cisco LAC sends for a subscriber's
DNIS or domain, and the reply turned into candidates (:mod:`kl2tp.lac.selection`).

The request is the reference trace's: User-Name ``dnis:614629`` (or the domain),
User-Password ``[lac] lookup_password``, Service-Type Outbound, NAS-Port-Type Virtual,
Called-/Calling-Station-Id from the ICRQ values. The Tunnel-Password of the reply is
decrypted with the secret of the server that answered and our Request Authenticator.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from kl2tp.aaa.radius.client import RadiusClient
from kl2tp.config import Config
from kl2tp.l2tp.events import CallParams
from kl2tp.lac.selection import (
    ReplyError,
    ReplyTunnels,
    RouteKey,
    candidates_from_reply,
    parse_attributes,
)
from kl2tp.lac.tunnels import Lookup
from kl2tp.values import Secret

log = logging.getLogger("kl2tp.aaa")

ACCESS_ACCEPT = 2


def lookup_attributes(key: RouteKey, call: CallParams, password: Secret) -> dict[str, Any]:
    """The Access-Request attributes (pyrad names, ``_`` for ``-``) of one lookup."""
    attributes: dict[str, Any] = {
        "User_Name": key.lookup_name,
        "User_Password": password.reveal(),
        "Service_Type": "Outbound-User",
        "NAS_Port_Type": "Virtual",
    }
    if call.called_number:
        attributes["Called_Station_Id"] = call.called_number
    if call.calling_number:
        attributes["Calling_Station_Id"] = call.calling_number
    return attributes


def make_lookup(client: RadiusClient, password: Secret) -> Lookup:
    """A :data:`kl2tp.lac.tunnels.Lookup` asking ``client``'s servers."""

    async def lookup(key: RouteKey, call: CallParams) -> ReplyTunnels | None:
        packet = client.create_auth_packet(**lookup_attributes(key, call, password))
        reply = await client.auth(packet)
        if reply is None:
            log.warning("RADIUS tunnel lookup %s: no server answered", key.lookup_name)
            return None
        if reply.code != ACCESS_ACCEPT:
            log.info("RADIUS tunnel lookup %s: rejected", key.lookup_name)
            return None
        try:
            attributes = parse_attributes(bytes(reply.raw_packet)[20:])
        except ReplyError as exc:
            log.warning("RADIUS tunnel lookup %s: %s", key.lookup_name, exc)
            return None
        # The client encoded the request last for the server that answered: its secret and
        # Request Authenticator are the ones the Tunnel-Password was encrypted with.
        tunnels = candidates_from_reply(
            attributes,
            secret=bytes(packet.secret),
            request_authenticator=bytes(packet.authenticator),
        )
        log.info(
            "RADIUS tunnel lookup %s: %s",
            key.lookup_name,
            ", ".join(str(c) for c in tunnels.candidates) or "no L2TP tunnel in the reply",
        )
        return tunnels

    return lookup


async def radius_lookup(cfg: Config, nursery: trio.Nursery) -> Lookup:
    """Start a RADIUS client for ``[[radius.server]]`` in ``nursery``; its lookup."""
    client = RadiusClient.from_config(cfg.radius)
    await nursery.start(client.run)
    return make_lookup(client, cfg.lac.lookup_password)
