"""A PPP session's channel closed under it (its tunnel went while PPP still had frames to
send) must not raise out of the session task: that took a kl2tp-lns down in the lab when
xl2tpd's StopCCN raced pppd's LCP Terminate-Request."""

from __future__ import annotations

import trio

from kl2tp.daemon.ppp_session import _send_frames


class ClosedAfter:
    """A channel that takes ``n`` frames, then is closed."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.sent: list[bytes] = []

    async def send(self, frame: bytes) -> None:
        if len(self.sent) >= self.n:
            raise trio.ClosedResourceError("PPP channel closed")
        self.sent.append(frame)


async def test_frames_after_the_channel_closed_are_dropped() -> None:
    channel = ClosedAfter(1)
    frames = [b"\xc0\x21\x06\x02\x00\x04", b"\xc0\x21\x05\x03\x00\x04", b"\x80\x21\x01"]
    await _send_frames(channel, frames)  # type: ignore[arg-type]
    assert channel.sent == frames[:1]
