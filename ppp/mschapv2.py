"""MS-CHAPv2 cryptography (RFC 2759 section 8), pure functions for both ends and for AAA.

The peer computes the NT-Response with :func:`generate_nt_response`; the authenticator (or the
local AAA back end, which knows the password) checks it with :func:`verify_nt_response` and
proves its own knowledge of the password with :func:`generate_authenticator_response`, the
``"S=<40 hex>"`` string the Success packet carries, which the peer checks in turn.
"""

from __future__ import annotations

import hashlib
import hmac

from ppp.des import des_encrypt_block
from ppp.md4 import md4

__all__ = [
    "challenge_hash",
    "challenge_response",
    "check_authenticator_response",
    "generate_authenticator_response",
    "generate_nt_response",
    "nt_password_hash",
    "verify_nt_response",
]

_MAGIC1 = b"Magic server to client signing constant"
_MAGIC2 = b"Pad to make it do more than one iteration"


def _strip_domain(username: str) -> bytes:
    # RFC 2759 8.2: only the user name, without any "DOMAIN\" prefix, enters the hash
    return username.rsplit("\\", 1)[-1].encode()


def nt_password_hash(password: str) -> bytes:
    """NtPasswordHash (RFC 2759 8.3): MD4 of the UTF-16LE (Unicode) password."""
    return md4(password.encode("utf-16-le"))


def challenge_hash(peer_challenge: bytes, authenticator_challenge: bytes, username: str) -> bytes:
    """ChallengeHash (RFC 2759 8.2): the first 8 octets of SHA1(peer, authenticator, name)."""
    digest = hashlib.sha1(
        peer_challenge + authenticator_challenge + _strip_domain(username)
    ).digest()
    return digest[:8]


def challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    """ChallengeResponse (RFC 2759 8.5): DES of the challenge under three 7-octet keys."""
    z = password_hash + b"\x00" * (21 - len(password_hash))
    return b"".join(des_encrypt_block(z[i : i + 7], challenge) for i in (0, 7, 14))


def generate_nt_response(
    authenticator_challenge: bytes, peer_challenge: bytes, username: str, password: str
) -> bytes:
    """GenerateNTResponse (RFC 2759 8.1): the 24-octet NT-Response."""
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    return challenge_response(challenge, nt_password_hash(password))


def verify_nt_response(
    authenticator_challenge: bytes,
    peer_challenge: bytes,
    username: str,
    password: str,
    nt_response: bytes,
) -> bool:
    """True when ``nt_response`` proves knowledge of ``password`` (constant-time compare)."""
    expected = generate_nt_response(authenticator_challenge, peer_challenge, username, password)
    return hmac.compare_digest(expected, nt_response)


def generate_authenticator_response(
    password: str,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    username: str,
) -> str:
    """GenerateAuthenticatorResponse (RFC 2759 8.7): ``"S="`` and 40 upper-case hex digits."""
    password_hash_hash = md4(nt_password_hash(password))
    digest = hashlib.sha1(password_hash_hash + nt_response + _MAGIC1).digest()
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    digest = hashlib.sha1(digest + challenge + _MAGIC2).digest()
    return "S=" + digest.hex().upper()


def check_authenticator_response(
    received: str,
    password: str,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    username: str,
) -> bool:
    """The peer's check of the Success packet's ``S=`` string (RFC 2759 8.8)."""
    expected = generate_authenticator_response(
        password, nt_response, peer_challenge, authenticator_challenge, username
    )
    return hmac.compare_digest(expected.encode(), received.upper().encode())
