"""No secret in any log line, at the most verbose setting (``--debug all+avp``).

Real daemons on loopback: kl2tp-lns with a users file, kl2tp-lac --simulate subscribers with
PAP, CHAP and MS-CHAPv2, with and without proxy authentication (the LAC hands the
subscriber's PAP password or CHAP response to the LNS in AVP 33). Everything both daemons
print is collected, and no tunnel secret or password may appear in it in any form: as text,
as hex (either case, with or without blanks between the octets). The values that would let
someone test guesses offline (AVP 33, the tunnel Challenge Response) must be shown by length
only.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.daemon.harness import BIN, BOUND, Daemon, wait_for, write_configs

TUNNEL_SECRET = "Tunnel-Secret-7Qx"
PASSWORD = "Pw{n}-Zq9xK"
USERS = 4


def forms(secret: str) -> list[str]:
    raw = secret.encode()
    hex_lower = raw.hex()
    return [
        secret,
        hex_lower,
        hex_lower.upper(),
        raw.hex(" "),
        raw.hex(" ").upper(),
        raw.hex(":"),
        repr(raw)[2:-1],
    ]


def secrets() -> list[str]:
    return [TUNNEL_SECRET, *(PASSWORD.format(n=n) for n in range(1, USERS + 1))]


CASES = {
    "pap": ("pap", False),
    "chap": ("chap", False),
    "mschapv2": ("mschapv2", False),
    "proxy-pap": ("pap", True),
    "proxy-chap": ("chap", True),
    # The LAC hides what RFC 2661 4.3 allows (AVP 33 among them): the trace shows neither
    # the ciphertext nor, once unhidden, the value.
    "hidden-proxy-pap": ("pap", "hidden"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_no_secret_in_any_log_line(tmp_path: Path, case: str) -> None:
    method, proxy = CASES[case]
    lns_cfg, lac_cfg, lns_sock, _ = write_configs(
        tmp_path,
        TUNNEL_SECRET,
        lac_extra=(
            "[subscriber]\n"
            f'password = "{PASSWORD}"\n'
            f'auth = "{method}"\n'
            f"proxy = {'true' if proxy else 'false'}\n"
        ),
        users=0,
    )
    if proxy == "hidden":
        text = lac_cfg.read_text()
        lac_cfg.write_text(
            text.replace('hostname = "test-lac"\n', 'hostname = "test-lac"\nhide_avps = true\n')
        )
    (tmp_path / "users").write_text(
        "".join(f"user{n} {PASSWORD.format(n=n)}\n" for n in range(1, USERS + 1))
    )
    lns = Daemon(
        [str(BIN / "kl2tp-lns"), "--config", str(lns_cfg), "--debug", "all+avp"],
        tmp_path / "lns.log",
    )
    try:
        wait_for(lambda: lns_sock.exists(), "the LNS control socket")
        lac = subprocess.run(
            [
                str(BIN / "kl2tp-lac"),
                "--config",
                str(lac_cfg),
                "--simulate",
                str(USERS),
                "--hold",
                "0",
                "--json",
                "--debug",
                "all+avp",
            ],
            capture_output=True,
            text=True,
            timeout=BOUND * 2,
        )
    finally:
        assert lns.stop() == 0
    summary = json.loads(lac.stdout.strip().splitlines()[-1])
    assert summary["established"] == USERS, lac.stdout + lac.stderr
    logs = {"lns": lns.output(), "lac": lac.stderr + lac.stdout}
    # The trace really is at its most verbose: AVP lines from both ends, PPP from both.
    for name, text in logs.items():
        assert "Parse  AVP" in text, name
        assert "Traceback" not in text, name
    assert "I AUTH-REQ" in logs["lns"] or "I RESPONSE" in logs["lns"] or proxy
    if proxy:
        assert "Proxy Auth Resp (" in logs["lns"]
    if proxy == "hidden":
        assert "(hidden)" in logs["lns"] or "flag 0xC000 (M,H)" in logs["lns"]
    for name, text in logs.items():
        for secret in secrets():
            for form in forms(secret):
                assert form not in text, f"{name} log shows {secret!r} as {form!r}"
        # What stands in for a secret-bearing value is its length, never the value.
        for line in text.splitlines():
            if re.search(r"Proxy Auth Resp|Chlng Resp", line):
                assert line.rstrip().endswith("not shown)"), line


RADIUS_SECRET = "Radius-Secret-5Tz"


def test_no_secret_in_any_log_line_with_radius(tmp_path: Path) -> None:
    """The same with the RADIUS back end (a real FreeRADIUS): the RADIUS shared secret and
    the passwords stay out of the LNS's log for every method, proxy CHAP included."""
    from tests.radius.daemons import Lns, radius_servers, run_lac
    from tests.radius.freeradius import FreeRadius

    users = "".join(
        f'user{n} Cleartext-Password := "{PASSWORD.format(n=n)}"\n' for n in range(1, USERS + 1)
    )
    with FreeRadius(tmp_path / "fr", users=users, secret=RADIUS_SECRET) as fr:
        lns = Lns(tmp_path, radius_servers(fr))
        lns.daemon = Daemon(
            [str(BIN / "kl2tp-lns"), "--config", str(lns.config), "--debug", "all+avp"],
            tmp_path / "lns.log",
        )
        try:
            wait_for(lns.sock.exists, "the LNS control socket")
            for method, proxy in CASES.values():
                subscriber = (
                    f'password = "{PASSWORD}"\nauth = "{method}"\n'
                    f"proxy = {'true' if proxy else 'false'}\n"
                )
                result = run_lac(tmp_path, lns, USERS, subscriber=subscriber)
                assert result["established"] == USERS, (method, proxy, result)
        finally:
            assert lns.daemon.stop() == 0
        log = lns.daemon.output()
    assert "Parse  AVP" in log and "Traceback" not in log
    for secret in (*secrets(), RADIUS_SECRET):
        for form in forms(secret):
            assert form not in log, f"the LNS log shows {secret!r} as {form!r}"
