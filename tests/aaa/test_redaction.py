"""The AVP wording (trace, ``kl2tpctl decode``) never shows a secret or what tests guesses
at one, and escapes every peer-supplied string."""

from __future__ import annotations

from kl2tp.l2tp.avp import Avp, HiddenValue, ResultCode
from kl2tp.l2tp.constants import AvpType
from kl2tp.l2tp.describe import avp_lines
from ppp.credentials import ChapCredentials, MsChapV2Credentials, PapCredentials

PASSWORD = b"Hunter2-pw"


def shown(avp: Avp) -> str:
    return "\n".join(avp_lines(avp))


def test_proxy_response_and_challenge_response_show_their_length_only() -> None:
    for avp in (
        Avp(AvpType.PROXY_AUTHEN_RESPONSE, PASSWORD),
        Avp(AvpType.CHALLENGE_RESPONSE, PASSWORD.ljust(16, b"x")),
    ):
        text = shown(avp)
        assert PASSWORD.hex() not in text.lower() and "Hunter2" not in text
        assert text.endswith("octets, not shown)")


def test_hidden_values_show_neither_ciphertext_nor_plain_length() -> None:
    ciphertext = bytes(range(40))
    text = shown(Avp(AvpType.PROXY_AUTHEN_RESPONSE, HiddenValue(ciphertext), hidden=True))
    assert ciphertext.hex() not in text.lower() and "(hidden) (40 octets, not shown)" in text
    unhidden = shown(Avp(AvpType.PROXY_AUTHEN_RESPONSE, PASSWORD, hidden=True))
    assert unhidden.endswith("Proxy Auth Resp (not shown)")
    assert str(len(PASSWORD)) + " octets" not in unhidden


def test_peer_strings_are_escaped() -> None:
    text = shown(Avp(AvpType.HOST_NAME, "lac\nTnl 1 L2TP: forged\x1b[2J"))
    assert "\n" not in text.splitlines()[1] and "\x1b" not in text
    assert "lac\\x0aTnl 1 L2TP: forged\\x1b[2J" in text
    rc = shown(Avp(AvpType.RESULT_CODE, ResultCode(2, 0, "bye\r\nfake line")))
    assert "\r" not in rc and "bye\\x0d\\x0afake line" in rc


def test_credentials_keep_proofs_out_of_repr() -> None:
    proof = bytes.fromhex("0123456789abcdef0123456789abcdef")
    for creds in (
        PapCredentials(PASSWORD),
        ChapCredentials(1, b"c" * 16, proof),
        MsChapV2Credentials(b"a" * 16, b"p" * 16, proof + proof[:8]),
    ):
        text = repr(creds)
        assert "Hunter2" not in text and proof.hex() not in text and repr(proof) not in text
