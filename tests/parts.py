"""Parts of the machine some tests need (FreeRADIUS, radclient, systemd-analyze, the deploy
tools): one rule for when they are absent."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["missing"]


def missing(message: str, *flags: str) -> NoReturn:
    """A part the test needs is absent: the test fails where the suite must run whole (``CI``
    set, or ``KL2TP_FULL_RUN`` or one of ``flags``, which scripts/test's full run exports) and
    is skipped, saying why, in a local partial run."""
    if any(os.environ.get(f) for f in ("CI", "KL2TP_FULL_RUN", *flags)):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
