"""Local AAA: a users file and the authenticator that checks against it.

Users file format, one subscriber per line::

    # NAME      PASSWORD        [ADDRESS]
    alice       s3cret
    bob         "two words"     10.255.0.77
    "carol x"   pw              *

Fields are separated by blanks. A field that starts with ``"`` runs to the closing ``"``;
inside it ``\\"`` is a quote and ``\\\\`` a backslash (elsewhere a backslash is an ordinary
character, so passwords such as ``a\\b`` need no quoting). ``#`` at the start of a field starts
a comment to the end of the line. ADDRESS is an IPv4 address given to that subscriber instead of
one from the pool; ``*`` or nothing means "from the pool".
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping
from ipaddress import AddressValueError, IPv4Address
from pathlib import Path

import attrs

from kl2tp.aaa.base import (
    AaaCounters,
    AccountingRecord,
    AuthRequest,
    AuthResult,
    log_decision,
)
from kl2tp.config import Config, ConfigError
from kl2tp.log import escape
from kl2tp.values import Secret
from ppp import mschapv2
from ppp.credentials import ChapCredentials, MsChapV2Credentials, PapCredentials

__all__ = [
    "LocalAuthenticator",
    "LocalUser",
    "UsersFileError",
    "chap_md5_response",
    "load_users",
    "parse_users",
    "verify_mschapv2",
]

logger = logging.getLogger("kl2tp.aaa")
_FAILED = "authentication failed"  # the same words for every reject: no user enumeration
_DUMMY = Secret(b"\x00" * 16)


class UsersFileError(ConfigError):
    """A users file problem: ``str`` is ``"users: line 3: ..."``; the daemons exit 2."""


@attrs.frozen
class LocalUser:
    """One line of the users file."""

    name: str
    """User name as the peer gives it (case-sensitive)."""
    password: Secret
    """Password: the octets a PAP peer must send, the secret of CHAP (UTF-8 of the file's
    text; MS-CHAPv2 hashes its Unicode form, so it must be valid UTF-8 for that method)."""
    address: IPv4Address | None = None
    """Static address; None: from the pool."""


def _split_fields(line: str) -> list[str] | str:
    """Split a users-file line into fields; a str result is the problem."""
    fields: list[str] = []
    i, n = 0, len(line)
    while i < n:
        char = line[i]
        if char in " \t":
            i += 1
        elif char == "#":
            break
        elif char == '"':
            i += 1
            out = []
            while True:
                if i >= n:
                    return "unterminated quoted field"
                char = line[i]
                if char == "\\" and i + 1 < n and line[i + 1] in '"\\':
                    out.append(line[i + 1])
                    i += 2
                elif char == '"':
                    i += 1
                    break
                else:
                    out.append(char)
                    i += 1
            if i < n and line[i] not in " \t":
                return "a quoted field must be followed by a blank"
            fields.append("".join(out))
        else:
            start = i
            while i < n and line[i] not in " \t":
                if line[i] == '"':
                    return "a quote inside an unquoted field (quote the whole field)"
                i += 1
            fields.append(line[start:i])
    return fields


def parse_users(lines: Iterable[str], source: str) -> dict[str, LocalUser]:
    """Parse users-file lines.

    Raises:
        UsersFileError: naming ``source`` and the line number.
    """
    users: dict[str, LocalUser] = {}
    for number, raw in enumerate(lines, start=1):
        where = f"line {number}"
        fields = _split_fields(raw.rstrip("\r\n"))
        if isinstance(fields, str):
            raise UsersFileError(source, where, fields)
        if not fields:
            continue
        if len(fields) < 2:
            raise UsersFileError(source, where, "expected NAME PASSWORD [ADDRESS], got a name only")
        if len(fields) > 3:
            raise UsersFileError(
                source, where, f"expected NAME PASSWORD [ADDRESS], got {len(fields)} fields"
            )
        name, password = fields[0], fields[1]
        if not name:
            raise UsersFileError(source, where, "empty user name")
        if not password:
            raise UsersFileError(source, where, f"empty password for {name!r}")
        address = None
        if len(fields) == 3 and fields[2] != "*":
            try:
                address = IPv4Address(fields[2])
            except AddressValueError:
                # Not the field itself: "alice pass word" puts half a password here.
                raise UsersFileError(
                    source,
                    where,
                    f"bad address for {name!r} (IPv4 or *; quote a password with blanks)",
                ) from None
        if name in users:
            raise UsersFileError(source, where, f"user {name!r} is listed twice")
        users[name] = LocalUser(name, Secret(password.encode()), address)
    return users


def load_users(path: str | Path) -> dict[str, LocalUser]:
    """Read a users file (blocking: call it before the event loop or in a worker thread).

    Raises:
        UsersFileError: the file cannot be read or a line is wrong.
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsersFileError(name, "", f"cannot read users file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsersFileError(name, "", f"not UTF-8 text (byte {exc.start})") from None
    return parse_users(text.splitlines(), name)


# -- verification -----------------------------------------------------------------------------


def chap_md5_response(ident: int, secret: bytes, challenge: bytes) -> bytes:
    """RFC 1994 section 4.1: MD5 over the Identifier, the secret and the challenge."""
    return hashlib.md5(bytes((ident,)) + secret + challenge).digest()


def verify_mschapv2(username: str, password: str, credentials: MsChapV2Credentials) -> str | None:
    """Check an MS-CHAPv2 NT-Response (RFC 2759 8.1) for ``username`` / ``password``.

    Returns:
        The ``"S=<40 hex>"`` authenticator response for the Success packet (RFC 2759 8.7), or
        None if the response is wrong or malformed.
    """
    if (
        len(credentials.authenticator_challenge) != 16
        or len(credentials.peer_challenge) != 16
        or len(credentials.nt_response) != 24
    ):
        return None
    if not mschapv2.verify_nt_response(
        credentials.authenticator_challenge,
        credentials.peer_challenge,
        username,
        password,
        credentials.nt_response,
    ):
        return None
    return mschapv2.generate_authenticator_response(
        password,
        credentials.nt_response,
        credentials.peer_challenge,
        credentials.authenticator_challenge,
        username,
    )


def _pap_ok(user: LocalUser, credentials: PapCredentials) -> bool:
    # bytes against bytes, constant time: any octets the peer sends can match
    return hmac.compare_digest(user.password.reveal(), credentials.password)


def _chap_ok(user: LocalUser, credentials: ChapCredentials) -> bool:
    expected = chap_md5_response(credentials.ident, user.password.reveal(), credentials.challenge)
    return hmac.compare_digest(expected, credentials.response)


def _mschapv2_ok(username: str, user: LocalUser, credentials: MsChapV2Credentials) -> str | None:
    try:
        # the NT hash is over the Unicode password: octets that are no text have none
        password = user.password.reveal().decode()
    except UnicodeDecodeError:
        return None
    return verify_mschapv2(username, password, credentials)


class LocalAuthenticator:
    """`kl2tp.aaa.base.Authenticator` over a users file.

    Args:
        users: the users, by name (from `load_users` / `parse_users`).
        methods: methods this back end accepts (``[ppp] auth``); others are rejected.
        dns: DNS servers returned with every accept (``[ppp] dns``).
    """

    def __init__(
        self,
        users: Mapping[str, LocalUser],
        methods: Iterable[str] = ("pap", "chap", "mschapv2"),
        dns: Iterable[IPv4Address] = (),
    ) -> None:
        self.users = dict(users)
        self.methods = frozenset(methods)
        self.dns = tuple(dns)
        self.counters = AaaCounters()

    @classmethod
    def from_config(cls, config: Config) -> LocalAuthenticator:
        """The back end ``[aaa]`` and ``[ppp]`` describe (reads the users file: blocking).

        Raises:
            UsersFileError: the users file cannot be read or has a bad line.
        """
        return cls(load_users(config.aaa.users_file), config.ppp.auth, config.ppp.dns)

    def reload(self, users: Mapping[str, LocalUser]) -> None:
        """Replace the users (e.g. on SIGHUP); sessions already up are not touched."""
        self.users = dict(users)

    # Both calls complete at once: their ``*_now`` forms let a session decide without a
    # task (``kl2tp.daemon.sessions.at_once``); a subclass overriding the coroutine gets it
    # awaited instead.

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        """Check ``request`` against the users file."""
        return self.authenticate_now(request)

    def authenticate_now(self, request: AuthRequest) -> AuthResult:
        """`authenticate`, at once."""
        result = self._decide(request)
        self.counters.count_result(request, result)
        log_decision(logger, "", request, result)
        return result

    def _decide(self, request: AuthRequest) -> AuthResult:
        if request.method not in self.methods:
            return AuthResult(False, _FAILED, reason="method-not-allowed")
        user = self.users.get(request.username)
        known = user is not None
        # Unknown users cost the same work as known ones: no timing oracle on names.
        checked = user if user is not None else LocalUser(request.username, _DUMMY)
        credentials = request.credentials
        authenticator_response: str | None = None
        if isinstance(credentials, PapCredentials):
            ok = _pap_ok(checked, credentials)
        elif isinstance(credentials, ChapCredentials):
            ok = _chap_ok(checked, credentials)
        else:
            authenticator_response = _mschapv2_ok(request.username, checked, credentials)
            ok = authenticator_response is not None
        if not known:
            return AuthResult(False, _FAILED, reason="unknown-user")
        if not ok:
            return AuthResult(False, _FAILED, reason="bad-password")
        assert user is not None
        return AuthResult(
            True,
            "Welcome",
            reason="accepted",
            framed_address=user.address,
            dns=self.dns,
            authenticator_response=authenticator_response,
        )

    async def account(self, record: AccountingRecord) -> None:
        """Local accounting only counts (and logs at debug level)."""
        self.account_now(record)

    def account_now(self, record: AccountingRecord) -> None:
        """`account`, at once."""
        self.counters.count_accounting(record)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                'AAA: accounting %s for "%s" (tunnel %d session %d)',
                record.kind.name.lower(),
                escape(record.username),
                record.context.tunnel_id,
                record.context.session_id,
            )
