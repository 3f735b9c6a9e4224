"""The FreeRADIUS fixture's missing-binary rule, and the Acct-Terminate-Cause mapping."""

from __future__ import annotations

import pytest

from kl2tp.aaa.radius.backend import TERMINATE_CAUSES
from kl2tp.daemon.ppp_session import TERMINATE_CAUSE, cause_of_cdn
from kl2tp.l2tp.constants import CdnResult
from kl2tp.l2tp.events import CallClosed
from ppp.events import DownReason
from tests.radius import freeradius


@pytest.mark.parametrize(
    ("env", "outcome"),
    [
        ({}, "skip"),
        ({"CI": "1"}, "fail"),
        ({"KL2TP_FULL_RUN": "1"}, "fail"),
        ({"KL2TP_REQUIRE_FREERADIUS": "1"}, "fail"),
    ],
)
def test_missing_freeradius_skips_locally_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], outcome: str
) -> None:
    monkeypatch.setattr(freeradius.shutil, "which", lambda name: None)
    for name in ("CI", "KL2TP_FULL_RUN", "KL2TP_REQUIRE_FREERADIUS"):
        monkeypatch.delenv(name, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    expected = pytest.skip.Exception if outcome == "skip" else pytest.fail.Exception
    with pytest.raises(expected):
        freeradius.require_freeradius()


def test_every_way_ppp_ends_has_an_rfc2866_cause() -> None:
    for reason in DownReason:
        if reason is DownReason.LOWER_LAYER_DOWN:
            continue  # the CDN says why (cause_of_cdn)
        assert TERMINATE_CAUSE[reason] in TERMINATE_CAUSES, reason
    assert TERMINATE_CAUSE[DownReason.PEER_TERMINATED] == "user-request"
    assert TERMINATE_CAUSE[DownReason.ECHO_TIMEOUT] == "lost-carrier"


def closed(result: int, by_peer: bool, message: str = "") -> CallClosed:
    return CallClosed(sid=1, result=result, error=0, message=message, q931=None, by_peer=by_peer)


@pytest.mark.parametrize(
    ("event", "cause"),
    [
        (closed(CdnResult.LOSS_OF_CARRIER, True), "lost-carrier"),
        (closed(CdnResult.ADMINISTRATIVE, True), "user-request"),
        (closed(CdnResult.GENERAL_ERROR, True), "lost-service"),
        (closed(CdnResult.ADMINISTRATIVE, False, "daemon shutting down"), "admin-reboot"),
        (closed(CdnResult.ADMINISTRATIVE, False, "cleared by administrator"), "admin-reset"),
    ],
)
def test_cdn_causes(event: CallClosed, cause: str) -> None:
    assert cause_of_cdn(event) == cause
    assert cause in TERMINATE_CAUSES
