"""Reload, key by key, without a daemon: what is applied, what needs a restart, pools that
grow keep every live address, a bad file changes nothing."""

from __future__ import annotations

import logging
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from kl2tp import config as cfgmod
from kl2tp.daemon.endpoint import Endpoint
from kl2tp.daemon.ppp_session import address_book, lns_link_config
from kl2tp.daemon.reload import RUNTIME_KEYS, Reloader, changed_keys
from kl2tp.dataplane.null import NullDataPlane

BASE = """
[l2tp]
hello_interval = 60
[ppp]
pool = "10.1.0.0/29"
local_address = "10.1.0.1"
[aaa]
users_file = "users"
"""


@attrs.define(eq=False)
class State:
    """A live session as the address book sees it."""

    address: IPv4Address | None = None


@attrs.define
class Handler:
    """The parts of PppSessions a reload touches."""

    addresses: Any
    pool: Any = None
    link_config: Any = None
    session_timeout: float = 0.0
    running: dict[tuple[int, int], State] = attrs.field(factory=dict)


def setup(tmp_path: Path, text: str = BASE) -> tuple[Reloader, Handler, Endpoint, Path]:
    (tmp_path / "users").write_text("alice secret1\n")
    path = tmp_path / "lns.toml"
    path.write_text(text)
    cfg = cfgmod.load_config(path, "lns")
    book = address_book(cfg)
    handler = Handler(book, book.pools[""])
    for n in range(3):  # three live sessions holding pool addresses
        state = State()
        state.address = book.assign(state)
        handler.running[(1, n + 1)] = state
    plane = NullDataPlane()
    endpoint = Endpoint(
        role="lns", tunnel_config=cfg.tunnel_config(), dataplane=plane, listen=("127.0.0.1", 0)
    )
    users: list[Any] = []
    reloader = Reloader(path, cfg, ident="test", load_users=lambda c: users.append(c) or {})
    reloader.endpoint, reloader.handler, reloader.link_config = endpoint, handler, lns_link_config
    return reloader, handler, endpoint, path


def test_changed_keys_walks_every_section(tmp_path: Path) -> None:
    reloader, *_ = setup(tmp_path)
    new = attrs.evolve(
        reloader.cfg,
        l2tp=attrs.evolve(reloader.cfg.l2tp, max_sessions=5),
        log=attrs.evolve(reloader.cfg.log, level="debug"),
    )
    assert changed_keys(reloader.cfg, new) == ["l2tp.max_sessions", "log.level"]


async def test_a_grown_pool_keeps_every_live_address(tmp_path: Path) -> None:
    reloader, handler, endpoint, path = setup(tmp_path)
    held = {s.address for s in handler.running.values()}
    path.write_text(
        BASE.replace('"10.1.0.0/29"', '"10.1.0.0/28"').replace(
            "hello_interval = 60", "hello_interval = 30\nmax_tunnels = 7"
        )
        + '\n[[pool]]\nname = "gold"\nrange = "10.2.0.0/30"\n'
    )
    answer = await reloader()
    assert answer["ok"], answer
    assert set(answer["applied"]) == {"ppp.pool", "pool", "l2tp.hello_interval", "l2tp.max_tunnels"}
    assert answer["restart_needed"] == []
    book = handler.addresses
    assert set(book.pools) == {"", "gold"} and book.pools[""].size > 6
    for state in handler.running.values():
        assert book.holder(state.address) is state
    fresh = State()
    got = book.assign(fresh)
    assert got is not None and got not in held
    assert endpoint.tunnel_config.hello_interval == 30
    assert endpoint.core.config.max_tunnels == 7


@pytest.mark.parametrize("pool", ['"10.1.0.0/30"', '"10.9.0.0/29"'])
async def test_a_shrunk_or_moved_pool_needs_a_restart(tmp_path: Path, pool: str) -> None:
    reloader, handler, _endpoint, path = setup(tmp_path)
    book = handler.addresses
    path.write_text(BASE.replace('"10.1.0.0/29"', pool))
    answer = await reloader()
    assert answer["ok"] and answer["restart_needed"] == ["ppp.pool"]
    assert handler.addresses is book
    assert reloader.cfg.ppp.pool == cfgmod.parse_pool("10.1.0.0/29")  # kept its running value


async def test_keys_that_need_a_restart_keep_their_running_values(tmp_path: Path) -> None:
    reloader, _handler, _endpoint, path = setup(tmp_path)
    path.write_text(BASE + '\n[dataplane]\nkind = "kernel"\n[control]\nsocket = "/tmp/x.sock"\n')
    answer = await reloader()
    assert answer["restart_needed"] == ["dataplane.kind", "control.socket"]
    assert reloader.cfg.dataplane.kind == "auto"
    assert str(reloader.cfg.control.socket) == "/run/kl2tp/lns.sock"


async def test_a_bad_file_changes_nothing(tmp_path: Path) -> None:
    reloader, handler, endpoint, path = setup(tmp_path)
    before_cfg, before_book = reloader.cfg, handler.addresses
    path.write_text(BASE.replace("hello_interval = 60", "hello_interval = -1\nmax_retries = 0"))
    answer = await reloader()
    assert answer["ok"] is False and len(answer["errors"]) == 2
    assert reloader.cfg is before_cfg and handler.addresses is before_book
    assert endpoint.tunnel_config.hello_interval == 60


async def test_a_bad_users_file_changes_nothing(tmp_path: Path) -> None:
    reloader, _handler, _endpoint, path = setup(tmp_path)

    def bad_users(cfg: cfgmod.Config) -> Any:
        raise cfgmod.ConfigError("users", "line 1", "unterminated quote")

    reloader.load_users = bad_users
    before = reloader.cfg
    path.write_text(BASE.replace("hello_interval = 60", "hello_interval = 5"))
    answer = await reloader()
    assert answer == {"ok": False, "errors": ["users: line 1: unterminated quote"]}
    assert reloader.cfg is before


async def test_link_config_for_new_sessions_follows_ppp_keys(tmp_path: Path) -> None:
    reloader, handler, _endpoint, path = setup(tmp_path)
    path.write_text(BASE.replace("[ppp]\n", '[ppp]\nauth = ["pap"]\nsession_timeout = 60\n'))
    with trio.fail_after(10):
        answer = await reloader()
    assert "ppp.auth" in answer["applied"] and "ppp.session_timeout" in answer["applied"]
    assert [m.value for m in handler.link_config(1).auth] == ["pap"]
    assert handler.session_timeout == 60.0


async def test_the_lac_needs_a_restart_for_tunnel_values(tmp_path: Path) -> None:
    path = tmp_path / "lac.toml"
    path.write_text('[l2tp]\nhostname = "lac1"\n[log]\nlevel = "info"\n')
    reloader = Reloader(path, cfgmod.load_config(path, "lac"), ident="test")
    path.write_text('[l2tp]\nhostname = "lac2"\n[log]\nlevel = "warning"\n')
    answer = await reloader()
    assert answer["applied"] == ["log.level"]
    assert answer["restart_needed"] == ["l2tp.hostname"]
    assert reloader.cfg.l2tp.hostname == "lac1"
    logging.getLogger("kl2tp").setLevel(logging.INFO)


def test_every_reloadable_key_names_a_configuration_key() -> None:
    """The reload sets are kept by hand: a misspelt or renamed key would silently turn into
    one that needs a restart."""
    config = attrs.resolve_types(cfgmod.Config)
    keys = {section.name for section in attrs.fields(config)}
    for section in attrs.fields(config):
        if attrs.has(section.type):
            keys.update(f"{section.name}.{f.name}" for f in attrs.fields(section.type))
    assert not RUNTIME_KEYS - keys, sorted(RUNTIME_KEYS - keys)
