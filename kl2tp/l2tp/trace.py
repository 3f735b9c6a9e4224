"""IOS-style debug lines for the L2TP control plane (logger ``kl2tp.l2tp``).

The wording follows Cisco's ``debug vpdn l2x-events`` / ``l2x-packets`` so an engineer who
knows that output reads ours at once::

    Tnl 17688 L2TP: O SCCRQ
    Tnl 17688 L2TP: O SCCRQ, flg TLS, ver 2, len 128, tnl 0, cl 0, ns 0, nr 0
    Tnl 17688 L2TP: Tunnel state change from idle to wait-ctl-reply
    Tnl 17688 L2TP: I SCCRP from l2tp-gw
    Tnl/Cl 17688/7 L2TP: Session state change from wait-reply to established
    Tnl 55270 L2TP: O ZLB ctrl ack, flg TLS, ver 2, len 12, tnl 17688, cl 0, ns 1, nr 2

Per-AVP parse lines (``Parse  AVP 7, len 13, flag 0x8000 (M)`` / ``Hostname l2tp-gw``) and
the hex dump under each packet line go to the child logger ``kl2tp.l2tp.avp`` at level
``AVP_LEVEL`` (5, below DEBUG): the most verbose setting. Callers guard every call with
``isEnabledFor`` so nothing is formatted at 100,000 sessions unless someone asked for it. The
AVP wording is `describe`'s, which shows secrets and what could test guesses at them (proxy
and tunnel responses, hidden ciphertext) by their length only and escapes every peer-supplied
string; the hex dump zeroes those values (`masked`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kl2tp.l2tp import describe
from kl2tp.l2tp.avp import Avp
from kl2tp.l2tp.constants import MESSAGE_TYPES

log = logging.getLogger("kl2tp.l2tp")
avp_log = logging.getLogger("kl2tp.l2tp.avp")

AVP_LEVEL = 5
"""Level of the per-AVP parse lines: below DEBUG, the most verbose setting."""

_FLAG_LETTERS = ((0x8000, "T"), (0x4000, "L"), (0x0800, "S"), (0x0200, "O"), (0x0100, "P"))


def tunnel_prefix(tid: int) -> str:
    """``Tnl 17688``."""
    return f"Tnl {tid}"


def session_prefix(tid: int, sid: int) -> str:
    """``Tnl/Cl 17688/7``."""
    return f"Tnl/Cl {tid}/{sid}"


def line(prefix: str, text: str) -> None:
    """One debug line: ``<prefix> L2TP: <text>``."""
    log.debug("%s L2TP: %s", prefix, text)


def message_name(msg_type: int | None) -> str:
    """``SCCRQ``, ``StopCCN``, ``ZLB`` (None), or ``type 99`` for an unknown one."""
    if msg_type is None:
        return "ZLB"
    known = MESSAGE_TYPES.get(msg_type)
    return known.abbrev if known is not None else f"type {msg_type}"


def header_text(data: bytes) -> str:
    """``flg TLS, ver 2, len 12, tnl 17688, cl 0, ns 1, nr 2`` from a control header."""
    if len(data) < 12:
        return f"short packet, len {len(data)}"
    flags = (data[0] << 8) | data[1]
    letters = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    return (
        f"flg {letters}, ver {flags & 0xF}, len {(data[2] << 8) | data[3]}, "
        f"tnl {(data[4] << 8) | data[5]}, cl {(data[6] << 8) | data[7]}, "
        f"ns {(data[8] << 8) | data[9]}, nr {(data[10] << 8) | data[11]}"
    )


def _type_of(data: bytes) -> int | None:
    """The Message Type AVP value of an encoded control message (None for a ZLB)."""
    if len(data) < 20:
        return None
    return (data[18] << 8) | data[19]


def packet(tid: int, direction: str, data: bytes, *, retransmit: bool = False) -> None:
    """``Tnl 17688 L2TP: O SCCRQ, flg TLS, ver 2, len 128, ...`` (``ZLB ctrl ack`` for a ZLB).

    Args:
        tid: our tunnel id (the prefix).
        direction: ``"I"`` or ``"O"``.
        data: the encoded control message.
        retransmit: adds ``(retransmit)`` so resends stand out.
    """
    msg_type = _type_of(data)
    name = "ZLB ctrl ack" if msg_type is None else message_name(msg_type)
    again = " (retransmit)" if retransmit else ""
    log.debug("Tnl %d L2TP: %s %s%s, %s", tid, direction, name, again, header_text(data))
    if avp_log.isEnabledFor(AVP_LEVEL):
        hex_dump(tid, data)


DUMP_INDENT = " " * 9
"""IOS indents the hex lines under a packet line by nine spaces."""
_MASKED_AVPS = frozenset({13, 33})
"""Challenge Response and Proxy Authen Response: their values never reach a log."""


def masked(data: bytes) -> bytes:
    """``data`` with the values of AVPs 13 and 33 and of every hidden AVP zeroed.

    Those are what `describe` shows by length only (a tunnel or CHAP response beside its
    challenge, a PAP password, MD5 keystream over known plaintext): each checks guesses at a
    secret offline. Lengths and flags stay, so the dump still decodes.
    """
    if len(data) < 12 or not data[0] & 0x80:
        return data
    out = bytearray(data)
    pos = 12
    end = min(len(out), (out[2] << 8) | out[3])
    while pos + 6 <= end:
        length = ((out[pos] << 8) | out[pos + 1]) & 0x3FF
        if length < 6 or pos + length > end:
            break
        vendor = (out[pos + 2] << 8) | out[pos + 3]
        attr = (out[pos + 4] << 8) | out[pos + 5]
        if out[pos] & 0x40 or (vendor == 0 and attr in _MASKED_AVPS):
            out[pos + 6 : pos + length] = bytes(length - 6)
        pos += length
    return bytes(out)


def hex_dump(tid: int, data: bytes) -> None:
    """The packet's bytes under its line, 16 to a line as IOS prints them, at ``AVP_LEVEL``
    (``kl2tpctl decode`` reads these lines as they are, log prefixes and all), with the
    values a log must not hold zeroed (:func:`masked`)."""
    shown = masked(data)
    for i in range(0, len(shown), 16):
        row = " ".join(f"{b:02X}" for b in shown[i : i + 16])
        avp_log.log(AVP_LEVEL, "Tnl %d L2TP: %s%s", tid, DUMP_INDENT, row)


def state_change(prefix: str, what: str, old: str, new: str) -> None:
    """``Tunnel state change from idle to wait-ctl-reply``."""
    log.debug("%s L2TP: %s state change from %s to %s", prefix, what, old, new)


def avp_lines(
    prefix: str, data: bytes, avps: Sequence[Avp], start: int = 12, msg_type: int | None = None
) -> None:
    """The per-AVP parse lines of a received message, from its wire bytes and decoded AVPs.

    The wire walk gives each AVP's length and flags; the decoded list (same order) gives the
    value; the wording is the codec's (``describe``, shared with ``kl2tpctl decode``). Logged
    at ``AVP_LEVEL`` on ``kl2tp.l2tp.avp``.

    Args:
        start: byte offset of the first AVP in `avps` (20 skips the Message Type AVP).
        msg_type: picks the StopCCN or CDN wording of a Result Code.
    """
    pos = start
    end = min(len(data), (data[2] << 8) | data[3]) if len(data) >= 4 else 0
    for avp in avps:
        if pos + 6 > end:
            break
        flags = (data[pos] << 8) | data[pos + 1]
        length = flags & 0x3FF
        for text in describe.avp_lines(avp, length, flags, msg_type):
            avp_log.log(AVP_LEVEL, "%s L2TP: %s", prefix, text)
        pos += max(length, 6)
