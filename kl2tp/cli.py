"""Command lines: kl2tp-lns, kl2tp-lac, kl2tpctl.

Exit codes: 0 success, 1 runtime failure (e.g. a simulation with failed calls, a daemon
that could not bind), 2 bad usage or a bad config (one line naming the file, key, problem).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib.metadata
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import attrs
import trio
import trio.lowlevel

from kl2tp import config as cfgmod
from kl2tp import log as kl2tp_log
from kl2tp.daemon.endpoint import Endpoint
from kl2tp.daemon.handle import Address
from kl2tp.daemon.service import Settings
from kl2tp.daemon.workers import WorkerSlot
from kl2tp.dataplane.base import DataPlane, DataPlaneError
from kl2tp.l2tp.tunnel import TunnelConfig

log = logging.getLogger("kl2tp.daemon")


def version() -> str:
    """The installed kl2tp version."""
    try:
        return importlib.metadata.version("kl2tp")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "unknown"


# -- logging ------------------------------------------------------------------------------------


def setup_logging(
    debug: str | None,
    level: str = "info",
    categories: Sequence[str] = (),
    *,
    ident: str = "kl2tp",
    fmt: str = "text",
    syslog: str = "",
) -> None:
    """The daemon's log: ``[log]`` plus ``--debug`` (a comma list of categories, ``all``,
    ``+avp``). A bad category exits 2 with one line."""
    try:
        kl2tp_log.configure(
            ident=ident, level=level, fmt=fmt, syslog=syslog, categories=categories, debug=debug
        )
    except kl2tp_log.UsageError as exc:
        print(f"{ident}: --debug: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        print(f"{ident}: [log] syslog: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _setup_from(cfg: cfgmod.Config, args: argparse.Namespace, ident: str) -> None:
    lg = cfg.log
    setup_logging(args.debug, lg.level, lg.categories, ident=ident, fmt=lg.format, syslog=lg.syslog)


# -- config -> settings -------------------------------------------------------------------------


def settings_from_config(cfg: cfgmod.Config, role: str) -> Settings:
    """Map the typed config onto what the daemon needs."""
    l2 = cfg.l2tp

    peers: tuple[tuple[Address, TunnelConfig], ...] = ()
    if role == "lac":
        peers = tuple((peer.address.sockaddr, cfg.tunnel_config(peer)) for peer in cfg.lac.lns)
    return Settings(
        role=role,
        listen=l2.listen.sockaddr,
        tunnel=cfg.tunnel_config(),
        control_socket=str(cfg.control.socket),
        lns_peers=peers,
        allowed_peers=tuple(l2.allowed_peers),
        max_tunnels=l2.max_tunnels,
        max_sessions=l2.max_sessions,
        queue_depth=l2.queue_depth,
        limits=cfg.endpoint_limits(),
        history=cfg.log.history,
        metrics_listen=cfg.metrics.listen.sockaddr if cfg.metrics.listen is not None else None,
        policies=cfg.policies() if role == "lns" else None,
    )


def resolve_dataplane(kind: str) -> str:
    """``kernel`` or ``null`` for the configured kind; ``auto`` picks, and says so loudly.

    Exits 1 with one line saying what to load when ``kernel`` is asked for and missing.
    """
    if kind == "null":
        return "null"
    from kl2tp.dataplane.capability import check_kernel

    problem = check_kernel()
    if problem is None:
        return "kernel"
    if kind == "kernel":
        print(f'kl2tp: [dataplane] kind = "kernel", but {problem}', file=sys.stderr)
        raise SystemExit(1)
    log.warning("*** %s", problem)
    log.warning('*** [dataplane] kind = "auto": using the NULL data plane. Sessions signal,')
    log.warning("*** PPP runs in userspace, and no kernel interface or route is created.")
    return "null"


async def open_dataplane(
    kind: str, cfg: cfgmod.Config, role: str, *, instance: str | None = None
) -> DataPlane:
    """Open the back end ``resolve_dataplane`` chose (``instance`` names its kernel journal;
    default ``kl2tp-ROLE``)."""
    if kind == "kernel":
        from kl2tp.dataplane.kernel import KernelDataPlane

        return await KernelDataPlane.open(
            instance=instance or f"kl2tp-{role}",
            ifname_template=cfg.dataplane.interface_template,
        )
    from kl2tp.dataplane.null import NullDataPlane

    return NullDataPlane()


def _authenticators(cfg: cfgmod.Config, role: str) -> dict[str, Any]:
    """The LNS's AAA back ends by ``[aaa] backend`` value: ``[aaa] backend``'s and every one
    a ``[[peer]]`` names; reads the users file before anything starts. Each accepts every
    method some policy demands (a session's link demands its own policy's)."""
    if role != "lns":
        return {}
    out: dict[str, Any] = {}
    for backend in sorted(cfg.backends):
        if backend == "radius":
            from kl2tp.aaa.radius.backend import RadiusAuthenticator

            out[backend] = RadiusAuthenticator.from_config(cfg)
        else:
            from kl2tp.aaa.local import LocalAuthenticator

            try:
                out[backend] = LocalAuthenticator.from_config(cfg)
            except cfgmod.ConfigError as exc:
                print(f"kl2tp-lns: config error: {exc}", file=sys.stderr)
                raise SystemExit(2) from None
        out[backend].methods = cfg.auth_methods
    return out


def _load(args: argparse.Namespace, role: cfgmod.Role) -> cfgmod.Config:
    try:
        if args.config:
            return cfgmod.load_config(args.config, role)
        return cfgmod.load_default(role)
    except cfgmod.ConfigError as exc:
        print(f"{role}: config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


# -- kl2tp-lns / kl2tp-lac ----------------------------------------------------------------------


def _daemon_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--config", "-c", help="TOML config file (default: the embedded default)")
    p.add_argument(
        "--debug",
        "-d",
        type=_debug_categories,
        help="debug categories: l2tp,ppp,aaa,kernel,daemon or all; add +avp for AVP parse lines",
    )
    p.add_argument(
        "--check-config",
        action="store_true",
        help="check the config (and users file), print OK or every error, exit 0 or 2",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    return p


def _debug_categories(text: str) -> str:
    """argparse type for --debug: a bad category is a usage error (exit 2)."""
    try:
        kl2tp_log.parse_categories(text)
    except kl2tp_log.UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def check_config(args: argparse.Namespace, role: cfgmod.Role) -> int:
    """``--check-config``: every error (config, then users file) or OK; exit 2 or 0."""
    errors = cfgmod.check_config(args.config, role) if args.config else []
    if not errors:
        cfg = _load(args, role)
        if role == "lns" and cfg.aaa.backend == "local":
            from kl2tp.aaa.local import load_users

            try:
                load_users(cfg.aaa.users_file)
            except cfgmod.ConfigError as exc:
                errors.append(exc)
    if errors:
        for error in errors:
            print(f"kl2tp-{role}: config error: {error}", file=sys.stderr)
        return 2
    print(f"{args.config or f'(embedded {role} default)'}: OK")
    return 0


def lns_main(argv: Sequence[str] | None = None) -> int:
    """kl2tp-lns."""
    from kl2tp.daemon.workers import WorkerSlot

    p = _daemon_parser("kl2tp-lns")
    # A worker of a supervisor (``[l2tp] workers``): INDEX/COUNT:UDP_FD:CHANNEL_FD.
    p.add_argument("--worker", type=WorkerSlot.parse, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.check_config:
        return check_config(args, "lns")
    cfg = _load(args, "lns")
    _setup_from(cfg, args, "kl2tp-lns")
    if args.worker is not None:
        return _run(cfg, "lns", args.config, worker=args.worker)
    count = lns_workers(cfg)
    if count > 1:
        return _supervise(cfg, args, count)
    return _run(cfg, "lns", args.config)


def lns_workers(cfg: cfgmod.Config) -> int:
    """The worker processes ``[l2tp] workers`` asks for (0: one per core, or one when a CoA
    server needs the one process)."""
    from kl2tp.daemon.workers import default_workers

    if cfg.l2tp.workers:
        return cfg.l2tp.workers
    return 1 if cfg.radius.coa_listen is not None else default_workers()


def worker_settings(settings: Settings, slot: WorkerSlot) -> Settings:
    """A worker's share of the daemon's settings: its slot, no control socket or metrics of
    its own (the supervisor's), the endpoint-wide limits divided between the workers."""
    from kl2tp.daemon.workers import share_limits

    max_tunnels, max_sessions, limits = share_limits(
        slot.count, settings.max_tunnels, settings.max_sessions, settings.limits
    )
    return attrs.evolve(
        settings,
        worker=slot,
        control_socket=None,
        metrics_listen=None,
        max_tunnels=max_tunnels,
        max_sessions=max_sessions,
        limits=limits,
    )


def _supervise(cfg: cfgmod.Config, args: argparse.Namespace, count: int) -> int:
    """kl2tp-lns with ``count`` workers: the supervisor (see kl2tp.daemon.workers)."""
    from kl2tp.daemon.control import serve_control
    from kl2tp.daemon.metrics import MetricsServer
    from kl2tp.daemon.notify import Notifier
    from kl2tp.daemon.service import StartupError, hostport
    from kl2tp.daemon.workers import Supervisor, worker_argv

    settings = settings_from_config(cfg, "lns")
    # What a worker would refuse to start with, refused here once, with its exit code:
    # a users file that does not load (2), a kernel data plane that is missing (1).
    _authenticators(cfg, "lns")
    resolve_dataplane(cfg.dataplane.kind)
    base = [
        *(["--config", args.config] if args.config else []),
        *(["--debug", args.debug] if args.debug else []),
    ]
    notifier = Notifier.from_env()

    async def main() -> None:
        try:
            sup = Supervisor(settings.listen, count, worker_argv(base))
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {hostport(*settings.listen)}: {exc.strerror or exc}"
            ) from None
        try:
            with trio.open_signal_receiver(
                signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1
            ) as signals:
                async with trio.open_nursery() as nursery:
                    await nursery.start(sup.run)
                    if settings.control_socket:
                        await nursery.start(serve_control, settings.control_socket, sup)
                    if settings.metrics_listen is not None:
                        await nursery.start(
                            MetricsServer(render=sup.metrics).serve, settings.metrics_listen
                        )
                    log.info(
                        "LNS listening on %s with %d workers", hostport(*sup.local_addr), count
                    )
                    nursery.start_soon(notifier.watchdog)
                    notifier.ready(f"LNS serving, {count} workers")
                    async for signum in signals:
                        if signum == signal.SIGHUP:
                            log.info("SIGHUP: reloading the configuration in every worker")
                            notifier.reloading()
                            result = await sup({"cmd": "reload", "what": "config"})
                            notifier.ready("reloaded")
                            log.info("reload: %s", "ok" if result.get("ok") else result)
                            continue
                        if signum == signal.SIGUSR1:
                            summary = await sup({"cmd": "show", "what": "summary"})
                            log.info("summary: %s", json.dumps(summary, sort_keys=True))
                            continue
                        log.info("%s: stopping the workers", signal.Signals(signum).name)
                        break
                    notifier.stopping()
                    await sup.stop(settings.shutdown_grace)
                    nursery.cancel_scope.cancel()
        finally:
            notifier.close()
            sup.close()

    try:
        trio.run(main)
    except (OSError, BaseExceptionGroup) as exc:
        return _fail("lns", exc)
    except Exception as exc:
        return _fail("lns", exc)
    return 0


def lac_main(argv: Sequence[str] | None = None) -> int:
    """kl2tp-lac."""
    p = _daemon_parser("kl2tp-lac")
    p.add_argument(
        "--simulate",
        type=int,
        nargs="?",
        const=0,
        metavar="N",
        help="place N calls (default: [subscriber] count), hold, clear, report",
    )
    p.add_argument(
        "--rate",
        type=float,
        metavar="R",
        help="calls started per second (default: [subscriber] rate, 100; 0: as fast as possible)",
    )
    p.add_argument(
        "--hold", type=float, default=None, metavar="SECONDS", help="hold time once all are up"
    )
    p.add_argument(
        "--tunnels",
        type=int,
        metavar="K",
        help="spread the calls over K tunnels (default: [subscriber] tunnels; one per LNS)",
    )
    p.add_argument(
        "--max-outstanding",
        type=int,
        metavar="M",
        help="at most M calls in setup at once (default: [subscriber] max_outstanding; 0: any)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="P",
        help="spread the calls and tunnels over P generator processes (one merged summary)",
    )
    p.add_argument(
        "--redial",
        type=float,
        metavar="SECONDS",
        help="a call that fails setup is placed again after ~SECONDS (jittered) until up",
    )
    p.add_argument(
        "--redial-max",
        type=float,
        metavar="SECONDS",
        help="with --redial: each failed attempt of a call doubles its pause, up to ~SECONDS "
        "(a subscriber that backs off; default: no doubling)",
    )
    p.add_argument("--part", help=argparse.SUPPRESS)  # I/P: one of --processes' children
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = p.parse_args(argv)
    if args.check_config:
        return check_config(args, "lac")
    if args.simulate is not None and args.simulate < 0:
        p.error("--simulate needs N >= 1")
    if args.rate is not None and (args.rate < 0 or not math.isfinite(args.rate)):
        p.error("--rate needs R >= 0")
    if args.tunnels is not None and not 0 < args.tunnels <= 65535:
        p.error("--tunnels needs 1 <= K <= 65535")
    if args.max_outstanding is not None and args.max_outstanding < 0:
        p.error("--max-outstanding needs M >= 0")
    if args.redial is not None and not (args.redial > 0 and math.isfinite(args.redial)):
        p.error("--redial needs SECONDS > 0")
    if args.redial_max is not None and not (
        args.redial is not None and args.redial <= args.redial_max < math.inf
    ):
        p.error("--redial-max needs --redial and SECONDS >= the --redial value")
    if args.processes < 1:
        p.error("--processes needs P >= 1")
    if args.part is not None:
        from kl2tp.lac.processes import parse_part

        try:
            args.part = parse_part(args.part)
        except ValueError as exc:
            p.error(str(exc))
    cfg = _load(args, "lac")
    _setup_from(cfg, args, "kl2tp-lac")
    if args.simulate is None:
        return _run(cfg, "lac", args.config)
    if args.simulate == 0:
        args.simulate = cfg.subscriber.count
    if args.processes > 1 and args.part is None:
        if args.processes > args.simulate:
            p.error("--processes needs P <= N calls")
        return _simulate_parts(cfg, args, list(sys.argv[1:] if argv is None else argv))
    return _simulate(cfg, args)


def _fail(role: str, exc: BaseException) -> int:
    """Print the one line of a start-up failure and return 1; re-raise anything else."""
    from kl2tp.daemon.service import startup_failure

    line = startup_failure(exc)
    if line is None:
        raise exc
    print(f"kl2tp-{role}: {line}", file=sys.stderr)
    return 1


def _run(
    cfg: cfgmod.Config, role: str, path: str | None = None, *, worker: WorkerSlot | None = None
) -> int:
    from kl2tp.aaa.pool import set_worker_share
    from kl2tp.daemon.notify import Notifier
    from kl2tp.daemon.ppp_session import lns_link_config, make_handler
    from kl2tp.daemon.reload import Reloader
    from kl2tp.daemon.service import run_daemon

    settings = settings_from_config(cfg, role)
    instance = f"kl2tp-{role}"
    if worker is not None:
        settings = worker_settings(settings, worker)
        set_worker_share(worker.index, worker.count)  # before any pool is built
        instance = f"kl2tp-{role}-w{worker.index}"  # its own kernel journal
    authenticators = _authenticators(cfg, role)
    authenticator = authenticators.get(cfg.aaa.backend)
    kind = resolve_dataplane(cfg.dataplane.kind)
    # A worker leaves systemd to the supervisor (it inherited NOTIFY_SOCKET).
    notifier = Notifier(None) if worker is not None else Notifier.from_env()
    reloader: Reloader | None = None
    if path is not None:
        load_users = None
        if role == "lns" and "local" in authenticators:
            from kl2tp.aaa.local import load_users as read_users

            def load_users(new: cfgmod.Config) -> Any:
                return read_users(new.aaa.users_file)

        reloader = Reloader(
            path,
            cfg,
            ident=f"kl2tp-{role}",
            notifier=notifier,
            load_users=load_users,
        )

    async def main() -> None:
        try:
            dataplane = await open_dataplane(kind, cfg, role, instance=instance)
        except DataPlaneError as exc:
            print(f"kl2tp-{role}: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        removed = await dataplane.cleanup_stale()
        if removed:
            log.warning("removed %d stale kernel objects left by an earlier kl2tp", removed)
        client = role == "lac" and cfg.lac.mode == "client"
        handler = make_handler(
            role, cfg, dataplane, authenticator, subscribers=client, authenticators=authenticators
        )
        dialer = None
        if role == "lac" and cfg.lac.mode == "pppoe":
            handler, dialer = _pppoe_access(cfg, dataplane, lambda: services)
        if client:
            from kl2tp.daemon.client import client_call, keep_call

            call = client_call(cfg.subscriber.calling_number, cfg.subscriber.called_number)

            async def dialer(endpoint: Endpoint) -> None:
                picker = await _tunnel_picker(cfg, endpoint, services)
                await keep_call(
                    endpoint,
                    settings.lns_peers,
                    call,
                    picker=picker,
                    username=cfg.subscriber.credentials(1)[0],
                )

        coa = _coa_server(cfg, handler) if role == "lns" else None
        # A back end with a life of its own (RADIUS: reply readers, accounting, Accounting-On
        # and -Off) runs around the daemon; so does the CoA server.
        async with contextlib.AsyncExitStack() as stack:
            for backend in authenticators.values():
                running = getattr(backend, "running", None)
                if running is not None:
                    await stack.enter_async_context(running())
            services = await stack.enter_async_context(trio.open_nursery())
            if coa is not None and cfg.radius.coa_listen is not None:
                from kl2tp.aaa.radius.coa import serve_coa

                await services.start(serve_coa, cfg.radius.coa_listen.sockaddr, coa)
            async with trio.open_nursery() as nursery:
                endpoint = await nursery.start(
                    functools.partial(
                        run_daemon,
                        settings,
                        dataplane,
                        handler,
                        dialer=dialer,
                        reload=reloader,
                        notifier=notifier,
                    )
                )
                if reloader is not None:
                    reloader.endpoint = endpoint
                    reloader.handler = handler
                    reloader.authenticator = authenticator
                    reloader.authenticators = authenticators
                    if role == "lns":
                        reloader.link_config = lns_link_config
            services.cancel_scope.cancel()

    _collect_rarely()
    try:
        trio.run(main)
    except (OSError, BaseExceptionGroup) as exc:
        return _fail(role, exc)
    except Exception as exc:
        return _fail(role, exc)
    return 0


def _collect_rarely() -> None:
    """Before a daemon's loop: what is loaded by now lives as long as the process, so the
    collector stops walking it (``gc.freeze``); and the young generation is collected
    every 10,000 allocations instead of 700. Calls leave little cyclic garbage (refcounts
    free the rest), and a collection's cost is what it walks: 53-77 -> 20-24 ms of
    collection in a 3,000-call burst (docs/PERFORMANCE.md section 20)."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _coa_server(cfg: cfgmod.Config, handler: Any) -> Any:
    """The RFC 5176 server's core when ``[radius] coa_listen`` is set (None otherwise); the
    LNS's sessions register with its index, and its counters join ``show summary``."""
    if cfg.radius.coa_listen is None:
        return None
    from kl2tp.aaa.radius.coa import CoaCore, SessionIndex, coa_clients
    from kl2tp.aaa.radius.dictionary import load_dictionary

    index = SessionIndex()
    core = CoaCore(
        coa_clients(cfg.radius.coa_client),
        index,
        load_dictionary(),
        nas_identifier=cfg.radius.nas_identifier or cfg.l2tp.hostname,
        limiter=_warn_limiter(),
    )
    handler.coa_index = index
    handler.coa = core
    return core


def _warn_limiter() -> Any:
    """The shared limiter for peer-caused warnings (a few lines a minute per reason)."""
    from kl2tp.ratelimit import WarnLimiter

    return WarnLimiter(per_reason_burst=5, interval=60.0)


def _simulate_plan(cfg: cfgmod.Config, args: argparse.Namespace, index: int, of: int) -> Any:
    """Part ``index`` of ``of`` of the ``--simulate`` run ``args`` asks for."""
    from kl2tp.lac.processes import part_of

    settings = settings_from_config(cfg, "lac")
    rate = args.rate if args.rate is not None else cfg.subscriber.rate
    outstanding = args.max_outstanding
    return part_of(
        index,
        of,
        calls=args.simulate,
        tunnels=args.tunnels or cfg.subscriber.tunnels or len(settings.lns_peers),
        rate=rate or 0.0,
        max_outstanding=outstanding if outstanding is not None else cfg.subscriber.max_outstanding,
    )


def _simulate_parts(cfg: cfgmod.Config, args: argparse.Namespace, argv: list[str]) -> int:
    """``--processes P``: P children each run their part; one merged summary."""
    from kl2tp.lac.processes import run_parts

    parts = [_simulate_plan(cfg, args, i, args.processes) for i in range(args.processes)]
    summary = run_parts(argv, parts)
    if args.json:
        print(json.dumps(summary))
    else:
        print(_format_summary(summary))
    return 0 if summary.get("established") == summary.get("requested") else 1


async def _part_barrier(index: int) -> None:
    """A ``--processes`` part: tell the parent this part's calls are up, wait for its go
    (a line on stdin, or stdin's end) before holding."""
    print(json.dumps({"part": index, "up": True}), flush=True)
    stream = trio.lowlevel.FdStream(os.dup(0))
    try:
        while True:
            chunk = await stream.receive_some(64)
            if not chunk or b"\n" in chunk:
                return
    finally:
        await stream.aclose()


def _simulate(cfg: cfgmod.Config, args: argparse.Namespace) -> int:
    from kl2tp.daemon.client import subscriber_call
    from kl2tp.daemon.control import serve_control
    from kl2tp.daemon.ppp_session import make_handler
    from kl2tp.daemon.service import ControlApi, StartupError, make_endpoint, simulate

    settings = settings_from_config(cfg, "lac")
    hold = args.hold if args.hold is not None else cfg.subscriber.hold
    summary: dict[str, Any] = {}
    index, of = args.part if args.part is not None else (0, 1)
    plan = _simulate_plan(cfg, args, index, of)
    if args.part is not None:
        from kl2tp.lac.processes import end_with_parent

        end_with_parent()
        # Each part binds its own port and serves no control socket (they would collide).
        settings = attrs.evolve(settings, listen=(settings.listen[0], 0), control_socket=None)

    # Simulated subscribers stay in userspace unless the config asks for the kernel by name
    # ("auto" means null here): then every one gets its own kernel session and pppN.
    kind = resolve_dataplane("kernel") if cfg.dataplane.kind == "kernel" else "null"

    async def main() -> None:
        try:
            dataplane = await open_dataplane(kind, cfg, "lac")
        except DataPlaneError as exc:
            print(f"kl2tp-lac: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        try:
            removed = await dataplane.cleanup_stale()
            if removed:
                log.warning("removed %d stale kernel objects left by an earlier kl2tp", removed)
            handler = make_handler("lac", cfg, dataplane, None, subscribers=cfg.subscriber.ppp)
            endpoint = make_endpoint(settings, dataplane, handler)
            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                try:
                    await nursery.start(endpoint.serve)
                except OSError as exc:
                    raise StartupError(f"cannot bind {settings.listen}: {exc.strerror}") from None
                if settings.control_socket:
                    # kl2tpctl can watch (and clear) the simulated calls.
                    await nursery.start(
                        serve_control, settings.control_socket, ControlApi(endpoint, dataplane)
                    )
                nursery.start_soon(_stop_on_signal, stop)
                picker = await _tunnel_picker(cfg, endpoint, nursery)
                lns = settings.lns_peers
                first = plan.first_tunnel
                peers = [lns[k % len(lns)] for k in range(first, first + plan.tunnels)]
                cpu0 = time.process_time()
                result = await simulate(
                    endpoint,
                    peers,
                    plan.count,
                    rate=plan.rate or None,
                    hold=hold,
                    call_factory=functools.partial(
                        subscriber_call,
                        calling_number=cfg.subscriber.calling_number,
                        called_number=cfg.subscriber.called_number,
                    ),
                    connect_factory=getattr(handler, "prepare_call", None),
                    stop=stop,
                    picker=picker,
                    username_of=lambda n: cfg.subscriber.credentials(n)[0],
                    max_outstanding=plan.max_outstanding,
                    first=plan.first,
                    redial=args.redial,
                    redial_max=args.redial_max,
                    barrier=(
                        functools.partial(_part_barrier, index) if args.part is not None else None
                    ),
                )
                result.cpu_s = time.process_time() - cpu0
                summary.update(result.summary())
                if args.part is not None:
                    summary["raw"] = result.raw(time.monotonic() - trio.current_time())
                summary["counters"] = dict(endpoint.counters)
                if picker is not None:
                    summary["selection"] = attrs.asdict(picker.counters)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await dataplane.aclose()

    _collect_rarely()
    try:
        trio.run(main)
    except (OSError, BaseExceptionGroup) as exc:
        return _fail("lac", exc)
    except Exception as exc:
        return _fail("lac", exc)
    if args.json:
        print(json.dumps(summary))
    else:
        print(_format_summary(summary))
    return 0 if summary.get("established") == summary.get("requested") else 1


def _pppoe_access(
    cfg: cfgmod.Config, dataplane: DataPlane, services: Callable[[], trio.Nursery]
) -> tuple[Any, Callable[[Endpoint], Awaitable[None]]]:
    """``[lac] mode = "pppoe"``: the relaying session handler and the access side, run as
    the daemon's dialer (subscribers dial in; every call asks tunnel selection)."""
    from kl2tp.access.lac import RelaySessions, access_from_config
    from kl2tp.access.port import PacketPort, PortError
    from kl2tp.daemon.service import StartupError

    handler = RelaySessions(dataplane)

    async def serve(endpoint: Endpoint) -> None:
        try:
            port = PacketPort.open(cfg.pppoe.interface)
        except PortError as exc:
            raise StartupError(str(exc)) from None
        try:
            picker = await _tunnel_picker(cfg, endpoint, services(), always=True)
            access = access_from_config(
                cfg, port, picker.tunnel_for, defer_connect=endpoint.defers_connect
            )
            handler.access = access
            log.info("PPPoE on %s (AC-Name %s)", port.name, access.server.config.ac_name)
            await access.serve()
        finally:
            port.close()

    return handler, serve


async def _tunnel_picker(
    cfg: cfgmod.Config, endpoint: Endpoint, nursery: trio.Nursery, *, always: bool = False
) -> Any:
    """LAC tunnel selection (``[[lac.route]]``, ``[lac] lookup``), None when it is off
    (unless ``always``: then ``[[lac.lns]]`` serves whoever no rule routes)."""
    if not cfg.lac.selects and not always:
        return None
    from kl2tp.lac.tunnels import TunnelPicker

    lookup = None
    if cfg.lac.lookup == "radius":
        from kl2tp.lac.lookup import radius_lookup

        lookup = await radius_lookup(cfg, nursery)
    return TunnelPicker.from_config(endpoint, cfg, lookup)


async def _stop_on_signal(stop: trio.Event) -> None:
    """SIGTERM/SIGINT end ``--simulate``'s hold early: calls are cleared and reported.
    SIGHUP and SIGUSR1 (a daemon's reload and summary) are logged and change nothing."""
    with trio.open_signal_receiver(
        signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1
    ) as signals:
        async for signum in signals:
            if signum in (signal.SIGHUP, signal.SIGUSR1):
                log.info("%s: ignored during --simulate", signal.Signals(signum).name)
                continue
            stop.set()
            return


def _format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"requested    {s['requested']}",
        f"established  {s['established']}",
        f"failed       {sum(s['failed'].values())}",
    ]
    for reason, n in sorted(s["failed"].items()):
        lines.append(f"  {reason}: {n}")
    lines.append(f"setup p50    {s['setup_ms']['p50']} ms")
    lines.append(f"setup p95    {s['setup_ms']['p95']} ms")
    lines.append(f"setup p99    {s['setup_ms']['p99']} ms")
    lines.append(f"calls/s      {s['cps']}")
    lines.append(f"tunnels      {s['tunnels']}")
    if s.get("processes"):
        lines.append(f"processes    {s['processes']}")
    if s.get("cpu_ms_per_call") is not None:
        lines.append(f"own CPU      {s['cpu_ms_per_call']} ms per call")
    return "\n".join(lines)


# -- kl2tpctl -----------------------------------------------------------------------------------

DEFAULT_SOCKET = "/run/kl2tp/lns.sock"

TUNNEL_COLUMNS = [
    "local_id",
    "peer_id",
    "peer_address",
    "peer_hostname",
    "policy",
    "state",
    "sessions",
    "uptime",
]
SESSION_COLUMNS = [
    "tunnel_id",
    "local_id",
    "peer_id",
    "state",
    "username",
    "address",
    "interface",
    "phase",
    "uptime",
]
HISTORY_COLUMNS = [
    "time",
    "tunnel_id",
    "session_id",
    "outcome",
    "user",
    "address",
    "lac",
    "duration",
    "cause",
]
LIST_COLUMNS = {"tunnels": TUNNEL_COLUMNS, "sessions": SESSION_COLUMNS, "history": HISTORY_COLUMNS}
"""The default columns of each ``show`` that prints a table (``-o`` picks others)."""
COLUMN_ALIASES = {
    "user": "username",
    "sid": "local_id",
    "tid": "tunnel_id",
    "tunnel": "tunnel_id",
    "session": "local_id",
    "peer": "peer_address",
}
"""``-o`` accepts these short names too (accel-cmd's ``-o``)."""
DURATION_COLUMNS = frozenset({"uptime", "duration", "established_uptime"})
BYTE_COLUMNS = frozenset({"rx_bytes", "tx_bytes"})
KNOWN_COLUMNS = frozenset(
    {*TUNNEL_COLUMNS, *SESSION_COLUMNS, *HISTORY_COLUMNS, *DURATION_COLUMNS, *BYTE_COLUMNS}
)
"""Columns ``-o`` takes even when no row has them."""


def _ctl_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kl2tpctl")
    p.add_argument("--socket", "-s", default=DEFAULT_SOCKET, help="daemon control socket")
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = p.add_subparsers(dest="cmd", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_)
        c.add_argument("--version", action="version", version=f"kl2tpctl {version()}")
        c.add_argument("--json", action="store_true", help="print the answer as JSON")
        return c

    show = command("show", "show tunnels, sessions, a summary or the history")
    show.add_argument(
        "what", choices=["tunnels", "tunnel", "sessions", "session", "summary", "history"]
    )
    show.add_argument(
        "args",
        nargs="*",
        help="tunnel TID; session TID SID; sessions [FILTER VALUE]... (filters: "
        "user, peer, tunnel, state, address, interface); history [N]",
    )
    show.add_argument("-o", "--output", help="columns of a table, e.g. user,address,uptime")
    clear = command("clear", "clear sessions or tunnels")
    clear.add_argument("what", choices=["session", "tunnel", "user", "address", "peer", "all"])
    clear.add_argument("args", nargs="*", help="TID [SID], NAME, ADDRESS or PEER")
    clear.add_argument("--yes", "-y", action="store_true", help="clear all without asking")
    command("drain", "accept no new tunnels or sessions; keep the existing")
    command("undrain", "accept new tunnels and sessions again")
    command("reload", "re-read the configuration and the users file")
    debug = command("debug", "turn debug categories on or off, or limit them to one subscriber")
    debug.add_argument(
        "args",
        nargs="*",
        help="CATEGORIES on|off  |  condition user NAME|peer ADDR|tunnel TID|clear  |  (nothing)",
    )
    sub.add_parser("decode", help="decode an L2TP packet given as hex (see kl2tpctl decode -h)")
    return p


def ctl_main(argv: Sequence[str] | None = None) -> int:
    """kl2tpctl."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["decode"]:
        if "--version" in argv[1:]:
            print(f"kl2tpctl {version()}")
            return 0
        from kl2tp.decode_cmd import main as decode_main

        return decode_main(argv[1:])
    p = _ctl_parser()
    args = p.parse_args(argv)
    try:
        req = _ctl_request(args)
    except ValueError as exc:
        p.error(str(exc))
    if req is None:
        return 1
    from kl2tp.daemon.control import ControlError, request

    try:
        result = request(args.socket, req)
    except (OSError, ControlError) as exc:
        print(f"kl2tpctl: {args.socket}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
        return 0
    try:
        print(_human(args, result))
    except ValueError as exc:
        p.error(str(exc))
    if args.cmd == "reload" and not result.get("ok"):
        return 1
    return 0


def _ctl_request(args: argparse.Namespace) -> dict[str, Any] | None:
    """The request for a parsed kl2tpctl command line; None when the user said no.

    Raises:
        ValueError: bad arguments (a usage error).
    """
    cmd = args.cmd
    rest: list[str] = list(getattr(args, "args", []) or [])
    if cmd in ("drain", "undrain"):
        return {"cmd": "drain", "what": "on" if cmd == "drain" else "off"}
    if cmd == "reload":
        return {"cmd": "reload", "what": "config"}
    if cmd == "debug":
        if not rest:
            return {"cmd": "debug", "what": "show"}
        if rest[0] == "condition":
            if rest[1:] == ["clear"]:
                return {"cmd": "debug", "what": "condition", "kind": "clear"}
            if len(rest) != 3 or rest[1] not in ("user", "peer", "tunnel"):
                raise ValueError("debug condition user NAME | peer ADDR | tunnel TID | clear")
            return {"cmd": "debug", "what": "condition", "kind": rest[1], "value": rest[2]}
        if len(rest) != 2 or rest[1] not in ("on", "off"):
            raise ValueError("debug CATEGORIES on|off (categories: l2tp,ppp,aaa,kernel,daemon,all)")
        try:
            kl2tp_log.parse_categories(rest[0])
        except kl2tp_log.UsageError as exc:
            raise ValueError(str(exc)) from None
        return {"cmd": "debug", "what": "categories", "categories": rest[0], "on": rest[1] == "on"}
    what = args.what
    req: dict[str, Any] = {"cmd": cmd, "what": what}
    if cmd == "show":
        if what in ("tunnel", "session"):
            need = 1 if what == "tunnel" else 2
            if len(rest) != need or not all(a.isdigit() for a in rest):
                raise ValueError(f"show {what} needs {'TID' if need == 1 else 'TID SID'}")
            req["tunnel"] = int(rest[0])
            if what == "session":
                req["session"] = int(rest[1])
        elif what == "sessions":
            if len(rest) % 2:
                raise ValueError("show sessions takes FILTER VALUE pairs")
            filters = dict(zip(rest[::2], rest[1::2], strict=True))
            from kl2tp.daemon.service import SESSION_FILTERS

            for name in filters:
                if name not in SESSION_FILTERS:
                    raise ValueError(
                        f"unknown filter {name!r} (choose from {', '.join(SESSION_FILTERS)})"
                    )
            req["filters"] = filters
        elif what == "history":
            if len(rest) > 1 or (rest and not rest[0].isdigit()):
                raise ValueError("show history [N]")
            if rest:
                req["count"] = int(rest[0])
        elif rest:
            raise ValueError(f"show {what} takes no arguments")
        return req
    # clear
    if what == "session":
        if len(rest) != 2 or not all(a.isdigit() for a in rest):
            raise ValueError("clear session TID SID")
        req.update(tunnel=int(rest[0]), session=int(rest[1]))
    elif what == "tunnel":
        if len(rest) != 1 or not rest[0].isdigit():
            raise ValueError("clear tunnel TID")
        req["tunnel"] = int(rest[0])
    elif what == "all":
        if rest:
            raise ValueError("clear all takes no arguments")
        if not args.yes:
            if not sys.stdin.isatty():
                print("kl2tpctl: clear all: add --yes to clear every tunnel", file=sys.stderr)
                return None
            answer = input("Clear ALL tunnels and sessions? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing cleared", file=sys.stderr)
                return None
    else:
        if len(rest) != 1:
            raise ValueError(f"clear {what} {what.upper()}")
        req["value"] = rest[0]
    return req


def human_duration(seconds: float | None) -> str:
    """``3d04h`` / ``1h02m`` / ``5m07s`` / ``12s``: uptimes as IOS shows them."""
    if seconds is None:
        return "-"
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def human_bytes(n: int | None) -> str:
    """``1.5 MiB``-style byte counts."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _cell(column: str, value: Any) -> str:
    if value is None or value == "":
        return "-"
    if column in DURATION_COLUMNS and isinstance(value, int | float):
        return human_duration(value)
    if column in BYTE_COLUMNS and isinstance(value, int):
        return human_bytes(value)
    if column == "time" and isinstance(value, int | float):
        return time.strftime("%b %d %Y %H:%M:%S", time.localtime(value))
    return kl2tp_log.escape(value)


def _columns(spec: str | None, default: list[str]) -> list[str]:
    """``-o user,address,uptime``: the columns asked for, as the user named them."""
    if not spec:
        return default
    cols = [c.strip() for c in spec.split(",") if c.strip()]
    if not cols:
        raise ValueError("-o needs at least one column")
    return cols


def table(rows: list[dict[str, Any]], cols: list[str], *, chosen: bool = False) -> str:
    """Rows as aligned columns with a header (short names in ``COLUMN_ALIASES`` work).

    Raises:
        ValueError: ``chosen`` (the user's ``-o``) and a column that is neither documented
            nor in any row (a typo), naming the ones there are.
    """
    keys = [COLUMN_ALIASES.get(c, c) for c in cols]
    if rows and chosen:
        # A column may be missing from every row and still be right (rx_bytes on the null
        # data plane): the documented ones count as known too.
        known = set().union(KNOWN_COLUMNS, *(r.keys() for r in rows))
        unknown = [c for c, k in zip(cols, keys, strict=True) if k not in known]
        if unknown:
            raise ValueError(
                f"unknown column {', '.join(unknown)} (columns: {', '.join(sorted(known))})"
            )
    cells = [[_cell(k, r.get(k)) for k in keys] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    out += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(out)


def _detail(obj: dict[str, Any], indent: str = "") -> list[str]:
    lines = []
    for key, value in obj.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.extend(_detail(value, indent + "  "))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            continue
        else:
            lines.append(f"{indent}{key:<20} {_cell(key, value)}")
    return lines


def _human(args: argparse.Namespace, result: Any) -> str:
    cmd = args.cmd
    if cmd == "show":
        what = args.what
        if what == "summary":
            return _format_summary_show(result)
        if what in LIST_COLUMNS:
            columns = _columns(args.output, LIST_COLUMNS[what])
            return table(result, columns, chosen=bool(args.output))
        lines = _detail(result)
        if what == "tunnel":
            lines.append("")
            lines.append(table(result.get("session_list", []), SESSION_COLUMNS))
        return "\n".join(lines)
    if cmd == "clear":
        cleared = result["cleared"]
        if isinstance(cleared, dict):
            if "sessions" in cleared:
                return f"cleared {len(cleared['sessions'])} sessions"
            return f"cleared {cleared['tunnels']} tunnels"
        return f"cleared {args.what} " + " ".join(str(v) for v in _listify(cleared))
    if cmd in ("drain", "undrain"):
        return "draining: no new tunnels or sessions" if result["draining"] else "not draining"
    if cmd == "reload":
        if not result.get("ok"):
            return "reload refused, running configuration kept:\n" + "\n".join(
                f"  {e}" for e in result.get("errors", [])
            )
        lines = [f"reloaded; applied: {', '.join(result['applied']) or 'nothing'}"]
        if result["restart_needed"]:
            lines.append(f"needs a restart: {', '.join(result['restart_needed'])}")
        return "\n".join(lines)
    if cmd == "debug":
        cond = result.get("condition")
        lines = [f"{name:<8} {result[name]}" for name in kl2tp_log.CATEGORIES]
        lines.append("condition " + (f"{cond['kind']} {cond['value']}" if cond else "none"))
        return "\n".join(lines)
    return json.dumps(result)


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _format_summary_show(result: Any) -> str:
    t, s = result["tunnels"], result["sessions"]
    lines = [
        f"role {result['role']}, data plane {result['dataplane']}"
        + (", DRAINING" if result.get("draining") else ""),
        f"tunnels  {t['total']}  " + _pairs(sorted(t["by_state"].items())),
        f"sessions {s['total']}  " + _pairs(sorted(s["by_state"].items())),
    ]
    for name in ("kernel", "counters", "events"):
        if result.get(name):
            lines.append(f"{name:<8} " + _pairs(sorted(result[name].items())))
    if result.get("ppp"):
        # Sessions, AAA, setup timeouts, refusals, CoA: nested counters as dotted names.
        lines.append("ppp      " + _pairs(_flatten(result["ppp"])))
    setup = result.get("setup")
    if setup:
        # Call setups and failures by reason; the per-policy figures are in --json.
        brief = {k: setup[k] for k in ("attempts", "successes", "failures", "latency")}
        lines.append("setup    " + _pairs(_flatten(brief)))
    policies = result.get("policies") or {}
    if len(policies) > 1:  # [[peer]] tables: one line each (the default alone says nothing new)
        for name, counts in policies.items():
            lines.append(f"policy   {name} " + _pairs(counts.items()))
    for worker in result.get("workers") or ():  # [l2tp] workers: one line each
        state = "up" if worker.get("up") else "restarting"
        lines.append(
            f"worker   {worker.get('index')} pid={worker.get('pid')} {state} "
            f"restarts={worker.get('restarts')}"
        )
    return "\n".join(lines)


def _pairs(pairs: Iterable[tuple[str, Any]]) -> str:
    return " ".join(f"{k}={v}" for k, v in pairs)


def _flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"aaa": {"accepts": 3}}`` -> ``[("aaa.accepts", 3)]``, sorted by name."""
    out: list[tuple[str, Any]] = []
    for key, value in sorted(values.items()):
        name = f"{prefix}{key}"
        if key == "buckets":
            continue  # a histogram's buckets: its count and sum are shown, the rest in --json
        if isinstance(value, dict):
            out.extend(_flatten(value, f"{name}."))
        else:
            out.append((name, kl2tp_log.escape(value)))
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(ctl_main())
