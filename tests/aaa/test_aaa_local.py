# ruff: noqa: E501  (the error table reads best one case per line)
"""Local AAA: the users file and PAP, CHAP-MD5 and MS-CHAPv2 checks against it."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from kl2tp.aaa.base import (
    AccountingKind,
    AccountingRecord,
    Authenticator,
    AuthRequest,
    ChapCredentials,
    MsChapV2Credentials,
    PapCredentials,
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
from kl2tp.config import ConfigError, Secret, load_default

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
    return LocalAuthenticator(users(), methods or ("pap", "chap", "mschapv2"))  # type: ignore[arg-type]


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
        ("alice pw 10.0.0.300\n", "users: line 1: bad address '10.0.0.300' for 'alice' (IPv4 or *)"),
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
    result = await auth().authenticate(AuthRequest("User", PapCredentials(Secret(b"clientPass"))))
    assert result.accepted
    assert result.framed_address == IPv4Address("10.255.0.77")  # users file beats the pool


async def test_pap_accept_from_pool_and_reject_wrong_password() -> None:
    a = auth()
    ok = await a.authenticate(AuthRequest("alice", PapCredentials(Secret(b"correct horse"))))
    assert ok.accepted and ok.framed_address is None
    bad = await a.authenticate(AuthRequest("alice", PapCredentials(Secret(b"correct horsE"))))
    assert not bad.accepted and bad.reason == "bad-password"
    prefix = await a.authenticate(AuthRequest("alice", PapCredentials(Secret(b"correct"))))
    assert not prefix.accepted


async def test_unknown_user_gets_the_same_words_as_a_wrong_password() -> None:
    a = auth()
    unknown = await a.authenticate(AuthRequest("mallory", PapCredentials(Secret(b"x"))))
    wrong = await a.authenticate(AuthRequest("alice", PapCredentials(Secret(b"x"))))
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
    result = await a.authenticate(AuthRequest("User", PapCredentials(Secret(b"clientPass"))))
    assert not result.accepted and result.reason == "method-not-allowed"


async def test_counters_and_accounting() -> None:
    a = auth()
    assert isinstance(a, Authenticator)
    await a.authenticate(AuthRequest("User", PapCredentials(Secret(b"clientPass"))))
    await a.authenticate(AuthRequest("User", PapCredentials(Secret(b"nope"))))
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
    old = await a.authenticate(AuthRequest("alice", PapCredentials(Secret(b"correct horse"))))
    new = await a.authenticate(AuthRequest("alice", PapCredentials(Secret(b"newpw"))))
    assert (old.accepted, new.accepted) == (False, True)


async def test_from_the_embedded_default_config() -> None:
    config = load_default("lns")
    a = LocalAuthenticator.from_config(config)
    assert a.methods == frozenset(config.ppp.auth)
    chap = ChapCredentials(
        9, b"0123456789abcdef", chap_md5_response(9, b"test", b"0123456789abcdef")
    )
    assert (await a.authenticate(AuthRequest("test", chap))).accepted
