"""deploy/: the Ansible roles pass ansible-lint's production profile, every playbook passes
``--syntax-check``, the Vagrantfile validates, and the kl2tp role, applied twice over Ansible's
chroot connection to a fresh copy of a debootstrapped Debian 12 root, changes nothing the
second time and leaves configurations that ``--check-config`` accepts and units that
``systemd-analyze verify`` passes.

The tools come from scripts/deploy-deps.sh (.venv-deploy, apt's vagrant and debootstrap, the
cached root). Missing ones skip these tests, except under CI (``CI`` or
``KL2TP_REQUIRE_DEPLOY`` set, as scripts/test does in its full run), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kl2tp.aaa.local import parse_users
from tests.parts import missing

TOP = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = TOP / "deploy" / "ansible"
VENV_BIN = TOP / ".venv-deploy" / "bin"
ROOTFS = Path(os.environ.get("KL2TP_DEPLOY_CACHE", "/var/cache/kl2tp-deploy")) / (
    "rootfs-bookworm.tar"
)
PLAYBOOKS = [
    ANSIBLE_DIR / "site.yml",
    ANSIBLE_DIR / "lab.yml",
    TOP / "tests/deploy/chroot.yml",
    TOP / "tests/deploy/render.yml",
]
BOUND = 900.0  # seconds for one ansible-playbook run (the first one installs from apt and PyPI)


def _missing(what: str) -> None:
    missing(
        f"{what} is missing (scripts/deploy-deps.sh, as root, installs it)", "KL2TP_REQUIRE_DEPLOY"
    )


def _tool(name: str) -> str:
    local = VENV_BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        _missing(name)
    assert found is not None
    return found


def _env(tmp: Path) -> dict[str, str]:
    """The tools' environment: the deploy venv first on PATH, Ansible's state under *tmp*, and
    no PIP_* settings of this host (the chroot connection would hand them to pip in the root)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["ANSIBLE_HOME"] = str(tmp / "ansible-home")
    env["ANSIBLE_LOCAL_TEMP"] = str(tmp / "ansible-tmp")
    env["ANSIBLE_ROLES_PATH"] = str(ANSIBLE_DIR / "roles")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["VAGRANT_CHECKPOINT_DISABLE"] = "1"
    env["VAGRANT_HOME"] = str(tmp / "vagrant-home")
    return env


def _run(argv: list[str], tmp: Path, *, cwd: Path = TOP, timeout: float = 300.0) -> str:
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=_env(tmp),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{out}"
    return out


@pytest.mark.parametrize(
    ("where", "lintables"),
    [
        (ANSIBLE_DIR, ["."]),  # the roles, playbooks and inventories
        (TOP / "tests" / "deploy", ["chroot.yml", "render.yml", "render-vars.yml"]),
    ],
    ids=["deploy-ansible", "test-playbooks"],
)
def test_ansible_lint_production_profile_is_clean(
    where: Path, lintables: list[str], tmp_path: Path
) -> None:
    out = _run(
        [_tool("ansible-lint"), "--offline", "--profile", "production", "--nocolor", *lintables],
        tmp_path,
        cwd=where,
    )
    assert "Profile 'production' was required, and it passed" in out, out


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: p.name)
def test_playbook_syntax(playbook: Path, tmp_path: Path) -> None:
    inventory = ANSIBLE_DIR / "inventories" / "vagrant"
    _run(
        [_tool("ansible-playbook"), "--syntax-check", "-i", str(inventory), str(playbook)],
        tmp_path,
        cwd=ANSIBLE_DIR,
    )


def test_vagrantfile_validates(tmp_path: Path) -> None:
    out = _run([_tool("vagrant"), "validate", "--ignore-provider"], tmp_path, timeout=120)
    assert "validated successfully" in out, out


def test_vagrantfile_validation_catches_a_bad_setting(tmp_path: Path) -> None:
    """The check above can fail: a setting Vagrant does not know is an error."""
    vagrant = _tool("vagrant")
    text = (TOP / "Vagrantfile").read_text()
    (tmp_path / "Vagrantfile").write_text(
        text + '\nVagrant.configure("2") { |c| c.vm.not_an_option = 1 }\n'
    )
    proc = subprocess.run(
        [vagrant, "validate", "--ignore-provider"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert "not_an_option" in proc.stdout + proc.stderr


def test_local_users_render_to_a_file_the_lns_reads(tmp_path: Path) -> None:
    """The users template quotes names and passwords the way the users file parser reads
    them back (blanks, quotes, backslashes, UTF-8), and the LNS accepts the configuration."""
    out = tmp_path / "etc"
    out.mkdir()
    _run(
        [_tool("ansible-playbook"), "-i", "localhost,", "-e", f"out={out}", "render.yml"],
        tmp_path,
        cwd=TOP / "tests" / "deploy",
    )
    users = parse_users((out / "users").read_text().splitlines(), "users")
    assert {name: u.password.reveal() for name, u in users.items()} == {
        "alice": b"correct horse",
        'bob "the builder"': b"back\\slash",
        "carol": "café".encode(),
    }
    assert str(users["alice"].address) == "100.64.3.200"
    assert (out / "users").stat().st_mode & 0o777 == 0o600
    lns = Path(sys.executable).parent / "kl2tp-lns"
    proc = subprocess.run(
        [str(lns), "--check-config", "--config", str(out / "lns.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the role, for real, in a chroot --------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    """A Debian root the kl2tp role (tests/deploy/chroot.yml) was applied to twice."""

    root: Path
    """The root directory."""
    first: str
    """ansible-playbook's output of the first run."""
    second: str
    """ansible-playbook's output of the second run."""


def _recap(out: str) -> dict[str, int]:
    """The PLAY RECAP counters of the (single) host."""
    match = re.search(r"PLAY RECAP \*+\n\S+\s*:\s*(.*)", out)
    assert match, out
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Applied]:
    playbook = _tool("ansible-playbook")
    pip = _tool("pip")
    if not ROOTFS.exists():
        _missing(f"the cached Debian root {ROOTFS}")
    if os.geteuid() != 0:
        _missing("root (the chroot connection needs it)")
    tmp = tmp_path_factory.mktemp("deploy")
    root = tmp / "root"
    root.mkdir()
    try:
        subprocess.run(["tar", "-C", str(root), "-xf", str(ROOTFS)], check=True, timeout=300)
        # Local CAs this host trusts (a TLS-intercepting proxy's) go into the root too, for
        # the role's pip; on a machine without any the directory is empty.
        local_ca = Path("/usr/local/share/ca-certificates")
        if local_ca.is_dir():
            shutil.copytree(local_ca, root / local_ca.relative_to("/"), dirs_exist_ok=True)
        # The wheel is built here with the host's pip settings (the index it may need).
        proc = subprocess.run(
            [pip, "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(TOP)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (wheel,) = (tmp / "dist").glob("kl2tp-*.whl")
        argv = [
            playbook,
            "-i",
            f"{root},",
            "-c",
            "community.general.chroot",
            "-e",
            "ansible_python_interpreter=/usr/bin/python3",
            "-e",
            f"kl2tp_wheel={wheel}",
            str(TOP / "tests" / "deploy" / "chroot.yml"),
        ]
        first = _run(argv, tmp, timeout=BOUND)
        second = _run(argv, tmp, timeout=BOUND)
        yield Applied(root, first, second)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_role_applies_and_a_second_run_changes_nothing(applied: Applied) -> None:
    first, second = _recap(applied.first), _recap(applied.second)
    assert first["failed"] == 0 and first["unreachable"] == 0
    assert first["changed"] > 0  # the root really was fresh
    assert second["failed"] == 0 and second["unreachable"] == 0
    assert second["changed"] == 0, applied.second


def test_role_leaves_the_daemons_stopped_and_the_modules_alone_in_a_chroot(
    applied: Applied,
) -> None:
    # Starting, reloading, modprobe and sysctl are for live machines only.
    for task in ("Start the service", "Load the L2TP and PPP kernel modules now"):
        block = applied.first.split(f"TASK [kl2tp : {task}]", 1)[1].split("TASK [", 1)[0]
        assert "skipping:" in block and "changed:" not in block, block


@pytest.mark.parametrize("role", ["lns", "lac"])
def test_templated_configuration_passes_check_config(applied: Applied, role: str) -> None:
    config = applied.root / "etc" / "kl2tp" / f"{role}.toml"
    assert config.stat().st_mode & 0o777 == 0o600  # it holds the secrets
    proc = subprocess.run(
        [
            "chroot",
            str(applied.root),
            f"/opt/kl2tp/bin/kl2tp-{role}",
            "--check-config",
            "--config",
            f"/etc/kl2tp/{role}.toml",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"/etc/kl2tp/{role}.toml: OK" in proc.stdout + proc.stderr


def test_templated_lns_configuration_carries_the_variables(applied: Applied) -> None:
    text = (applied.root / "etc/kl2tp/lns.toml").read_text()
    assert 'backend = "radius"' in text
    assert 'secret = "radius \\"secret\\""' in text  # quoted for TOML
    assert "auth_port = 11812" in text
    assert 'name = "business"' in text
    assert "max_sessions = 1000" in text
    assert "metrics" not in text


@pytest.mark.parametrize("role", ["lns", "lac"])
def test_unit_verifies_and_is_enabled(applied: Applied, role: str) -> None:
    unit = f"/etc/systemd/system/kl2tp-{role}.service"
    wants = applied.root / "etc/systemd/system/multi-user.target.wants" / f"kl2tp-{role}.service"
    assert wants.is_symlink()
    # In the root: the unit with the role's drop-in, whose binaries must exist there.
    proc = subprocess.run(
        ["chroot", str(applied.root), "systemd-analyze", "verify", "--man=no", unit],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dropin = (applied.root / unit.lstrip("/")).with_suffix(".service.d") / "ansible.conf"
    assert f"ExecStart=/opt/kl2tp/bin/kl2tp-{role} " in dropin.read_text()


def test_pppoe_lac_configuration_and_capabilities(applied: Applied) -> None:
    text = (applied.root / "etc/kl2tp/lac.toml").read_text()
    assert 'mode = "pppoe"' in text
    assert '[pppoe]\ninterface = "eth1"' in text
    assert 'service_names = ["614629"]' in text
    dropin = applied.root / "etc/systemd/system/kl2tp-lac.service.d"
    override = "".join(p.read_text() for p in sorted(dropin.glob("*.conf")))
    assert "CapabilityBoundingSet=CAP_NET_RAW" in override
    assert "RestrictAddressFamilies=AF_PACKET" in override


def test_modules_and_forwarding_at_boot(applied: Applied) -> None:
    modules = (applied.root / "etc/modules-load.d/kl2tp.conf").read_text().split()
    assert {"l2tp_netlink", "l2tp_ppp", "ppp_generic"} <= set(modules)
    sysctl = (applied.root / "etc/sysctl.d/90-kl2tp.conf").read_text()
    assert "net.ipv4.ip_forward = 1" in sysctl


def test_lab_freeradius_configuration_checks(applied: Applied) -> None:
    """The freeradius role's clients and users (subscribers, DNIS tunnel lookups) load."""
    authorize = applied.root / "etc/freeradius/3.0/mods-config/files/authorize"
    assert "Tunnel-Server-Endpoint:2 = " in authorize.read_text()
    proc = subprocess.run(
        ["chroot", str(applied.root), "freeradius", "-C", "-d", "/etc/freeradius/3.0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
