"""PAP (RFC 1334), CHAP-MD5 (RFC 1994) and MS-CHAPv2 (RFC 2759), both ends.

The authenticator side never decides: it returns what the peer sent as an
:class:`ppp.events.AuthRequest` (the link hands it to the driver) and waits for the
:meth:`~ChapAuthenticator.verdict`. The peer side answers with the configured name and password.
Either side ends with an :class:`AuthDone` for the link to act on. Pure verifier helpers
(:func:`verify_chap_md5`, and :mod:`ppp.mschapv2`) let an AAA back end that knows the password
decide.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable

import attrs

from ppp import mschapv2
from ppp.config import AuthMethod
from ppp.credentials import ChapCredentials, MsChapV2Credentials, PapCredentials
from ppp.events import AuthRequest
from ppp.frame import Proto
from ppp.proxy import ProxyAuth
from ppp.services import AuthServices

__all__ = [
    "AuthDone",
    "AuthOutcome",
    "ChapAuthenticator",
    "ChapCode",
    "ChapPeer",
    "PapAuthenticator",
    "PapCode",
    "PapPeer",
    "chap_md5_response",
    "decode_chap",
    "decode_pap_request",
    "verify_chap_md5",
]


class PapCode(enum.IntEnum):
    """PAP codes (RFC 1334 2.2)."""

    REQUEST = 1
    ACK = 2
    NAK = 3


class ChapCode(enum.IntEnum):
    """CHAP codes (RFC 1994 4)."""

    CHALLENGE = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


@attrs.frozen(slots=True)
class AuthDone:
    """One side of the authentication finished."""

    ok: bool
    """Authenticator: we accepted the peer; peer: the authenticator accepted us."""
    message: str = ""
    """The verdict's message (the peer's or ours), or why we gave up."""
    timeout: bool = False
    """Given up for lack of an answer (retransmissions exhausted)."""


AuthOutcome = AuthRequest | AuthDone
"""What an authenticator hands its link: a request for the driver's verdict, or the end."""


class _Phase(enum.Enum):
    IDLE = 0
    WAITING = 1  # authenticator: for a response/request; peer: for the verdict
    DECIDING = 2  # authenticator: the driver has the AuthRequest
    DONE = 3
    FAILED = 4


def _to_bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def chap_md5_response(ident: int, secret: str | bytes, challenge: bytes) -> bytes:
    """RFC 1994 section 4.1: MD5(Identifier, secret, Challenge Value)."""
    return hashlib.md5(bytes((ident & 0xFF,)) + _to_bytes(secret) + challenge).digest()


def verify_chap_md5(password: str | bytes, ident: int, challenge: bytes, response: bytes) -> bool:
    """True when ``response`` is the CHAP-MD5 answer for ``password`` (constant time)."""
    return hmac.compare_digest(chap_md5_response(ident, password, challenge), response)


def decode_pap_request(data: bytes) -> tuple[str, bytes] | None:
    """(Peer-ID, Password) of a PAP Authenticate-Request, None if malformed.

    The password stays the octets the peer sent (any bytes may match); the Peer-ID is text,
    undecodable octets replaced.
    """
    if not data:
        return None
    id_len = data[0]
    if len(data) < 2 + id_len:
        return None
    peer_id = data[1 : 1 + id_len]
    pw_len = data[1 + id_len]
    password = data[2 + id_len : 2 + id_len + pw_len]
    if len(password) != pw_len:
        return None
    return peer_id.decode(errors="replace"), password


def _pap_message(data: bytes) -> str:
    if not data:
        return ""
    return data[1 : 1 + data[0]].decode(errors="replace")


def decode_chap(data: bytes) -> tuple[bytes, str] | None:
    """(Value, Name) of a CHAP Challenge or Response, None if malformed."""
    if not data or 1 + data[0] > len(data):
        return None
    return data[1 : 1 + data[0]], data[1 + data[0] :].decode(errors="replace")


_RESPONSE_SIZE = {AuthMethod.CHAP: 16, AuthMethod.MSCHAPV2: 49}
"""Size of the Value of a CHAP Response, by method."""


class PapAuthenticator:
    """We demand PAP of the peer (RFC 1334 2.1): wait for Authenticate-Request."""

    __slots__ = ("deadline", "ident", "phase", "services", "username")
    method = AuthMethod.PAP

    def __init__(self, services: AuthServices) -> None:
        self.services = services
        self.phase = _Phase.IDLE
        self.ident: int | None = None
        self.username = ""
        self.deadline: float | None = None

    def start(self, now: float, proxy: ProxyAuth | None = None) -> AuthOutcome | None:
        """Wait for the peer's request; or decide on the LAC's proxy values at once."""
        self.phase = _Phase.WAITING
        if proxy is None:
            return None
        self.ident = proxy.ident
        self.username = proxy.name
        self.phase = _Phase.DECIDING
        return AuthRequest(proxy.name, self.method, PapCredentials(proxy.response), proxy=True)

    def receive(self, code: int, ident: int, data: bytes, now: float) -> AuthOutcome | None:
        """An Authenticate-Request."""
        if code != PapCode.REQUEST:
            return None
        if self.phase is _Phase.DONE:
            self.services.auth_send(Proto.PAP, PapCode.ACK, ident, b"\x00")  # lost Ack: again
            return None
        if self.phase is _Phase.DECIDING:
            self.ident = ident  # a retransmission: answer the newest one
            return None
        if self.phase is not _Phase.WAITING:
            return None
        fields = decode_pap_request(data)
        if fields is None:
            self.services.drop("pap-malformed")
            return None
        self.username, password = fields
        self.ident = ident
        self.phase = _Phase.DECIDING
        if self.services.tracing:
            self.services.trace(
                "PAP", f'I AUTH-REQ id {ident} len {4 + len(data)} from "{self.username}"'
            )
        return AuthRequest(self.username, self.method, PapCredentials(password), proxy=False)

    def verdict(
        self, now: float, accepted: bool, message: str, authenticator_response: str | None
    ) -> AuthOutcome | None:
        """The driver's decision."""
        if self.phase is not _Phase.DECIDING:
            return None
        text = (message or ("Login ok" if accepted else "Login incorrect")).encode()[:255]
        code = PapCode.ACK if accepted else PapCode.NAK
        if self.ident is not None:
            self.services.auth_send(Proto.PAP, code, self.ident, bytes((len(text),)) + text)
        self.phase = _Phase.DONE if accepted else _Phase.FAILED
        return AuthDone(accepted, message)

    def handle_timer(self, now: float) -> AuthOutcome | None:
        """PAP authenticators keep no timer; the phase timeout covers a silent peer."""
        return None


class PapPeer:
    """The peer demands PAP of us: send Authenticate-Request until acked (RFC 1334 2.1).

    Args:
        services: the link's services; ``services.config`` has our name, password and timers.
    """

    __slots__ = ("deadline", "ident", "phase", "retransmits", "services")
    method = AuthMethod.PAP

    def __init__(self, services: AuthServices) -> None:
        self.services = services
        self.phase = _Phase.IDLE
        self.ident = 0
        self.retransmits = 0
        self.deadline: float | None = None

    def start(self, now: float) -> None:
        """Send the first request."""
        self.phase = _Phase.WAITING
        self.retransmits = self.services.config.lcp.fsm.max_configure
        self.ident = self.services.rng.getrandbits(8)
        self._send(now)

    def _send(self, now: float) -> None:
        name = (self.services.config.username or "").encode()[:255]
        password = (self.services.config.password or "").encode()[:255]
        self.retransmits -= 1
        self.deadline = now + self.services.config.lcp.fsm.restart_timer
        data = bytes((len(name),)) + name + bytes((len(password),)) + password
        if self.services.tracing:
            self.services.trace(
                "PAP", f'O AUTH-REQ id {self.ident} len {4 + len(data)} from "{name.decode()}"'
            )
        self.services.auth_send(Proto.PAP, PapCode.REQUEST, self.ident, data)

    def receive(self, code: int, ident: int, data: bytes, now: float) -> AuthDone | None:
        """Authenticate-Ack or -Nak."""
        if self.phase is not _Phase.WAITING or ident != self.ident:
            return None
        if code not in (PapCode.ACK, PapCode.NAK):
            return None
        self.deadline = None
        ok = code == PapCode.ACK
        if self.services.tracing:
            verdict = "AUTH-ACK" if ok else "AUTH-NAK"
            self.services.trace("PAP", f"I {verdict} id {ident} len {4 + len(data)}")
        self.phase = _Phase.DONE if ok else _Phase.FAILED
        return AuthDone(ok, _pap_message(data))

    def handle_timer(self, now: float) -> AuthDone | None:
        """Retransmit, or give up after Max-Configure requests."""
        if self.deadline is None or now < self.deadline:
            return None
        self.deadline = None
        if self.retransmits <= 0:
            self.phase = _Phase.FAILED
            return AuthDone(False, "no answer to PAP requests", timeout=True)
        self._send(now)
        return None


class ChapAuthenticator:
    """We demand CHAP-MD5 or MS-CHAPv2 of the peer (RFC 1994, RFC 2759).

    Args:
        services: the link's services; ``services.config`` has the names, password and timers.
        method: CHAP or MS-CHAPv2.
    """

    __slots__ = (
        "challenge",
        "deadline",
        "ident",
        "method",
        "nt_response",
        "peer_challenge",
        "phase",
        "proxy",
        "retransmits",
        "services",
        "success_message",
        "username",
    )

    def __init__(self, services: AuthServices, method: AuthMethod) -> None:
        self.services = services
        self.method = method
        self.phase = _Phase.IDLE
        self.ident = services.rng.getrandbits(8)
        self.challenge = b""
        self.username = ""
        self.deadline: float | None = None
        self.retransmits = 0
        self.peer_challenge = b""
        self.nt_response = b""
        self.proxy = False
        self.success_message = ""

    def start(self, now: float, proxy: ProxyAuth | None = None) -> AuthOutcome | None:
        """Challenge the peer; or, with acceptable proxy values, decide on the LAC's exchange."""
        if proxy is not None and proxy.ident is not None:
            self.ident = proxy.ident
            self.challenge = proxy.challenge
            self.username = proxy.name
            self.phase = _Phase.DECIDING
            self.proxy = True
            return AuthRequest(
                proxy.name,
                self.method,
                ChapCredentials(proxy.ident, proxy.challenge, proxy.response),
                proxy=True,
            )
        self._challenge(now)
        return None

    def _challenge(self, now: float) -> None:
        self.proxy = False
        self.ident = (self.ident + 1) & 0xFF
        self.challenge = self.services.rng.randbytes(16)
        self.retransmits = self.services.config.lcp.fsm.max_configure
        self.phase = _Phase.WAITING
        self._send_challenge(now)

    def _send_challenge(self, now: float) -> None:
        self.retransmits -= 1
        self.deadline = now + self.services.config.lcp.fsm.restart_timer
        name = self.services.config.hostname.encode()
        data = bytes((len(self.challenge),)) + self.challenge + name
        if self.services.tracing:
            hostname = self.services.config.hostname
            self.services.trace(
                "CHAP", f'O CHALLENGE id {self.ident} len {4 + len(data)} from "{hostname}"'
            )
        self.services.auth_send(Proto.CHAP, ChapCode.CHALLENGE, self.ident, data)

    def receive(self, code: int, ident: int, data: bytes, now: float) -> AuthOutcome | None:
        """A Response."""
        if code != ChapCode.RESPONSE or ident != self.ident:
            return None
        if self.phase is _Phase.DONE:
            self._send_success(self.success_message)  # our Success was lost
            return None
        if self.phase is not _Phase.WAITING:
            return None  # deciding already: a retransmitted response
        fields = decode_chap(data)
        if fields is None:
            self.services.drop("chap-malformed")
            return None
        value, name = fields
        if self.services.tracing:
            self.services.trace("CHAP", f'I RESPONSE id {ident} len {4 + len(data)} from "{name}"')
        credentials: ChapCredentials | MsChapV2Credentials
        if len(value) != _RESPONSE_SIZE[self.method]:
            # RFC 1994 4.1: an MD5 Value is 16 octets; RFC 2759 4: an MS-CHAPv2 Response
            # is 49. Anything else is no answer to our Challenge: drop it (the peer may
            # still send a good one before the Challenge times out).
            self.services.drop("chap-response-size")
            return None
        if self.method is AuthMethod.MSCHAPV2:
            self.peer_challenge = value[:16]
            self.nt_response = value[24:48]
            credentials = MsChapV2Credentials(self.challenge, self.peer_challenge, self.nt_response)
        else:
            credentials = ChapCredentials(ident, self.challenge, value)
        self.username = name
        self.deadline = None
        self.phase = _Phase.DECIDING
        return AuthRequest(name, self.method, credentials, proxy=False)

    def verdict(
        self, now: float, accepted: bool, message: str, authenticator_response: str | None
    ) -> AuthOutcome | None:
        """The driver's decision: Success or Failure with the current identifier."""
        if self.phase is not _Phase.DECIDING:
            return None
        if accepted and self.method is AuthMethod.MSCHAPV2 and not authenticator_response:
            accepted, message = False, "no MS-CHAPv2 authenticator response"
        if accepted:
            text = message or "Welcome"
            if self.method is AuthMethod.MSCHAPV2:
                text = f"{authenticator_response} M={text}"
            self.success_message = text
            self._send_success(text)
            self.phase = _Phase.DONE
            interval = self.services.config.chap_rechallenge
            self.deadline = now + interval if interval > 0 else None
        else:
            text = message or "Authentication failed"
            if self.method is AuthMethod.MSCHAPV2:
                fresh = self.services.rng.randbytes(16).hex().upper()
                text = f"E=691 R=0 C={fresh} V=3 M={text}"
            if self.services.tracing:
                self.services.trace("CHAP", f"O FAILURE id {self.ident} len {4 + len(text)}")
            self.services.auth_send(Proto.CHAP, ChapCode.FAILURE, self.ident, text.encode())
            self.phase = _Phase.FAILED
            self.deadline = None
        return AuthDone(accepted, message)

    def _send_success(self, text: str) -> None:
        data = text.encode() if self.method is AuthMethod.MSCHAPV2 else b""
        if self.services.tracing:
            self.services.trace("CHAP", f"O SUCCESS id {self.ident} len {4 + len(data)}")
        self.services.auth_send(Proto.CHAP, ChapCode.SUCCESS, self.ident, data)

    def handle_timer(self, now: float) -> AuthOutcome | None:
        """Retransmit the Challenge, give up, or re-challenge (RFC 1994 3)."""
        if self.deadline is None or now < self.deadline:
            return None
        self.deadline = None
        if self.phase is _Phase.DONE:
            self._challenge(now)
        elif self.phase is _Phase.WAITING:
            if self.retransmits <= 0:
                self.phase = _Phase.FAILED
                return AuthDone(False, "no response to CHAP challenges", timeout=True)
            self._send_challenge(now)
        return None


_ANSWERS_KEPT = 4
"""How many Challenges (Identifier and Value) a CHAP peer remembers answering at once."""


@attrs.frozen(slots=True)
class _Answer:
    """Our Response to one Challenge, and what its MS-CHAPv2 Success must prove."""

    challenge: bytes
    response: bytes = attrs.field(repr=False)
    peer_challenge: bytes = b""
    nt_response: bytes = attrs.field(default=b"", repr=False)


class ChapPeer:
    """The peer demands CHAP-MD5 or MS-CHAPv2 of us: answer every Challenge.

    Every Challenge gets its Response (RFC 1994 4.1), but a Challenge with a new Identifier is
    not necessarily the authenticator's current one: over a link that reorders or duplicates
    (L2TP without data sequencing), it can be a stale copy, from before LCP renegotiated, that
    the authenticator has long forgotten. So the peer remembers every Challenge of this
    authentication it answered (the last few), takes a Success or Failure that matches any of
    their Identifiers, ignores one that matches none (stale), and resends all those Responses
    on its restart timer until a verdict comes (normally there is one; the authenticator
    answers the current one again, RFC 1994 4.2, and silently discards the others).

    Args:
        services: the link's services; ``services.config`` has the names, password and timers.
        method: CHAP or MS-CHAPv2.
    """

    __slots__ = ("answers", "deadline", "ident", "method", "phase", "retransmits", "services")

    def __init__(self, services: AuthServices, method: AuthMethod) -> None:
        self.services = services
        self.method = method
        self.phase = _Phase.IDLE
        self.retransmits = 0
        self.ident = -1
        """The Identifier of the last Challenge answered."""
        self.answers: dict[int, _Answer] = {}
        """The Challenges of this authentication answered, by Identifier, oldest first."""
        self.deadline: float | None = None

    def start(self, now: float) -> None:
        """Wait for the Challenge."""
        self.phase = _Phase.WAITING

    def receive(self, code: int, ident: int, data: bytes, now: float) -> AuthDone | None:
        """Challenge, Success or Failure."""
        if code == ChapCode.CHALLENGE:
            if self.services.tracing:
                fields = decode_chap(data)
                sender = f' from "{fields[1]}"' if fields is not None else ""
                self.services.trace("CHAP", f"I CHALLENGE id {ident} len {4 + len(data)}{sender}")
            self._answer(ident, data, now)
            return None
        if code not in (ChapCode.SUCCESS, ChapCode.FAILURE) or self.phase is not _Phase.WAITING:
            return None
        answer = self.answers.get(ident)
        if answer is None:
            return None  # not the verdict on any Response of ours in this authentication
        if self.services.tracing:
            verdict = "SUCCESS" if code == ChapCode.SUCCESS else "FAILURE"
            self.services.trace("CHAP", f"I {verdict} id {ident} len {4 + len(data)}")
        self.deadline = None
        if code == ChapCode.FAILURE:
            self.phase = _Phase.FAILED
            return AuthDone(False, data.decode(errors="replace"))
        if self.method is AuthMethod.MSCHAPV2 and not self._server_proof_ok(data, answer):
            self.phase = _Phase.FAILED
            return AuthDone(False, "bad MS-CHAPv2 authenticator response")
        self.phase = _Phase.DONE
        return AuthDone(True, data.decode(errors="replace"))

    def _answer(self, ident: int, data: bytes, now: float) -> None:
        fields = decode_chap(data)
        if fields is None or self.phase is _Phase.FAILED:
            return
        challenge, _name = fields
        if self.phase is _Phase.DONE:
            self.phase = _Phase.WAITING  # a re-challenge: a new authentication
            self.answers.clear()
        answer = self.answers.get(ident)
        if answer is None or answer.challenge != challenge:
            # a new challenge; a retransmitted one gets the same answer (MS-CHAPv2's
            # Peer-Challenge must not change under the authenticator's feet)
            answer = self._respond_to(ident, challenge)
            if answer is None:
                return
            self.answers.pop(ident, None)
            self.answers[ident] = answer
            while len(self.answers) > _ANSWERS_KEPT:
                del self.answers[next(iter(self.answers))]
            self.retransmits = self.services.config.lcp.fsm.max_configure
        self.ident = ident
        self._send_responses(now, ((ident, answer),))

    def _respond_to(self, ident: int, challenge: bytes) -> _Answer | None:
        username = self.services.config.username or ""
        password = self.services.config.password or ""
        if self.method is not AuthMethod.MSCHAPV2:
            return _Answer(challenge, chap_md5_response(ident, password, challenge))
        if len(challenge) != 16:
            return None
        peer_challenge = self.services.rng.randbytes(16)
        nt_response = mschapv2.generate_nt_response(challenge, peer_challenge, username, password)
        response = peer_challenge + bytes(8) + nt_response + b"\x00"
        return _Answer(challenge, response, peer_challenge, nt_response)

    def _send_responses(self, now: float, answers: Iterable[tuple[int, _Answer]]) -> None:
        # Resending the Response until Success or Failure arrives recovers a lost Success:
        # the authenticator answers a duplicate Response with its verdict again (RFC 1994 4.2)
        self.retransmits -= 1
        self.deadline = now + self.services.config.lcp.fsm.restart_timer
        username = self.services.config.username or ""
        for ident, answer in answers:
            out = bytes((len(answer.response),)) + answer.response + username.encode()
            if self.services.tracing:
                self.services.trace(
                    "CHAP", f'O RESPONSE id {ident} len {4 + len(out)} from "{username}"'
                )
            self.services.auth_send(Proto.CHAP, ChapCode.RESPONSE, ident, out)

    def _server_proof_ok(self, data: bytes, answer: _Answer) -> bool:
        text = data.decode(errors="replace")
        proof = text.split(" ", 1)[0]
        return len(proof) == 42 and mschapv2.check_authenticator_response(
            proof,
            self.services.config.password or "",
            answer.nt_response,
            answer.peer_challenge,
            answer.challenge,
            self.services.config.username or "",
        )

    def handle_timer(self, now: float) -> AuthDone | None:
        """Resend the Responses while no verdict came (the phase timeout covers the rest)."""
        if self.deadline is None or now < self.deadline:
            return None
        self.deadline = None
        if self.phase is _Phase.WAITING and self.answers and self.retransmits > 0:
            self._send_responses(now, tuple(self.answers.items()))
        return None
