"""Command lines: kl2tp-lns, kl2tp-lac, kl2tpctl.

Exit codes: 0 success, 1 runtime failure (e.g. a simulation with failed calls, a daemon
that could not bind), 2 bad usage or a bad config (one line naming the file, key, problem).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

import trio

from kl2tp import config as cfgmod
from kl2tp.daemon.endpoint import Endpoint
from kl2tp.daemon.handle import Address
from kl2tp.daemon.service import Settings
from kl2tp.dataplane.base import DataPlane, DataPlaneError
from kl2tp.l2tp.tunnel import TunnelConfig

CATEGORIES = ("l2tp", "ppp", "aaa", "kernel", "daemon")
AVP_LEVEL = 5
"""Log level below DEBUG for per-AVP parse lines (``--debug l2tp+avp``)."""

log = logging.getLogger("kl2tp.daemon")


# -- logging ------------------------------------------------------------------------------------


def setup_logging(debug: str | None, level: str = "info", categories: Sequence[str] = ()) -> None:
    """IOS-style timestamps; ``debug`` is a comma list of categories, ``all``, or ``+avp``.

    ``categories`` (from ``[log] categories``) are debugged too; the command line adds to them.
    """
    debug = ",".join([*categories, *([debug] if debug else [])])
    logging.addLevelName(AVP_LEVEL, "AVP")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s.%(msecs)03d: %(message)s", datefmt="%b %d %H:%M:%S")
    )
    root = logging.getLogger("kl2tp")
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    root.propagate = False
    if not debug:
        return
    avp = False
    names: list[str] = []
    for word in debug.replace("+", ",").split(","):
        word = word.strip()
        if not word:
            continue
        if word == "avp":
            avp = True
        elif word == "all":
            names.extend(CATEGORIES)
        elif word in CATEGORIES:
            names.append(word)
        else:
            raise SystemExit(
                f"--debug: unknown category {word!r} "
                f"(choose from {', '.join(CATEGORIES)}, all, avp)"
            )
    for name in names or ["l2tp"]:
        logging.getLogger(f"kl2tp.{name}").setLevel(AVP_LEVEL if avp else logging.DEBUG)


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


async def open_dataplane(kind: str, cfg: cfgmod.Config, role: str) -> DataPlane:
    """Open the back end ``resolve_dataplane`` chose."""
    if kind == "kernel":
        from kl2tp.dataplane.kernel import KernelDataPlane

        return await KernelDataPlane.open(
            instance=f"kl2tp-{role}", ifname_template=cfg.dataplane.interface_template
        )
    from kl2tp.dataplane.null import NullDataPlane

    return NullDataPlane()


def _authenticator(cfg: cfgmod.Config, role: str) -> Any:
    """The AAA back end (the LNS's); reads the users file before anything starts."""
    if role != "lns":
        return None
    if cfg.aaa.backend != "local":
        print(
            f'kl2tp-lns: [aaa] backend = "{cfg.aaa.backend}" is not available yet', file=sys.stderr
        )
        raise SystemExit(2)
    from kl2tp.aaa.local import LocalAuthenticator

    try:
        return LocalAuthenticator.from_config(cfg)
    except cfgmod.ConfigError as exc:
        print(f"kl2tp-lns: config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


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
        help="debug categories: l2tp,ppp,aaa,kernel,daemon or all; add +avp for AVP parse lines",
    )
    return p


def lns_main(argv: Sequence[str] | None = None) -> int:
    """kl2tp-lns."""
    args = _daemon_parser("kl2tp-lns").parse_args(argv)
    cfg = _load(args, "lns")
    setup_logging(args.debug, cfg.log.level, cfg.log.categories)
    return _run(cfg, "lns")


def lac_main(argv: Sequence[str] | None = None) -> int:
    """kl2tp-lac."""
    p = _daemon_parser("kl2tp-lac")
    p.add_argument("--simulate", type=int, metavar="N", help="place N calls, hold, clear, report")
    p.add_argument(
        "--rate", type=float, metavar="R", help="calls per second (default: as fast as possible)"
    )
    p.add_argument(
        "--hold", type=float, default=None, metavar="SECONDS", help="hold time once all are up"
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = p.parse_args(argv)
    cfg = _load(args, "lac")
    setup_logging(args.debug, cfg.log.level, cfg.log.categories)
    if args.simulate is None:
        return _run(cfg, "lac")
    if args.simulate < 1:
        p.error("--simulate needs N >= 1")
    return _simulate(cfg, args)


def _run(cfg: cfgmod.Config, role: str) -> int:
    from kl2tp.daemon.ppp_session import make_handler
    from kl2tp.daemon.service import run_daemon

    settings = settings_from_config(cfg, role)
    authenticator = _authenticator(cfg, role)
    kind = resolve_dataplane(cfg.dataplane.kind)

    async def main() -> None:
        try:
            dataplane = await open_dataplane(kind, cfg, role)
        except DataPlaneError as exc:
            print(f"kl2tp-{role}: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        removed = await dataplane.cleanup_stale()
        if removed:
            log.warning("removed %d stale kernel objects left by an earlier kl2tp", removed)
        client = role == "lac" and cfg.lac.mode == "client"
        handler = make_handler(role, cfg, dataplane, authenticator, subscribers=client)
        dialer = None
        if client:
            from kl2tp.daemon.client import client_call, keep_call

            call = client_call(cfg.subscriber.calling_number, cfg.subscriber.called_number)

            async def dialer(endpoint: Endpoint) -> None:
                await keep_call(endpoint, settings.lns_peers, call)

        await run_daemon(settings, dataplane, handler, dialer=dialer)

    try:
        trio.run(main)
    except OSError as exc:
        print(f"kl2tp-{role}: {exc}", file=sys.stderr)
        return 1
    return 0


def _simulate(cfg: cfgmod.Config, args: argparse.Namespace) -> int:
    from kl2tp.daemon.client import subscriber_call
    from kl2tp.daemon.ppp_session import make_handler
    from kl2tp.daemon.service import make_endpoint, simulate

    settings = settings_from_config(cfg, "lac")
    hold = args.hold if args.hold is not None else cfg.subscriber.hold
    summary: dict[str, Any] = {}

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
            handler = make_handler("lac", cfg, dataplane, None, subscribers=True)
            endpoint = make_endpoint(settings, dataplane, handler)
            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                await nursery.start(endpoint.serve)
                nursery.start_soon(_stop_on_signal, stop)
                rate = args.rate if args.rate is not None else (cfg.subscriber.rate or None)
                result = await simulate(
                    endpoint,
                    settings.lns_peers,
                    args.simulate,
                    rate=rate,
                    hold=hold,
                    call_factory=functools.partial(
                        subscriber_call,
                        calling_number=cfg.subscriber.calling_number,
                        called_number=cfg.subscriber.called_number,
                    ),
                    connect_factory=getattr(handler, "prepare_call", None),
                    stop=stop,
                )
                summary.update(result.summary())
                summary["counters"] = dict(endpoint.counters)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await dataplane.aclose()

    trio.run(main)
    if args.json:
        print(json.dumps(summary))
    else:
        print(_format_summary(summary))
    return 0 if summary.get("established") == summary.get("requested") else 1


async def _stop_on_signal(stop: trio.Event) -> None:
    """SIGTERM/SIGINT end ``--simulate``'s hold early: calls are cleared and reported."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
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
    lines.append(f"setup p99    {s['setup_ms']['p99']} ms")
    lines.append(f"calls/s      {s['cps']}")
    return "\n".join(lines)


# -- kl2tpctl -----------------------------------------------------------------------------------

DEFAULT_SOCKET = "/run/kl2tp/lns.sock"


def ctl_main(argv: Sequence[str] | None = None) -> int:
    """kl2tpctl."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["decode"]:
        from kl2tp.decode_cmd import main as decode_main

        return decode_main(argv[1:])
    p = argparse.ArgumentParser(prog="kl2tpctl")
    p.add_argument("--socket", "-s", default=DEFAULT_SOCKET, help="daemon control socket")
    sub = p.add_subparsers(dest="cmd", required=True)
    show = sub.add_parser("show", help="show tunnels, sessions or a summary")
    show.add_argument("what", choices=["tunnels", "sessions", "summary"])
    show.add_argument("--json", action="store_true")
    clear = sub.add_parser("clear", help="clear a tunnel or a session")
    clear_sub = clear.add_subparsers(dest="what", required=True)
    ct = clear_sub.add_parser("tunnel", help="StopCCN one tunnel and all its sessions")
    ct.add_argument("tunnel", type=int)
    ct.add_argument("--json", action="store_true")
    cs = clear_sub.add_parser("session", help="CDN one session")
    cs.add_argument("tunnel", type=int)
    cs.add_argument("session", type=int)
    cs.add_argument("--json", action="store_true")
    sub.add_parser("decode", help="decode an L2TP packet given as hex (see kl2tpctl decode -h)")
    args = p.parse_args(argv)

    from kl2tp.daemon.control import ControlError, request

    req: dict[str, Any] = {"cmd": args.cmd, "what": args.what}
    if args.cmd == "clear":
        req["tunnel"] = args.tunnel
        if args.what == "session":
            req["session"] = args.session
    try:
        result = request(args.socket, req)
    except (OSError, ControlError) as exc:
        print(f"kl2tpctl: {args.socket}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    elif args.cmd == "show":
        print(_format_show(args.what, result))
    else:
        print(f"cleared {args.what} " + " ".join(str(v) for v in _listify(result["cleared"])))
    return 0


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _format_show(what: str, result: Any) -> str:
    if what == "summary":
        t, s = result["tunnels"], result["sessions"]
        lines = [
            f"role {result['role']}, data plane {result['dataplane']}",
            f"tunnels  {t['total']}  "
            + " ".join(f"{k}={v}" for k, v in sorted(t["by_state"].items())),
            f"sessions {s['total']}  "
            + " ".join(f"{k}={v}" for k, v in sorted(s["by_state"].items())),
        ]
        if result.get("kernel"):
            lines.append(
                "kernel   " + " ".join(f"{k}={v}" for k, v in sorted(result["kernel"].items()))
            )
        if result.get("counters"):
            lines.append(
                "counters " + " ".join(f"{k}={v}" for k, v in sorted(result["counters"].items()))
            )
        return "\n".join(lines)
    if what == "tunnels":
        cols = [
            "local_id",
            "peer_id",
            "peer_address",
            "peer_hostname",
            "state",
            "sessions",
            "uptime",
        ]
    else:
        cols = [
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
    rows = [[str(r.get(c, "-")) for c in cols] for r in result]
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(ctl_main())
