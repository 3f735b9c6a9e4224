"""Reload without drops: SIGHUP and ``kl2tpctl reload`` re-read the files and apply them.

What can change while sessions run is applied at once and touches no live session: the
users file, the policy and limits of the endpoint, the values of tunnels opened from now on,
the PPP offer and AAA settings for new sessions, a pool that grew, the log level, categories,
format and destination. A key that cannot change under a running daemon (the listening
address, the data plane, the control socket, the AAA back end, the LAC's peers) keeps its
running value and is named in the answer and the log as needing a restart. A file with any
error is refused as a whole: every error is logged and the running configuration stays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from kl2tp import config as cfgmod
from kl2tp import log as kl2tp_log
from kl2tp.daemon import oplog
from kl2tp.daemon.endpoint import Endpoint
from kl2tp.daemon.notify import Notifier

log = logging.getLogger("kl2tp.daemon")

TUNNEL_KEYS = frozenset(
    {
        "l2tp.hostname",
        "l2tp.secret",
        "l2tp.hide_avps",
        "l2tp.hello_interval",
        "l2tp.receive_window",
        "l2tp.retransmit_initial",
        "l2tp.retransmit_cap",
        "l2tp.max_retries",
        "l2tp.idle_timeout",
        "l2tp.setup_timeout",
        "l2tp.session_setup_timeout",
        "l2tp.max_setup_sessions_per_tunnel",
    }
)
"""Values of tunnels opened after the reload (those up keep theirs)."""
POLICY_KEYS = frozenset(
    {
        "l2tp.allowed_peers",
        "l2tp.max_tunnels",
        "l2tp.max_sessions",
        "l2tp.queue_depth",
        # Bounds on peer-created state (issue 8): the endpoint's Limits.
        "l2tp.max_setup_tunnels",
        "l2tp.max_setup_sessions",
        "l2tp.max_lingering",
        "l2tp.sccrq_rate",
        "l2tp.sccrq_burst",
        "l2tp.sccrq_total_rate",
        "l2tp.sccrq_total_burst",
        "l2tp.max_negotiating_sessions",
        "l2tp.max_sessions_per_tunnel",
    }
)
"""Endpoint policy and limits, in force at once."""
PEER_KEYS = frozenset({"peer", "l2tp.default_peer"})
"""Per-peer policy (``[[peer]]``): new tunnels are matched against the new tables and take
their values; live tunnels keep theirs, their policy's limits follow the new values; new
sessions take their tunnel's policy's new PPP values."""
PPP_KEYS = frozenset(
    {
        "ppp.auth",
        "ppp.local_address",
        "ppp.dns",
        "ppp.mru",
        "ppp.lcp_echo_interval",
        "ppp.lcp_echo_failure",
        "ppp.lcp_echo_adaptive",
        "ppp.restart_timer",
        "ppp.max_configure",
        "ppp.max_terminate",
        "ppp.max_failure",
        "ppp.proxy_lcp",
        "ppp.proxy_auth",
        "ppp.ipv6",
        "ppp.session_timeout",
        "ppp.idle_timeout",
        "ppp.setup_timeout",
        "aaa.duplicate_session",
        "radius.interim_interval",
        "ppp.max_restarts",
    }
)
"""The PPP offer and AAA settings of sessions set up after the reload."""
LOG_KEYS = frozenset({"log.level", "log.categories", "log.format", "log.syslog", "log.history"})
"""Logging, in force at once."""
POOL_KEYS = frozenset({"ppp.pool", "pool"})
"""``[ppp] pool`` and ``[[pool]]``: applied when every pool kept its addresses (grown or
added); a pool that shrank, moved or went away needs a restart."""
RUNTIME_KEYS = (
    TUNNEL_KEYS | POLICY_KEYS | PEER_KEYS | PPP_KEYS | LOG_KEYS | POOL_KEYS | {"aaa.users_file"}
)
"""Every key a reload applies."""


def changed_keys(old: cfgmod.Config, new: cfgmod.Config) -> list[str]:
    """``section.key`` of every value that differs (array tables compared whole)."""
    out: list[str] = []
    for section in attrs.fields(type(old)):
        if section.name in ("role", "source"):
            continue
        a, b = getattr(old, section.name), getattr(new, section.name)
        if not attrs.has(type(a)):
            if a != b:
                out.append(section.name)
            continue
        for field in attrs.fields(type(a)):
            if getattr(a, field.name) != getattr(b, field.name):
                out.append(f"{section.name}.{field.name}")
    return out


def pool_grew(old: Any, new: Any) -> bool:
    """True when the ``new`` pool range holds every address of the ``old`` one."""
    return bool(int(new.first) <= int(old.first) and int(new.last) >= int(old.last))


class Reloader:
    """Re-reads a daemon's configuration file and applies what may change at run time."""

    def __init__(
        self,
        path: str | Path,
        cfg: cfgmod.Config,
        *,
        ident: str,
        notifier: Notifier | None = None,
        load_users: Callable[[cfgmod.Config], Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.cfg = cfg
        """The configuration in force."""
        self.ident = ident
        self.notifier = notifier if notifier is not None else Notifier(None)
        self.load_users = load_users
        """Reads the users file of a configuration (blocking; raises ConfigError); None when
        the daemon has no local users."""
        self.endpoint: Endpoint | None = None
        """Set once the daemon runs."""
        self.authenticator: Any = None
        self.authenticators: dict[str, Any] = {}
        """Every AAA back end the daemon started with, by ``[aaa] backend`` value (a
        ``[[peer]]`` may name only these without a restart)."""
        self.handler: Any = None
        self.link_config: Callable[[cfgmod.Config], Any] | None = None
        """Makes the PPP link config of new sessions from a configuration (LNS)."""

    def _read(self) -> tuple[cfgmod.Config | None, Any, list[str]]:
        """Blocking: the new configuration and users, or every error."""
        errors = [str(e) for e in cfgmod.check_config(self.path, self.cfg.role)]
        if errors:
            return None, None, errors
        try:
            new = cfgmod.load_config(self.path, self.cfg.role)
            users = self.load_users(new) if self.load_users is not None else None
        except cfgmod.ConfigError as exc:
            return None, None, [str(exc)]
        return new, users, []

    async def __call__(self) -> dict[str, Any]:
        """Reload; the answer says what changed, what was applied and what needs a restart."""
        self.notifier.reloading()
        try:
            new, users, errors = await trio.to_thread.run_sync(self._read)
            if new is None:
                for line in errors:
                    log.error("reload refused: %s", line)
                log.error("reload refused: keeping the running configuration")
                return {"ok": False, "errors": errors}
            return self.apply(new, users)
        finally:
            self.notifier.ready("reloaded")

    def apply(self, new: cfgmod.Config, users: Any = None) -> dict[str, Any]:
        """Apply ``new`` (already checked) over the running configuration."""
        old = self.cfg
        changed = changed_keys(old, new)
        runtime = RUNTIME_KEYS
        if old.role == "lac":
            # The LAC dials with per-LNS values fixed at start-up ([[lac.lns]] over [l2tp]).
            runtime = RUNTIME_KEYS - TUNNEL_KEYS
        restart = [k for k in changed if k not in runtime]
        applied = [k for k in changed if k in runtime]
        if (
            "peer" in changed
            and self.authenticators
            and not new.backends <= set(self.authenticators)
        ):
            # A [[peer]] names a back end the daemon did not start: the tables wait.
            applied.remove("peer")
            restart.append("peer")
        pools = [k for k in changed if k in POOL_KEYS]
        if pools and not self._apply_pools(old, new):
            for key in pools:
                applied.remove(key)
                restart.append(key)
        # Keys that need a restart keep their running values until then.
        kept = new
        for key in restart:
            section, _, name = key.partition(".")
            if name:
                sec = attrs.evolve(
                    getattr(kept, section), **{name: getattr(getattr(old, section), name)}
                )
                kept = attrs.evolve(kept, **{section: sec})
            else:
                kept = attrs.evolve(kept, **{section: getattr(old, section)})
        self._apply(kept, changed)
        local = self.authenticators.get("local", self.authenticator)
        if users is not None and local is not None:
            local.reload(users)
        self.cfg = kept
        if applied or restart:
            log.info(
                "reload: applied %s%s",
                ", ".join(applied) or "nothing",
                f"; needs a restart: {', '.join(restart)}" if restart else "",
            )
        else:
            log.info("reload: no change in the configuration (users file re-read)")
        return {"ok": True, "changed": changed, "applied": applied, "restart_needed": restart}

    def _apply(self, cfg: cfgmod.Config, changed: list[str]) -> None:
        from kl2tp.aaa.pool import worker_share
        from kl2tp.daemon.service import apply_policy
        from kl2tp.daemon.workers import share_limits

        endpoint = self.endpoint
        if endpoint is not None:
            # The default policy's tunnel values are [l2tp]'s; live tunnels keep their own.
            endpoint.core.policies = cfg.policies()
            l2 = cfg.l2tp
            # A worker ([l2tp] workers) keeps its share of the endpoint-wide limits.
            max_tunnels, max_sessions, limits = share_limits(
                worker_share()[1], l2.max_tunnels, l2.max_sessions, cfg.endpoint_limits()
            )
            apply_policy(
                endpoint,
                allowed_peers=tuple(l2.allowed_peers),
                max_tunnels=max_tunnels,
                max_sessions=max_sessions,
                queue_depth=l2.queue_depth,
                limits=limits,
            )
        handler = self.handler
        if handler is not None and hasattr(handler, "policies") and cfg.role == "lns":
            from kl2tp.daemon.ppp_session import session_policies

            handler.policies = session_policies(cfg)
        if any(k in PPP_KEYS or k == "peer" for k in changed):
            if handler is not None and self.link_config is not None:
                link = self.link_config(cfg)
                handler.link_config = lambda _n: link
            for attr, value in (
                ("session_timeout", cfg.ppp.session_timeout),
                ("idle_timeout", cfg.ppp.idle_timeout),
                ("duplicate_session", cfg.aaa.duplicate_session),
                ("interim_interval", cfg.radius.interim_interval),
            ):
                if handler is not None and hasattr(handler, attr):
                    setattr(handler, attr, value)
            for backend in {
                id(b): b for b in (self.authenticator, *self.authenticators.values())
            }.values():
                if backend is None:
                    continue
                if hasattr(backend, "methods"):
                    backend.methods = cfg.auth_methods
                if hasattr(backend, "dns"):
                    backend.dns = tuple(cfg.ppp.dns)
        lg = cfg.log
        if "log.format" in changed or "log.syslog" in changed:
            kl2tp_log.configure(
                ident=self.ident,
                level=lg.level,
                fmt=lg.format,
                syslog=lg.syslog,
                categories=lg.categories,
            )
        elif "log.level" in changed or "log.categories" in changed:
            kl2tp_log.set_level(lg.level, lg.categories)
        if "log.history" in changed:
            oplog.EVENTS.get().resize(lg.history)

    def _apply_pools(self, old: cfgmod.Config, new: cfgmod.Config) -> bool:
        """Pools that grew or were added go into the live address book in place of the old
        ones (`AddressBook.replace_pool`: every address the book holds, whoever holds it, is
        taken out of the new pool first). False (the old pools stay): a pool shrank, moved
        or went away."""
        handler = self.handler
        book = getattr(handler, "addresses", None)
        if handler is None or book is None:
            return False
        old_ranges = {"": old.ppp.pool, **{p.name: p.range for p in old.pool}}
        new_ranges = {"": new.ppp.pool, **{p.name: p.range for p in new.pool}}
        for name, rng in old_ranges.items():
            if name not in new_ranges or not pool_grew(rng, new_ranges[name]):
                return False
        from kl2tp.daemon.ppp_session import make_pool

        for name, rng in new_ranges.items():
            if name not in book.pools or old_ranges.get(name) != rng:
                book.replace_pool(name, make_pool(new, name))
        handler.pool = book.pools.get(book.default)
        return True
