"""A real FreeRADIUS for the tests, run from a private copy of its configuration.

``FreeRadius(tmp_path, users=...)`` copies /etc/freeradius/3.0 into ``tmp_path``, replaces the
virtual server with a small one (auth + acct listeners on loopback ports of its own; PAP,
CHAP and MS-CHAPv2 against ``users``; accounting into a detail file), moves the run, log and
accounting directories into ``tmp_path``, comments out ``user``/``group`` and runs
``freeradius -f -l stdout -d DIR``. EAP and the inner tunnel are left out (they need TLS
certificates a fresh install may not have made).

Used by the RADIUS tests of both the AAA and the CoA/LAC-selection work; keep the API stable:
``start()``, ``stop()``, ``auth_port``, ``acct_port``, ``secret``, ``detail_records()``,
``clients`` (extra ``(address, secret)`` pairs), ``extra_site`` (text added to the server
block), ``log`` (everything it printed).

Missing FreeRADIUS: the tests skip, except under CI (``CI`` or ``KL2TP_REQUIRE_FREERADIUS`` set
in the environment; scripts/test sets the latter in its full run, which CI runs), where they
fail: CI installs it (scripts/lab-deps.sh) and a skip there would hide a broken set-up.
"""

from __future__ import annotations

import contextlib
import random
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from tests.parts import missing

__all__ = ["FreeRadius", "free_udp_port", "require_freeradius"]

SOURCE = Path("/etc/freeradius/3.0")


def require_freeradius() -> str:
    """The freeradius binary; skips the test without it (fails it under CI)."""
    binary = shutil.which("freeradius") or shutil.which("radiusd")
    if binary is None or not SOURCE.is_dir():
        message = "FreeRADIUS is not installed (apt-get install freeradius freeradius-utils)"
        missing(message, "KL2TP_REQUIRE_FREERADIUS")
    return binary


def free_udp_port() -> int:
    """A UDP port nothing listens on right now (on 127.0.0.1), below the kernel's ephemeral
    range: a server stopped and started again on it must not find it taken by some
    client's ephemeral socket meanwhile (ours included)."""
    low = 20000
    with contextlib.suppress(OSError, ValueError, IndexError):
        low = min(low, int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]))
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free UDP port below the ephemeral range")


SITE = """\
server default {{
listen {{
	type = auth
	ipaddr = 127.0.0.1
	port = {auth_port}
}}
listen {{
	type = acct
	ipaddr = 127.0.0.1
	port = {acct_port}
}}
authorize {{
	preprocess
	chap
	mschap
	files
	pap
}}
authenticate {{
	Auth-Type PAP {{
		pap
	}}
	Auth-Type CHAP {{
		chap
	}}
	Auth-Type MS-CHAP {{
		mschap
	}}
}}
preacct {{
	preprocess
	acct_unique
}}
accounting {{
	detail
	ok
}}
post-auth {{
	{sign}
	ok
	Post-Auth-Type REJECT {{
		{sign}
		ok
	}}
}}
{extra}
}}
"""


class FreeRadius:
    """One FreeRADIUS instance on 127.0.0.1.

    Args:
        tmp: a directory of its own (the configuration, logs and detail files go there).
        users: ``mods-config/files/authorize`` text, e.g.
            ``'alice Cleartext-Password := "pw"\\n  Framed-IP-Address = 10.9.0.5\\n'``.
        secret: the shared secret of the 127.0.0.1 client.
        clients: further ``(address, secret)`` clients.
        extra_site: text added inside ``server default { ... }``.
        sign_replies: put a Message-Authenticator in every Access-Accept/Reject, as
            FreeRADIUS >= 3.2.5 does (BlastRADIUS); Debian 12's 3.2.1 does not by itself.
        auth_port, acct_port: ports to listen on; default: free ones.
    """

    def __init__(
        self,
        tmp: Path,
        *,
        users: str = "",
        secret: str = "testing123",
        clients: Iterable[tuple[str, str]] = (),
        extra_site: str = "",
        sign_replies: bool = True,
        auth_port: int | None = None,
        acct_port: int | None = None,
    ) -> None:
        self.binary = require_freeradius()
        self.tmp = Path(tmp)
        self.dir = self.tmp / "raddb"
        self.users = users
        self.secret = secret
        self.clients = list(clients)
        self.extra_site = extra_site
        self.sign_replies = sign_replies
        self.auth_port = auth_port or free_udp_port()
        self.acct_port = acct_port or free_udp_port()
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    # -- configuration ----------------------------------------------------------------------

    def configure(self) -> None:
        """Write the private configuration (start() does it when not done yet)."""
        if self.dir.exists():
            shutil.rmtree(self.dir)
        shutil.copytree(SOURCE, self.dir, symlinks=False)
        for sub in ("run", "log", "radacct"):
            (self.tmp / sub).mkdir(exist_ok=True)
        conf = (self.dir / "radiusd.conf").read_text()
        subs = {
            "logdir": self.tmp / "log",
            "radacctdir": self.tmp / "radacct",
            "run_dir": self.tmp / "run",
            "raddbdir": self.dir,
        }
        for key, value in subs.items():
            conf = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", conf)
        conf = re.sub(r"(?m)^(\s*)(user|group) = ", r"\1# \2 = ", conf)
        conf = re.sub(r"(?m)^(\s*)reject_delay = .*$", r"\1reject_delay = 0", conf)
        (self.dir / "radiusd.conf").write_text(conf)
        for name in ("eap", "ntlm_auth", "sradutmp", "radutmp", "unix", "replicate", "soh"):
            (self.dir / "mods-enabled" / name).unlink(missing_ok=True)
        for site in (self.dir / "sites-enabled").iterdir():
            site.unlink()
        (self.dir / "sites-enabled" / "default").write_text(
            SITE.format(
                auth_port=self.auth_port,
                acct_port=self.acct_port,
                extra=self.extra_site,
                sign="update reply {\n\t\tMessage-Authenticator := 0x00\n\t}"
                if self.sign_replies
                else "",
            )
        )
        clients = [("127.0.0.1", self.secret), *self.clients]
        text = "".join(
            f'client c{i} {{\n\tipaddr = {addr}\n\tsecret = "{sec}"\n'
            f"\trequire_message_authenticator = no\n}}\n"
            for i, (addr, sec) in enumerate(clients)
        )
        (self.dir / "clients.conf").write_text(text)
        (self.dir / "mods-config" / "files" / "authorize").write_text(self.users)

    # -- process ----------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until it serves; raises RuntimeError with its output if not."""
        if not (self.dir / "radiusd.conf").exists():
            self.configure()
        self.lines = []
        self._ready.clear()
        self.proc = subprocess.Popen(
            [self.binary, "-f", "-l", "stdout", "-d", str(self.dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError("FreeRADIUS did not start:\n" + self.log)
        if self.proc.poll() is not None:
            raise RuntimeError("FreeRADIUS exited:\n" + self.log)

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "Ready to process requests" in line:
                self._ready.set()
        self._ready.set()  # exited: start() looks at poll()

    def stop(self) -> None:
        """Stop it (idempotent)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()

    @property
    def running(self) -> bool:
        """True while the process lives."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self) -> str:
        """Everything it printed so far."""
        return "".join(self.lines)

    def __enter__(self) -> FreeRadius:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- accounting records -----------------------------------------------------------------

    def detail_records(self) -> list[dict[str, str]]:
        """Every record of the detail files, oldest first: attribute name -> value (quotes
        removed; a repeated attribute keeps its last value)."""
        records: list[dict[str, str]] = []
        for path in sorted((self.tmp / "radacct").rglob("detail-*")):
            records.extend(parse_detail(path.read_text()))
        return records

    def wait_records(
        self, predicate: object = None, count: int = 1, timeout: float = 10.0
    ) -> list[dict[str, str]]:
        """Poll the detail files until ``count`` records match ``predicate`` (a callable
        on a record; None: any); returns the matching records (maybe fewer on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [
                r
                for r in self.detail_records()
                if predicate is None or predicate(r)  # type: ignore[operator]
            ]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def parse_detail(text: str) -> Iterator[dict[str, str]]:
    """Records of one detail file (a header line, then ``\\tName = value`` lines, a blank)."""
    record: dict[str, str] | None = None
    for line in text.splitlines():
        if not line.strip():
            if record:
                yield record
            record = None
            continue
        if not line.startswith(("\t", " ")):
            record = {"_header": line.strip()}
            continue
        name, _, value = line.strip().partition(" = ")
        if record is None:
            record = {}
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        record[name] = value
    if record:
        yield record
