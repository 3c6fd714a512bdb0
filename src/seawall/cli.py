"""The ``seawall`` command: run | keys | check-config | mock-upstream | usage | surge | slo | incidents."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seawall.config import Config
    from seawall.edges.stores import KeyAdmin

__all__ = ["main"]


def _load(path: str | None) -> Config:
    from seawall.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"seawall: invalid config: {'; '.join(exc.problems)}", file=sys.stderr)
        raise SystemExit(2) from None


def _config_arg(args: argparse.Namespace) -> str | None:
    return args.config or os.environ.get("SEAWALL_CONFIG") or None


def cmd_check_config(args: argparse.Namespace) -> int:
    from seawall.config import ConfigError, load_config

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        print(f"{len(exc.problems)} problem(s) in {args.file}", file=sys.stderr)
        return 1
    deployments = sum(len(m.deployments) for m in config.models)
    print(f"{args.file}: OK ({len(config.models)} models, {deployments} deployments, "
          f"{len(config.tiers)} tiers, {len(config.tenants)} tenants)")
    return 0


def _store(args: argparse.Namespace) -> tuple[Config, KeyAdmin]:
    from seawall.edges.stores import key_store_for

    config = _load(_config_arg(args))
    return config, key_store_for(config)  # PostgreSQL when database_url is set, else SQLite


def create_key(config: Config, store: KeyAdmin, tenant: str, tier: str | None, models: list[str] | None,
               name: str | None = None) -> tuple[str, str, str]:
    """Create a key; returns (key_id, key, tier). The plaintext key exists only in the return value."""
    from seawall.auth.keys import KeyRecord, hash_key, new_key
    from seawall.env import SystemRng

    tier = tier or config.tenant_tier(tenant)
    if tier is None:
        raise ValueError(f"tenant '{tenant}' has no tier in the config; pass --tier")
    config.criticality_of(tier)  # KeyError if unknown
    key_id, key = new_key(SystemRng().token_hex)
    store.insert(KeyRecord(key_id=key_id, key_hash=hash_key(key), tenant=tenant, tier=tier,
                           models=frozenset(models) if models else None, created_at=time.time(),
                           name=name))
    return key_id, key, tier


def cmd_keys(args: argparse.Namespace) -> int:
    config, store = _store(args)
    try:
        return _keys_action(args, config, store)
    except (OSError, TimeoutError) as exc:  # the key store (PostgreSQL) is unreachable
        print(f"seawall: key store unreachable: {exc}", file=sys.stderr)
        return 1


def _keys_action(args: argparse.Namespace, config: Config, store: KeyAdmin) -> int:
    if args.action == "create":
        models = [m for m in (args.models or "").split(",") if m] or None
        try:
            key_id, key, tier = create_key(config, store, args.tenant, args.tier, models, args.name)
        except (ValueError, KeyError) as exc:
            print(f"seawall: {str(exc).strip(chr(39))}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps({"key_id": key_id, "key": key, "tenant": args.tenant, "tier": tier}))
        else:
            print(f"created key {key_id} for tenant {args.tenant} (tier {tier})")
            print(f"  {key}")
            print("  (shown once: only its hash is stored)")
        return 0
    if args.action == "list":
        _, records = store.load_sync()
        if args.json:
            print(json.dumps([{
                "key_id": r.key_id, "tenant": r.tenant, "tier": r.tier,
                "models": sorted(r.models) if r.models else "*", "name": r.name,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.created_at)),
                "revoked": r.revoked_at is not None} for r in records]))
        else:
            print(f"{'KEY ID':14} {'TENANT':20} {'TIER':12} {'STATE':8} MODELS")
            for r in records:
                allowed = ",".join(sorted(r.models)) if r.models else "*"
                state = "revoked" if r.revoked_at is not None else "active"
                print(f"{r.key_id:14} {r.tenant:20} {r.tier:12} {state:8} {allowed}")
        return 0
    if args.action == "revoke":
        from seawall.auth.keys import split_key

        key_id = split_key(args.key_id) or args.key_id
        if store.revoke(key_id, time.time()):
            print(f"revoked {key_id}")
            return 0
        print(f"seawall: no active key {key_id}", file=sys.stderr)
        return 1
    return 2


def cmd_usage(args: argparse.Namespace) -> int:
    from seawall.edges.stores import usage_summary

    config = _load(_config_arg(args))
    by = tuple(b for b in args.by.split(",") if b)
    bad = [b for b in by if b not in ("tenant", "model", "tier", "day")]
    if bad or not by:
        print(f"seawall: --by takes tenant,model,tier,day (got {args.by!r})", file=sys.stderr)
        return 2
    since = time.time() - args.days * 86400 if args.days else None
    rows = usage_summary(config, by, since)
    if args.json:
        print(json.dumps(rows))
        return 0
    header = [*by, "requests", "errors", "tokens_in", "tokens_out", "avg_latency_s", "guard_blocked",
              "guard_degraded"]
    print("  ".join(f"{h:>14}" for h in header))
    for row in rows:
        print("  ".join(f"{row[h]!s:>14}" for h in header))
    return 0


def ensure_demo_keys(config: Config, store: KeyAdmin) -> list[tuple[str, str, str]]:
    """On first start (no keys at all), one demo key per tier; returns (tier, tenant, key)."""
    if store.count() > 0:
        return []
    out = []
    for tier in config.tiers:
        tenant = next((t.name for t in config.tenants if t.tier == tier.name), f"demo-{tier.name}")
        _, key, _ = create_key(config, store, tenant, tier.name, None, name="demo")
        out.append((tier.name, tenant, key))
    return out


def _banner(config: Config, host: str, port: int, demo: list[tuple[str, str, str]]) -> None:
    chat = next((m.name for m in config.models if m.kind == "chat"), config.models[0].name)
    url = f"http://{host}:{port}"
    print(f"seawall listening on {url} ({len(config.models)} models: "
          f"{', '.join(m.name for m in config.models)})", flush=True)
    if not demo:
        print("keys: see `seawall keys list`; create one with `seawall keys create --tenant T --tier T`")
        return
    print("\nDemo keys (shown once; only hashes are stored):")
    for tier, tenant, key in demo:
        print(f"  {tier:12} {tenant:18} {key}")
    key = demo[0][2]
    print(f"""
Try it:
  curl {url}/v1/chat/completions -H 'Authorization: Bearer {key}' \\
       -H 'Content-Type: application/json' \\
       -d '{{"model": "{chat}", "messages": [{{"role": "user", "content": "Hello"}}]}}'

  python -c "from openai import OpenAI; c = OpenAI(base_url='{url}/v1', api_key='{key}'); \\
print(c.chat.completions.create(model='{chat}', \\
messages=[{{'role': 'user', 'content': 'Hello'}}]).choices[0].message.content)"
""", flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from seawall.config.stack import build_runtime
    from seawall.edges.server import GatewayApp, HttpProtocol

    logging.basicConfig(level=os.environ.get("SEAWALL_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _load(_config_arg(args))
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    lane = None
    if args.lane is not None:
        lane = next((ln for ln in config.server.lanes if ln.name == args.lane), None)
        if lane is None:
            print(f"seawall: no lane named {args.lane!r} in the config", file=sys.stderr)
            return 2
        port = lane.port
    if args.workers > 1 and lane is None:
        return _run_workers(args, config, host, port)
    try:
        runtime = build_runtime(config)
    except ValueError as exc:
        print(f"seawall: invalid config: {exc}", file=sys.stderr)
        return 2
    runtime.lane = lane
    demo = ensure_demo_keys(config, runtime.store) if not args.no_demo_keys and lane is None else []
    if lane is None:
        _banner(config, host, port, demo)
    children = [] if lane is not None else _start_lanes(args, config)
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover
        loop = "asyncio"
    server_config = uvicorn.Config(
        GatewayApp(runtime, tune_gc=True), host=host, port=port, loop=loop, http=HttpProtocol, lifespan="on",
        access_log=False, log_level=os.environ.get("SEAWALL_LOG_LEVEL", "warning").lower(),
        timeout_keep_alive=30, backlog=4096, server_header=False, date_header=False,
        proxy_headers=False,
    )
    try:
        uvicorn.Server(server_config).run()
    finally:
        _stop_children(children)
    return 0


def _run_workers(args: argparse.Namespace, config: Config, host: str, port: int) -> int:
    """``--workers N``: N processes accept on one port (uvicorn's supervisor binds it once and
    shares it); each builds its own runtime from the same config, and they share state the way
    replicas do (Redis quotas, or local quotas at 1/N each; keys and ledger in the shared store)."""
    import uvicorn

    from seawall.edges.server import HttpProtocol
    from seawall.edges.stores import key_store_for

    demo = ensure_demo_keys(config, key_store_for(config)) if not args.no_demo_keys else []
    _banner(config, host, port, demo)
    children = _start_lanes(args, config)
    path = _config_arg(args)
    if path:
        os.environ["SEAWALL_CONFIG"] = os.path.abspath(path)
    os.environ["SEAWALL_WORKERS"] = str(args.workers)
    try:
        uvicorn.run(
            "seawall.cli:worker_app", factory=True, workers=args.workers, host=host, port=port,
            loop="uvloop" if sys.platform != "win32" else "asyncio", http=HttpProtocol, lifespan="on",
            access_log=False, log_level=os.environ.get("SEAWALL_LOG_LEVEL", "warning").lower(),
            timeout_keep_alive=30, backlog=4096, server_header=False, date_header=False, proxy_headers=False,
        )
    finally:
        _stop_children(children)
    return 0


def worker_app() -> object:
    """uvicorn's app factory in each ``--workers`` process (config from ``$SEAWALL_CONFIG``)."""
    import logging

    from seawall.config.stack import build_runtime
    from seawall.edges.server import GatewayApp

    logging.basicConfig(level=os.environ.get("SEAWALL_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    config = _load(os.environ.get("SEAWALL_CONFIG") or None)
    return GatewayApp(build_runtime(config, processes=int(os.environ.get("SEAWALL_WORKERS", "1"))), tune_gc=True)


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()


def _die_with_parent() -> None:
    """In a lane child: ask Linux to SIGTERM us when the parent dies, however it dies (uvicorn
    re-raises SIGTERM after its graceful shutdown, which skips the parent's own clean-up)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _start_lanes(args: argparse.Namespace, config: Config) -> list[subprocess.Popen[bytes]]:
    """One process per lane: its own event loop and CPU time (a bulkhead against floods)."""
    children = []
    for lane in config.server.lanes:
        cmd = [sys.executable, "-m", "seawall", "run", "--lane", lane.name, "--no-demo-keys"]
        if _config_arg(args):
            cmd += ["-c", str(_config_arg(args))]
        if args.host:
            cmd += ["--host", args.host]
        children.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent))
        print(f"lane {lane.name!r} ({lane.min_criticality} and above) on port {lane.port}", flush=True)
    return children


def cmd_mock(args: argparse.Namespace) -> int:
    from seawall.mock.app import run_mock
    from seawall.mock.args import mock_config_from_args

    try:
        config = mock_config_from_args(args)
    except ValueError as exc:
        print(f"seawall: invalid mock config: {exc}", file=sys.stderr)
        return 2
    run_mock(config, args.host, args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seawall", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway")
    run.add_argument("--config", "-c", help="YAML config (default: $SEAWALL_CONFIG or the embedded default)")
    run.add_argument("--host")
    run.add_argument("--port", type=int)
    run.add_argument("--no-demo-keys", action="store_true", help="do not create demo keys on first start")
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="worker processes accepting on the one port (default 1)")
    run.add_argument("--lane", help=argparse.SUPPRESS)  # internal: serve one lane of server.lanes
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate a config file and list every problem")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)

    keys = sub.add_parser("keys", help="create, list or revoke API keys")
    keys.add_argument("--config", "-c")
    ksub = keys.add_subparsers(dest="action", required=True)
    create = ksub.add_parser("create")
    create.add_argument("--tenant", required=True)
    create.add_argument("--tier")
    create.add_argument("--models", help="comma-separated model names (default: all)")
    create.add_argument("--name")
    create.add_argument("--json", action="store_true")
    lst = ksub.add_parser("list")
    lst.add_argument("--json", action="store_true")
    revoke = ksub.add_parser("revoke")
    revoke.add_argument("key_id", help="key id (or the whole key)")
    for p in (create, lst, revoke):
        p.add_argument("--config", "-c", default=argparse.SUPPRESS)
    keys.set_defaults(func=cmd_keys)

    usage = sub.add_parser("usage", help="summarise the usage ledger")
    usage.add_argument("--config", "-c")
    usage.add_argument("--by", default="tenant,model,tier,day", help="grouping (tenant,model,tier,day)")
    usage.add_argument("--days", type=float, help="only the last N days")
    usage.add_argument("--json", action="store_true")
    usage.set_defaults(func=cmd_usage)

    mock = sub.add_parser("mock-upstream", help="run the simulated OpenAI-compatible upstream")
    from seawall.mock.args import add_mock_arguments

    add_mock_arguments(mock)
    mock.set_defaults(func=cmd_mock)
    from seawall.surge.cli import add_parser as add_surge_parser

    add_surge_parser(sub)
    from seawall.slo.cli import add_parsers as add_slo_parsers

    add_slo_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
