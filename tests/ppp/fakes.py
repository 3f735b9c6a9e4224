"""A stand-in for the link: the services a protocol handler gets (ppp.services), recorded.

Handlers no longer know :class:`ppp.link.Link`, so they can be driven alone: build one on a
:class:`FakeServices`, feed its automaton, and read what it sent and signalled.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from ppp.config import AuthMethod, LinkConfig
from ppp.frame import decode_options
from ppp.fsm import State
from ppp.services import Signal


class Sent(NamedTuple):
    """One control packet a handler queued."""

    protocol: int
    state: State
    code: int
    ident: int
    data: bytes

    @property
    def options(self) -> dict[int, bytes]:
        return dict(decode_options(self.data))


class ScriptedRandom(random.Random):
    """``getrandbits`` answers from a script first (to force collisions), then at random."""

    def __init__(self, *script: int) -> None:
        super().__init__(7)
        self.script = list(script)

    def getrandbits(self, k: int) -> int:
        if self.script:
            return self.script.pop(0)
        return super().getrandbits(k)


class FakeServices:
    """Implements ppp.services' protocols by recording everything."""

    def __init__(self, config: LinkConfig | None = None, rng: random.Random | None = None) -> None:
        self.config = config or LinkConfig()
        self.rng = rng or random.Random(1)
        self.tracing = True
        self.lines: list[str] = []
        self.sent: list[Sent] = []  # everything, oldest first
        self._taken = 0
        self.auth_sent: list[tuple[int, int, int, bytes]] = []
        self.signals: list[Signal] = []
        self.drops: dict[str, int] = {}

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def trace(self, category: str, text: str) -> None:
        self.lines.append(f"{category}: {text}")

    def control_send(self, protocol: int, state: State, code: int, ident: int, data: bytes) -> None:
        self.sent.append(Sent(protocol, state, code, ident, data))

    def auth_send(self, protocol: int, code: int, ident: int, data: bytes) -> None:
        self.auth_sent.append((protocol, code, ident, data))

    def signal(self, signal: Signal, now: float) -> None:
        self.signals.append(signal)

    @property
    def demanded_auth(self) -> tuple[AuthMethod, ...]:
        return self.config.auth

    @property
    def willing_auth(self) -> tuple[AuthMethod, ...]:
        return self.config.willing_auth

    @property
    def insisted_auth(self) -> tuple[AuthMethod, ...]:
        return self.config.insisted_auth

    def take(self) -> list[Sent]:
        """The packets sent since the last call."""
        sent = self.sent[self._taken :]
        self._taken = len(self.sent)
        return sent
