"""tests/parts.py: a missing part fails the full run and skips a local partial one."""

from __future__ import annotations

import pytest

from tests.parts import missing


@pytest.mark.parametrize("flag", ["CI", "KL2TP_FULL_RUN", "KL2TP_REQUIRE_X"])
def test_a_missing_part_fails_the_full_run(monkeypatch: pytest.MonkeyPatch, flag: str) -> None:
    for name in ("CI", "KL2TP_FULL_RUN", "KL2TP_REQUIRE_X"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(flag, "1")
    with pytest.raises(pytest.fail.Exception, match="tool is missing"):
        missing("tool is missing", "KL2TP_REQUIRE_X")


def test_a_missing_part_skips_a_local_run(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CI", "KL2TP_FULL_RUN", "KL2TP_REQUIRE_X"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(pytest.skip.Exception, match="tool is missing"):
        missing("tool is missing", "KL2TP_REQUIRE_X")
