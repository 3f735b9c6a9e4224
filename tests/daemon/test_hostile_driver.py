"""Issue 8 finding 6 and issue 10's session limit through the real driver and daemons: a LAC
hiding its AVPs (RFC 2661 4.3, Random Vector first) reaches the LNS, and ``max_sessions = N``
admits exactly N calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
import trio.testing

from kl2tp.l2tp.constants import AvpType, MessageType
from kl2tp.l2tp.errors import DecodeError
from kl2tp.l2tp.events import CallParams
from kl2tp.l2tp.message import ControlMessage, decode, peek
from kl2tp.l2tp.tunnel import TunnelConfig
from tests.daemon.harness import BIN, Daemon, simulate, wait_for, write_configs
from tests.daemon.test_fakenet import LAC_ADDR, LNS_ADDR, FakeNetwork, pair, running

SECRET = b"hide and seek"


async def test_a_lac_hiding_its_avps_reaches_the_lns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = FakeNetwork()
    lns, lac = pair(
        network,
        TunnelConfig(hostname="lns", secret=SECRET),
        TunnelConfig(hostname="lac", secret=SECRET, hide_avps=True),
    )
    async with running(network, lns, lac, limit=60):
        runner = await lac.dial(LNS_ADDR)
        info = runner.place_call(CallParams(serial=1, called_number="5551234"))
        await info.done.wait()
        assert info.established is not None
    # The SCCRQ goes in clear (a peer may pick its secret by our Host Name in it), the ICRQ
    # hides its AVPs: unreadable without the secret, Random Vector first.
    sent = [data for _, src, _, data in network.log if src == LAC_ADDR and peek(data)[0]]
    assert decode(sent[0]).msg_type is MessageType.SCCRQ
    icrq = next(d for d in sent if decode(d, SECRET).msg_type is MessageType.ICRQ)
    with pytest.raises(DecodeError, match="no tunnel secret"):
        decode(icrq)
    msg = decode(icrq, SECRET)
    assert isinstance(msg, ControlMessage)
    hidden = [a.type for a in msg.avps if a.hidden]
    assert AvpType.CALLED_NUMBER in hidden
    types = [a.type for a in msg.avps]
    assert types.index(AvpType.RANDOM_VECTOR) < types.index(hidden[0])
    assert lns.counters["drop_malformed"] == 0 and lns.counters["drop_bad_sccrq"] == 0


def test_kl2tp_lac_with_hide_avps_reaches_kl2tp_lns(tmp_path: Path) -> None:
    lns_cfg, lac_cfg, lns_sock, _ = write_configs(tmp_path, "s3cret")
    text = lac_cfg.read_text()
    lac_cfg.write_text(text.replace('secret = "s3cret"', 'secret = "s3cret"\nhide_avps = true', 1))
    lns = Daemon([str(BIN / "kl2tp-lns"), "--config", str(lns_cfg)], tmp_path / "lns.log")
    try:
        wait_for(lambda: lns_sock.exists(), "the LNS control socket")
        out = simulate(lac_cfg, 3)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert (result["established"], result["failed"]) == (3, {})
    finally:
        assert lns.stop() == 0
    assert "Traceback" not in lns.output()


@pytest.mark.parametrize("cap", [1, 3])
def test_max_sessions_admits_exactly_that_many_calls(tmp_path: Path, cap: int) -> None:
    """Issue 10: ``max_sessions = 3`` admitted 2 calls and ``max_sessions = 1`` none."""
    lns_cfg, lac_cfg, lns_sock, _ = write_configs(tmp_path, "s3cret")
    text = lns_cfg.read_text()
    lns_cfg.write_text(text.replace("[l2tp]\n", f"[l2tp]\nmax_sessions = {cap}\n", 1))
    lns = Daemon([str(BIN / "kl2tp-lns"), "--config", str(lns_cfg)], tmp_path / "lns.log")
    try:
        wait_for(lambda: lns_sock.exists(), "the LNS control socket")
        for _ in range(2):  # and again once the first round's calls are gone
            out = simulate(lac_cfg, cap + 1)
            result = json.loads(out.stdout)
            assert result["established"] == cap, result
            assert result["failed"] == {"cdn result 4: session limit reached": 1}, result
    finally:
        assert lns.stop() == 0
