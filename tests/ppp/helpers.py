"""Two links back to back through an in-memory wire, a toy AAA, and hand-driven time."""

from __future__ import annotations

import random
from collections.abc import Callable
from ipaddress import IPv4Address

from ppp.auth import verify_chap_md5
from ppp.config import AuthMethod, IpcpConfig, LinkConfig
from ppp.credentials import ChapCredentials, MsChapV2Credentials, PapCredentials
from ppp.events import AddressRequest, AuthRequest, PppEvent
from ppp.frame import decode_frame, decode_packet
from ppp.link import Link
from ppp.mschapv2 import generate_authenticator_response, verify_nt_response

LNS_ADDRESS = IPv4Address("10.0.0.1")
DNS = (IPv4Address("192.0.2.53"), IPv4Address("192.0.2.54"))
USERS = {"alice": "wonderland", "2500-1": "cisco", "bob": "s3cr3t-pw"}


def lns_config(*methods: AuthMethod, **changes: object) -> LinkConfig:
    """The LNS: demands ``methods``, assigns addresses, offers DNS."""
    ipcp = IpcpConfig(local_address=LNS_ADDRESS, assign_peer_address=True, dns=DNS)
    values: dict[str, object] = {"auth": methods, "hostname": "lns", "ipcp": ipcp}
    values.update(changes)
    return LinkConfig(**values)  # type: ignore[arg-type]


def subscriber_config(
    username: str = "alice", password: str = "wonderland", **changes: object
) -> LinkConfig:
    """The LAC's simulated subscriber: answers authentication, asks for an address and DNS."""
    values: dict[str, object] = {
        "username": username,
        "password": password,
        "ipcp": IpcpConfig(request_dns=True),
    }
    values.update(changes)
    return LinkConfig(**values)  # type: ignore[arg-type]


class Aaa:
    """Decides AuthRequests from USERS and hands out addresses from a small pool."""

    def __init__(self, pool: list[IPv4Address] | None = None) -> None:
        self.pool = list(pool if pool is not None else [IPv4Address("10.0.0.5")])
        self.requests: list[AuthRequest] = []
        self.address_hints: list[IPv4Address | None] = []
        self.defer = False

    def decide(self, link: Link, event: AuthRequest, now: float) -> None:
        self.requests.append(event)
        if self.defer:
            return
        password = USERS.get(event.username)
        creds = event.credentials
        response = None
        if password is None:
            ok = False
        elif isinstance(creds, PapCredentials):
            ok = creds.password == password.encode()
        elif isinstance(creds, ChapCredentials):
            ok = verify_chap_md5(password, creds.ident, creds.challenge, creds.response)
        else:
            assert isinstance(creds, MsChapV2Credentials)
            ok = verify_nt_response(
                creds.authenticator_challenge,
                creds.peer_challenge,
                event.username,
                password,
                creds.nt_response,
            )
            response = generate_authenticator_response(
                password,
                creds.nt_response,
                creds.peer_challenge,
                creds.authenticator_challenge,
                event.username,
            )
        link.auth_result(now, ok, authenticator_response=response if ok else None)

    def address(self, link: Link, event: AddressRequest, now: float) -> None:
        self.address_hints.append(event.requested)
        if event.requested in self.pool:
            self.pool.remove(event.requested)
            link.address_result(now, event.requested)
        else:
            link.address_result(now, self.pool.pop(0) if self.pool else None)


Filter = Callable[[bytes], bool]


class Pair:
    """An LNS link and a subscriber link wired back to back (h11's ConnectionPair)."""

    def __init__(
        self,
        server_config: LinkConfig,
        client_config: LinkConfig,
        *,
        server_rng: random.Random | None = None,
        client_rng: random.Random | None = None,
        aaa: Aaa | None = None,
    ) -> None:
        self.server = Link(server_config, rng=server_rng or random.Random(1), name="lns")
        self.client = Link(client_config, rng=client_rng or random.Random(2), name="sub")
        self.aaa = aaa or Aaa()
        self.now = 0.0
        self.server_events: list[PppEvent] = []
        self.client_events: list[PppEvent] = []
        self.to_client: list[bytes] = []  # every frame the server sent, delivered or not
        self.to_server: list[bytes] = []
        self.drop_to_client: Filter = lambda frame: False
        self.drop_to_server: Filter = lambda frame: False

    def open(self) -> None:
        self.server.open(self.now)
        self.client.open(self.now)
        self.pump()

    def pump(self, rounds: int = 200) -> None:
        """Deliver frames and answer events until nothing moves."""
        for _ in range(rounds):
            moved = self._events()
            for frame in self.server.frames_to_send():
                moved = True
                self.to_client.append(frame)
                if not self.drop_to_client(frame):
                    self.client.receive_frame(frame, self.now)
            for frame in self.client.frames_to_send():
                moved = True
                self.to_server.append(frame)
                if not self.drop_to_server(frame):
                    self.server.receive_frame(frame, self.now)
            moved = self._events() or moved
            if not moved:
                return
        raise AssertionError("the pair never went quiet")

    def _events(self) -> bool:
        moved = False
        while (event := self.server.next_event()) is not None:
            moved = True
            self.server_events.append(event)
            if isinstance(event, AuthRequest):
                self.aaa.decide(self.server, event, self.now)
            elif isinstance(event, AddressRequest):
                self.aaa.address(self.server, event, self.now)
        while (event := self.client.next_event()) is not None:
            moved = True
            self.client_events.append(event)
        return moved

    def advance(self, until: float) -> None:
        """Let time pass to ``until``, running every timer on the way."""
        while True:
            pending = (self.server.get_timer(), self.client.get_timer())
            timers = [t for t in pending if t is not None]
            if not timers or min(timers) > until:
                break
            self.now = max(self.now, min(timers))
            self.server.handle_timer(self.now)
            self.client.handle_timer(self.now)
            self.pump()
        self.now = until


def events_of(events: list[PppEvent], kind: type) -> list[PppEvent]:
    return [e for e in events if isinstance(e, kind)]


def packets(frames: list[bytes], protocol: int) -> list[tuple[int, int, bytes]]:
    """(code, identifier, data) of the frames of one protocol."""
    out = []
    for frame in frames:
        proto, information = decode_frame(frame)
        if proto == protocol:
            out.append(tuple(decode_packet(information)))
    return out  # type: ignore[return-value]
