"""Known-answer vectors: MD4 (RFC 1320 A.5), DES (FIPS 46 examples), MS-CHAPv2 (RFC 2759 9.2),
CHAP-MD5 (RFC 1994 with the reference trace's proxy values)."""

from __future__ import annotations

import hashlib

import pytest

from ppp.auth import chap_md5_response, verify_chap_md5
from ppp.des import des_encrypt_block, expand_key
from ppp.md4 import md4
from ppp.mschapv2 import (
    challenge_hash,
    challenge_response,
    check_authenticator_response,
    generate_authenticator_response,
    generate_nt_response,
    nt_password_hash,
    verify_nt_response,
)


@pytest.mark.parametrize(
    ("message", "digest"),
    [
        (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
        (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
        (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
        (b"message digest", "d9130a8164549fe818874806e1c7014b"),
        (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
        (
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "043f8582f241db351ce627e153e7f0e4",
        ),
        (b"1234567890" * 8, "e33b4ddc9c38f2199c3e7b164fcc0536"),
    ],
)
def test_md4_rfc1320_vectors(message: bytes, digest: str) -> None:
    assert md4(message).hex() == digest


def test_md4_padding_boundaries_differ() -> None:
    # 55, 56 and 64 octets straddle the padding boundary; all digests must be distinct
    digests = {md4(b"x" * n) for n in (55, 56, 63, 64, 65, 119, 120)}
    assert len(digests) == 7


@pytest.mark.parametrize(
    ("key", "plain", "cipher"),
    [
        ("133457799BBCDFF1", "0123456789ABCDEF", "85E813540F0AB405"),
        ("0E329232EA6D0D73", "8787878787878787", "0000000000000000"),
        ("0123456789ABCDEF", "4E6F772069732074", "3FA40E8A984D4815"),
        ("0101010101010101", "95F8A5E5DD31D900", "8000000000000000"),
    ],
)
def test_des_known_answers(key: str, plain: str, cipher: str) -> None:
    result = des_encrypt_block(bytes.fromhex(key), bytes.fromhex(plain))
    assert result.hex().upper() == cipher


def test_des_parity_bits_are_ignored() -> None:
    plain = bytes.fromhex("0123456789ABCDEF")
    key = bytes.fromhex("133457799BBCDFF1")
    flipped = bytes(b ^ 1 for b in key)
    assert des_encrypt_block(key, plain) == des_encrypt_block(flipped, plain)


def test_seven_octet_keys_expand_without_parity() -> None:
    assert expand_key(bytes.fromhex("FFFFFFFFFFFFFF")) == bytes.fromhex("FEFEFEFEFEFEFEFE")
    assert expand_key(bytes(7)) == bytes(8)
    assert expand_key(bytes.fromhex("80000000000000")) == bytes.fromhex("8000000000000000")


# RFC 2759 section 9.2
USER = "User"
PASSWORD = "clientPass"
AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
AUTH_RESPONSE = "S=407A5589115FD0D6209F510FE9C04566932CDA56"


def test_mschapv2_intermediate_values() -> None:
    assert challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, USER).hex().upper() == (
        "D02E4386BCE91226"
    )
    assert nt_password_hash(PASSWORD).hex().upper() == "44EBBA8D5312B8D611474411F56989AE"
    assert md4(nt_password_hash(PASSWORD)).hex().upper() == "41C00C584BD2D91C4017A2A12FA59F3F"
    assert (
        challenge_response(bytes.fromhex("D02E4386BCE91226"), nt_password_hash(PASSWORD))
        == NT_RESPONSE
    )


def test_mschapv2_nt_response() -> None:
    assert generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, PASSWORD) == NT_RESPONSE
    assert verify_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, PASSWORD, NT_RESPONSE)
    assert not verify_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, "wrong", NT_RESPONSE)


def test_mschapv2_authenticator_response() -> None:
    response = generate_authenticator_response(
        PASSWORD, NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, USER
    )
    assert response == AUTH_RESPONSE
    assert check_authenticator_response(
        AUTH_RESPONSE.lower(), PASSWORD, NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, USER
    )
    assert not check_authenticator_response(
        AUTH_RESPONSE, "other", NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, USER
    )


def test_mschapv2_domain_prefix_is_not_hashed() -> None:
    assert challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, "CORP\\User") == challenge_hash(
        PEER_CHALLENGE, AUTH_CHALLENGE, USER
    )


# The reference trace: CHAP id 6, the LAC's challenge and the subscriber's response
TRACE_ID = 6
TRACE_CHALLENGE = bytes.fromhex("5d0d008cb1677cf8bc354556321a7a74")
TRACE_RESPONSE = bytes.fromhex("ca1cc2e4fa6899e8df1b695c0a80883e")


def test_chap_md5_is_md5_of_id_secret_challenge() -> None:
    expected = hashlib.md5(b"\x06secret" + TRACE_CHALLENGE).digest()
    assert chap_md5_response(TRACE_ID, "secret", TRACE_CHALLENGE) == expected
    assert verify_chap_md5("secret", TRACE_ID, TRACE_CHALLENGE, expected)
    assert not verify_chap_md5("secret", TRACE_ID + 1, TRACE_CHALLENGE, expected)
    assert not verify_chap_md5(b"Secret", TRACE_ID, TRACE_CHALLENGE, expected)


def test_trace_chap_response_verifies_with_cisco() -> None:
    """The trace's proxy CHAP response is MD5(06, "cisco", challenge): 2500-1's password is
    "cisco" (found by this test's predecessor, which tried a few guesses)."""
    assert verify_chap_md5("cisco", TRACE_ID, TRACE_CHALLENGE, TRACE_RESPONSE)
    for wrong in ("hello", "2500-1", "Cisco", ""):
        assert not verify_chap_md5(wrong, TRACE_ID, TRACE_CHALLENGE, TRACE_RESPONSE)
