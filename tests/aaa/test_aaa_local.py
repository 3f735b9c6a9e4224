# ruff: noqa: E501  (the error table reads best one case per line)
"""Local AAA: the users file and PAP, CHAP-MD5 and MS-CHAPv2 checks against it."""

from __future__ import annotations

import random
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from kl2tp.aaa.base import (
    AccountingKind,
    AccountingRecord,
    Authenticator,
    AuthRequest,
    SessionContext,
)
from kl2tp.aaa.local import (
    LocalAuthenticator,
    LocalUser,
    UsersFileError,
    chap_md5_response,
    load_users,
    parse_users,
)
from kl2tp.config import ConfigError, load_default
from kl2tp.values import Secret
from ppp.auth import PapCode
from ppp.config import AuthMethod as PppAuthMethod
from ppp.config import IpcpConfig, LinkConfig
from ppp.credentials import ChapCredentials, MsChapV2Credentials, PapCredentials
from ppp.events import AuthRequest as PppAuthRequest
from ppp.frame import Proto, encode_frame, encode_packet
from ppp.link import Link
from ppp.proxy import ProxyLcp

# The reference trace's proxy CHAP exchange (VECTORS.md): name 2500-1, id 6.
TRACE_CHALLENGE = bytes.fromhex("5d0d008cb1677cf8bc354556321a7a74")
# MD5(06 "secret" TRACE_CHALLENGE) and MD5(06 "hello" TRACE_CHALLENGE), computed with md5sum.
RESPONSE_SECRET = bytes.fromhex("4308f583bf81dcaf8ea354167b2920d5")
RESPONSE_HELLO = bytes.fromhex("a400f2fea5e649216b1be4930e1fc7f9")

# RFC 2759 section 9.2.
RFC_AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
RFC_PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
RFC_NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
RFC_AUTH_RESPONSE = "S=407A5589115FD0D6209F510FE9C04566932CDA56"

USERS = """\
# NAME      PASSWORD        [ADDRESS]
2500-1      secret
User        clientPass      10.255.0.77
alice       "correct horse" *
"bob smith" b0b\\pass
carol       p#ss            # '#' inside a field is part of it
  dave      "say \\"hi\\" \\\\o/"   10.9.9.9
"""


def users() -> dict[str, LocalUser]:
    return parse_users(USERS.splitlines(), "users")


def auth(*methods: str) -> LocalAuthenticator:
    return LocalAuthenticator(users(), methods or ("pap", "chap", "mschapv2"))


# -- users file -------------------------------------------------------------------------------


def test_users_file_fields_quotes_and_comments() -> None:
    table = users()
    assert list(table) == ["2500-1", "User", "alice", "bob smith", "carol", "dave"]
    assert table["User"].address == IPv4Address("10.255.0.77")
    assert table["alice"].password.reveal() == b"correct horse"
    assert table["alice"].address is None  # "*": from the pool
    assert table["bob smith"].password.reveal() == b"b0b\\pass"  # backslash kept unquoted
    assert table["carol"].password.reveal() == b"p#ss"
    assert table["dave"].password.reveal() == b'say "hi" \\o/'
    assert table["dave"].address == IPv4Address("10.9.9.9")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("alice\n", "users: line 1: expected NAME PASSWORD [ADDRESS], got a name only"),
        ("\n# c\nalice pw 10.0.0.1 extra\n", "users: line 3: expected NAME PASSWORD [ADDRESS], got 4 fields"),
        (
            "alice pw 10.0.0.300\n",
            "users: line 1: bad address for 'alice' (IPv4 or *; quote a password with blanks)",
        ),
        # Half a password where the address goes is not repeated in the message.
        (
            "bob two words\n",
            "users: line 1: bad address for 'bob' (IPv4 or *; quote a password with blanks)",
        ),
        ("alice pw\nalice pw2\n", "users: line 2: user 'alice' is listed twice"),
        ('alice "pw\n', "users: line 1: unterminated quoted field"),
        ('alice "pw"x\n', "users: line 1: a quoted field must be followed by a blank"),
        ('alice pw"x"\n', "users: line 1: a quote inside an unquoted field (quote the whole field)"),
        ('"" pw\n', "users: line 1: empty user name"),
        ('alice ""\n', "users: line 1: empty password for 'alice'"),
    ],
)  # fmt: skip
def test_users_file_errors_name_file_and_line(text: str, problem: str) -> None:
    with pytest.raises(UsersFileError) as info:
        parse_users(text.splitlines(), "users")
    assert str(info.value) == problem
    assert isinstance(info.value, ConfigError)  # the daemons exit 2 on it like on a config error


def test_comment_rules() -> None:
    # '#' starting a field starts a comment, wherever the field is; quoted, it is data.
    table = parse_users(['c "#p" # x', "# whole line", "  # indented"], "users")
    assert table["c"].password.reveal() == b"#p"
    assert list(table) == ["c"]
    with pytest.raises(UsersFileError, match="line 1: expected NAME PASSWORD"):
        parse_users(["d #pw"], "users")  # a password cannot start with an unquoted #


def test_load_users_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsersFileError, match=r"/nope: cannot read users file: No such file"):
        load_users(tmp_path / "nope")


def test_load_users_reads_crlf_files(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_bytes(b"alice pw 10.0.0.1\r\nbob pw2\r\n")
    table = load_users(path)
    assert table["alice"].address == IPv4Address("10.0.0.1")
    assert table["bob"].password.reveal() == b"pw2"


def test_passwords_not_in_repr() -> None:
    assert "clientPass" not in repr(users())


# -- PAP --------------------------------------------------------------------------------------


async def test_pap_accept_with_static_address() -> None:
    result = await auth().authenticate(AuthRequest("User", PapCredentials(b"clientPass")))
    assert result.accepted
    assert result.framed_address == IPv4Address("10.255.0.77")  # users file beats the pool


async def test_pap_accept_from_pool_and_reject_wrong_password() -> None:
    a = auth()
    ok = await a.authenticate(AuthRequest("alice", PapCredentials(b"correct horse")))
    assert ok.accepted and ok.framed_address is None
    bad = await a.authenticate(AuthRequest("alice", PapCredentials(b"correct horsE")))
    assert not bad.accepted and bad.reason == "bad-password"
    prefix = await a.authenticate(AuthRequest("alice", PapCredentials(b"correct")))
    assert not prefix.accepted


async def test_unknown_user_gets_the_same_words_as_a_wrong_password() -> None:
    a = auth()
    unknown = await a.authenticate(AuthRequest("mallory", PapCredentials(b"x")))
    wrong = await a.authenticate(AuthRequest("alice", PapCredentials(b"x")))
    assert not unknown.accepted and unknown.reason == "unknown-user"
    assert unknown.message == wrong.message


# -- CHAP -------------------------------------------------------------------------------------


def test_chap_md5_matches_vectors_computed_outside_python() -> None:
    assert chap_md5_response(6, b"secret", TRACE_CHALLENGE) == RESPONSE_SECRET
    assert chap_md5_response(6, b"hello", TRACE_CHALLENGE) == RESPONSE_HELLO


async def test_chap_accept_the_traces_exchange_with_a_known_password() -> None:
    a = auth("chap")
    request = AuthRequest(
        "2500-1",
        ChapCredentials(6, TRACE_CHALLENGE, RESPONSE_SECRET),
        SessionContext(tunnel_id=55270, session_id=45, calling_number="614629"),
    )
    result = await a.authenticate(request)
    assert result.accepted and result.framed_address is None


@pytest.mark.parametrize(
    ("ident", "challenge", "response"),
    [
        (7, TRACE_CHALLENGE, RESPONSE_SECRET),  # the id is part of the hash
        (6, TRACE_CHALLENGE[::-1], RESPONSE_SECRET),  # another challenge
        (6, TRACE_CHALLENGE, RESPONSE_HELLO),  # another password
        (6, TRACE_CHALLENGE, bytes.fromhex("ca1cc2e4fa6899e8df1b695c0a80883e")),  # the trace's
        (6, TRACE_CHALLENGE, RESPONSE_SECRET[:8]),  # truncated
    ],
)
async def test_chap_rejects(ident: int, challenge: bytes, response: bytes) -> None:
    result = await auth().authenticate(
        AuthRequest("2500-1", ChapCredentials(ident, challenge, response))
    )
    assert not result.accepted and result.reason == "bad-password"


def test_chap_ident_is_one_octet() -> None:
    with pytest.raises(ValueError):
        ChapCredentials(256, TRACE_CHALLENGE, RESPONSE_SECRET)


# -- MS-CHAPv2 --------------------------------------------------------------------------------


def rfc_request(username: str = "User", nt_response: bytes = RFC_NT_RESPONSE) -> AuthRequest:
    return AuthRequest(
        username, MsChapV2Credentials(RFC_AUTH_CHALLENGE, RFC_PEER_CHALLENGE, nt_response)
    )


async def test_mschapv2_rfc2759_vector() -> None:
    result = await auth("mschapv2").authenticate(rfc_request())
    assert result.accepted
    assert result.authenticator_response == RFC_AUTH_RESPONSE
    assert result.framed_address == IPv4Address("10.255.0.77")


async def test_mschapv2_rejects_a_flipped_bit_and_bad_lengths() -> None:
    a = auth()
    flipped = bytes([RFC_NT_RESPONSE[0] ^ 1]) + RFC_NT_RESPONSE[1:]
    for request in (rfc_request(nt_response=flipped), rfc_request(nt_response=b"\0" * 23)):
        result = await a.authenticate(request)
        assert not result.accepted and result.authenticator_response is None
    other_user = await a.authenticate(rfc_request("alice"))
    assert not other_user.accepted


# -- policy, counters, accounting -------------------------------------------------------------


async def test_method_not_demanded_is_rejected() -> None:
    a = auth("chap")
    result = await a.authenticate(AuthRequest("User", PapCredentials(b"clientPass")))
    assert not result.accepted and result.reason == "method-not-allowed"


async def test_counters_and_accounting() -> None:
    a = auth()
    assert isinstance(a, Authenticator)
    await a.authenticate(AuthRequest("User", PapCredentials(b"clientPass")))
    await a.authenticate(AuthRequest("User", PapCredentials(b"nope")))
    await a.authenticate(rfc_request())
    await a.authenticate(AuthRequest("ghost", ChapCredentials(1, b"c", b"r")))
    c = a.counters
    assert (c.requests, c.accepts, c.rejects, c.errors) == (4, 2, 2, 0)
    assert c.by_method == {"pap": 2, "mschapv2": 1, "chap": 1}
    assert c.reject_reasons == {"bad-password": 1, "unknown-user": 1}
    context = SessionContext(tunnel_id=1, session_id=2)
    await a.account(AccountingRecord(AccountingKind.START, "User", context))
    await a.account(AccountingRecord(AccountingKind.STOP, "User", context, session_time=3.0))
    assert c.accounting == {"start": 1, "stop": 1}


async def test_reload_replaces_users() -> None:
    a = auth()
    a.reload(parse_users(["alice newpw"], "users"))
    old = await a.authenticate(AuthRequest("alice", PapCredentials(b"correct horse")))
    new = await a.authenticate(AuthRequest("alice", PapCredentials(b"newpw")))
    assert (old.accepted, new.accepted) == (False, True)


async def test_from_the_embedded_default_config() -> None:
    config = load_default("lns")
    a = LocalAuthenticator.from_config(config)
    assert a.methods == frozenset(config.ppp.auth)
    chap = ChapCredentials(
        9, b"0123456789abcdef", chap_md5_response(9, b"test", b"0123456789abcdef")
    )
    assert (await a.authenticate(AuthRequest("test", chap))).accepted


# -- passwords are octets ---------------------------------------------------------------------

RAW_PASSWORD = b"pw\xff\xfe\x80end"  # not UTF-8: no text form, only bytes
REPLACED = RAW_PASSWORD.decode(errors="replace").encode()  # what a text round trip makes of it


def raw_user_auth() -> LocalAuthenticator:
    return LocalAuthenticator({"raw": LocalUser("raw", Secret(RAW_PASSWORD))})


async def test_pap_password_that_is_not_utf8_matches_the_same_octets() -> None:
    a = raw_user_auth()
    ok = await a.authenticate(AuthRequest("raw", PapCredentials(RAW_PASSWORD)))
    assert ok.accepted and ok.reason == "accepted"
    # the octets count, not a text rendering of them
    replaced = await a.authenticate(AuthRequest("raw", PapCredentials(REPLACED)))
    assert not replaced.accepted and replaced.reason == "bad-password"
    truncated = await a.authenticate(AuthRequest("raw", PapCredentials(RAW_PASSWORD[:-1])))
    assert not truncated.accepted


async def test_non_ascii_password_in_the_users_file_matches_its_utf8_octets() -> None:
    a = LocalAuthenticator(parse_users(['"zoë" "pässwört €"'], "users"))
    ok = await a.authenticate(AuthRequest("zoë", PapCredentials("pässwört €".encode())))
    assert ok.accepted
    latin1 = await a.authenticate(AuthRequest("zoë", PapCredentials("pässwört".encode("latin-1"))))
    assert not latin1.accepted


async def test_mschapv2_against_a_password_that_is_not_text_rejects_without_raising() -> None:
    # MS-CHAPv2 hashes the Unicode password: octets that are not UTF-8 can never match
    result = await raw_user_auth().authenticate(rfc_request("raw"))
    assert not result.accepted and result.reason == "bad-password"
    assert result.authenticator_response is None


async def test_non_utf8_pap_password_through_the_ppp_core_to_the_users_file() -> None:
    """The whole path: PAP Authenticate-Request octets -> ppp AuthRequest -> AAA -> PAP Ack."""
    link = Link(
        LinkConfig(auth=(PppAuthMethod.PAP,), ipcp=IpcpConfig(enabled=False)),
        rng=random.Random(5),
    )
    # LCP as a LAC negotiated it (proxy LCP): we demand PAP; magic numbers on both sides
    link.open(
        0.0,
        proxy_lcp=ProxyLcp(
            last_sent=bytes.fromhex("0304c023 0506109d08f2"),
            last_received=bytes.fromhex("05066ee4e865"),
        ),
    )
    name = b"raw"
    request = bytes((len(name),)) + name + bytes((len(RAW_PASSWORD),)) + RAW_PASSWORD
    link.receive_frame(encode_frame(Proto.PAP, encode_packet(PapCode.REQUEST, 7, request)), 0.1)
    events = []
    while (event := link.next_event()) is not None:
        events.append(event)
    ppp_request = events[-1]
    assert isinstance(ppp_request, PppAuthRequest)
    assert ppp_request.credentials == PapCredentials(RAW_PASSWORD)

    a = raw_user_auth()
    result = await a.authenticate(AuthRequest(ppp_request.username, ppp_request.credentials))
    assert result.accepted
    link.auth_result(0.2, result.accepted, message=result.message)
    assert link.frames_to_send() == [
        encode_frame(Proto.PAP, encode_packet(PapCode.ACK, 7, b"\x07Welcome"))
    ]
    assert a.counters.by_method == {"pap": 1}
