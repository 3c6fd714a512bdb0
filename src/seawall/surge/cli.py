"""``seawall surge sim | run | plan | list``: the surge lab's commands.

    seawall surge sim scandal-surge --replicas 8 --seed 1 --compare naive --out report/
    seawall surge run scandal-surge --spawn --time-scale 0.05 --load-scale 0.1 --compare naive --out live/
    seawall surge run my.yaml --target http://127.0.0.1:8080 --keys keys.yaml
    seawall surge plan scandal-surge --slo critical=99.9 --slo enterprise=99.9

``SCENARIO`` is a shipped scenario's name (``seawall surge list``) or a YAML file. Every mode writes
``report.html`` and ``results.json`` to ``--out`` (default ``./surge-report``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    """Register ``surge`` and its subcommands on the ``seawall`` command's subparsers."""
    surge = subparsers.add_parser("surge", help="the surge lab: simulate, replay live, plan capacity",
                                  description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = surge.add_subparsers(dest="surge_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("scenario", help="a shipped scenario name or a YAML file")
        p.add_argument("--profile", default="seawall",
                       help="gateway configuration: seawall, naive, or a gateway config YAML (default: seawall)")
        p.add_argument("--compare", metavar="PROFILE", action="append", default=[],
                       help="also run under this configuration (e.g. naive); repeatable")
        p.add_argument("--seed", type=int, help="default: the scenario's")
        p.add_argument("--time-scale", type=float, default=1.0,
                       help="multiply the timeline (phases, events) by F, e.g. 0.05 to replay 20x faster")
        p.add_argument("--load-scale", type=float, default=1.0,
                       help="multiply arrival rates and upstream capacity by R")
        p.add_argument("--out", default="surge-report", help="directory for report.html and results.json")
        p.add_argument("--json", action="store_true", help="print the per-tier summary as JSON")

    sim = sub.add_parser("sim", help="simulate a scenario (no network, deterministic for a seed)")
    common(sim)
    sim.add_argument("--replicas", type=int, help="gateway replicas (default: the scenario's)")
    sim.add_argument("--shards", type=int, default=1,
                     help="cut a large run into N shards run in parallel, each with its share of the replicas, "
                          "the traffic and every upstream's slots (default 1: one run, slots pooled)")
    sim.add_argument("--processes", type=int, help="processes for the shards (default: one per core)")
    sim.set_defaults(func=cmd_sim)

    run = sub.add_parser("run", help="replay a scenario live against a gateway on loopback")
    common(run)
    run.add_argument("--target", help="gateway URL (loopback unless --allow-remote)")
    run.add_argument("--spawn", action="store_true",
                     help="start mock upstreams and a gateway per profile on loopback, and make the keys")
    run.add_argument("--keys", help="JSON/YAML file: tier -> API key (with --target)")
    run.add_argument("--gateway-config", help="make one key per tier with `seawall keys create -c FILE`")
    run.add_argument("--admin-key", help="the gateway's admin key, to plot its adaptive limit")
    run.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --target")
    run.add_argument("--max-requests", type=int, default=2_000_000, help="stop sending after N requests")
    run.add_argument("--max-duration-s", type=float, help="stop after S seconds (default: duration + patience)")
    run.add_argument("--simulate", action="store_true",
                     help="also simulate the same (scaled) scenario, into the same report")
    run.add_argument("--no-progress", action="store_true")
    run.set_defaults(func=cmd_run)

    plan = sub.add_parser("plan", help="smallest upstream capacity (or replica count) that meets the SLOs")
    plan.add_argument("scenario")
    plan.add_argument("--slo", action="append", default=[],
                      help="TIER_OR_CRITICALITY=PERCENT or NAME.p99=SECONDS (default: the scenario's SLOs)")
    plan.add_argument("--vary", choices=("capacity", "replicas"), default="capacity")
    plan.add_argument("--profile", default="seawall")
    plan.add_argument("--replicas", type=int)
    plan.add_argument("--seed", type=int)
    plan.add_argument("--time-scale", type=float, default=1.0)
    plan.add_argument("--load-scale", type=float, default=1.0)
    plan.add_argument("--lo", type=float, help="lower bound (capacity factor or replicas)")
    plan.add_argument("--hi", type=float, help="upper bound to start from")
    plan.add_argument("--tolerance", type=float, default=0.02, help="relative precision for capacity")
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(func=cmd_plan)

    lst = sub.add_parser("list", help="the shipped scenarios")
    lst.set_defaults(func=cmd_list)


# -- commands --------------------------------------------------------------------------------------


def _scenario(args: argparse.Namespace) -> Any:
    from seawall.surge.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.scenario)
        return scenario.scaled(time_scale=args.time_scale, load_scale=args.load_scale)
    except ScenarioError as exc:
        for problem in exc.problems:
            print(f"seawall surge: {problem}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as exc:
        print(f"seawall surge: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _profiles(args: argparse.Namespace) -> list[str]:
    return [args.profile, *args.compare]


def _print_runs(runs: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"label": r["label"], "summary": r["summary"], "verdicts": r["verdicts"],
                           "amplification": r["amplification"], "recovery_s": r["recovery_s"],
                           "meta": r["meta"]} for r in runs], indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="per tier", header_style="bold")
    for col in ("run", "tier", "requests", "success", "p50 s", "p99 s", "attempts/req", "top refusal"):
        table.add_column(col, justify="left" if col in ("run", "tier", "top refusal") else "right")
    for run in runs:
        for tier, s in run["summary"].items():
            top = next(iter(s["reasons"].items()), None)
            table.add_row(run["label"], tier, str(s["requests"]), _pct(s["success_rate_pct"]), _num(s["p50_s"]),
                          _num(s["p99_s"]), _num(s["client_amplification"]), f"{top[0]} {top[1]}" if top else "")
    console = Console()
    console.print(table)
    for run in runs:
        verdicts = ", ".join(f"{v['tier']} {v['objective']} {'PASS' if v['pass'] else 'FAIL'}" for v in run["verdicts"])
        amp = run["amplification"]
        console.print(f"{run['label']}: SLOs {verdicts or 'none'}; amplification clients "
                      f"{_num(amp['client'])}x gateway {_num(amp['gateway'])}x; recovery "
                      f"{_num(run['recovery_all_s'])} s")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _sim_run(scenario: Any, profile: str, replicas: int | None, seed: int | None, args: argparse.Namespace,
             bucket_s: float | None = None) -> dict[str, Any]:
    from seawall.surge.report import run_json
    from seawall.surge.sim import simulate

    result = simulate(scenario, profile, replicas=replicas, seed=seed, bucket_s=bucket_s,
                      shards=getattr(args, "shards", 1), processes=getattr(args, "processes", None))
    meta = {"replicas": result.replicas, "shards": result.shards, "seed": result.seed, "time_scale": args.time_scale,
            "load_scale": args.load_scale, "wall_s": round(result.wall_s, 2), "requests": result.requests,
            "user_requests": result.user_requests, "events": result.events, "upstream": result.upstream,
            "retry_budget": result.budget}
    print(f"simulated {scenario.name} under {profile}: {result.requests:,} requests "
          f"({result.user_requests:,} from users) over {result.replicas} replicas "
          f"{f'in {result.shards} shards ' if result.shards > 1 else ''}in {result.wall_s:.1f} s "
          f"({result.requests / max(result.wall_s, 1e-9):,.0f} requests/s)", file=sys.stderr)
    return run_json(scenario, result.recorder, mode="sim", profile=profile, meta=meta)


def cmd_sim(args: argparse.Namespace) -> int:
    from seawall.surge.report import write_report

    scenario = _scenario(args)
    runs = []
    try:
        for profile in _profiles(args):
            runs.append(_sim_run(scenario, profile, args.replicas, args.seed, args))
    except ValueError as exc:
        print(f"seawall surge: {exc}", file=sys.stderr)
        return 2
    path = write_report(args.out, scenario, runs)
    _print_runs(runs, args.json)
    print(f"report: {path}", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from seawall.surge.live import LiveTarget, is_loopback, keys_from_gateway_config, load_keys, replay, spawn_stack
    from seawall.surge.report import run_json, write_report

    scenario = _scenario(args)
    if bool(args.target) == bool(args.spawn):
        print("seawall surge run: give exactly one of --target URL or --spawn", file=sys.stderr)
        return 2
    if args.target and not args.allow_remote and not is_loopback(args.target):
        print(f"seawall surge run: {args.target} is not loopback; pass --allow-remote to load it anyway",
              file=sys.stderr)
        return 2
    runs = []
    progress = not args.no_progress and sys.stdout.isatty()
    for profile in _profiles(args):
        stack = None
        try:
            if args.spawn:
                stack = spawn_stack(scenario, profile, log=lambda m: print(m, file=sys.stderr))
                target = stack.target
            else:
                if args.compare:
                    print("seawall surge run: --compare needs --spawn (one --target is one configuration)",
                          file=sys.stderr)
                    return 2
                if args.keys:
                    keys = load_keys(args.keys)
                elif args.gateway_config:
                    keys = keys_from_gateway_config(args.gateway_config, list(scenario.tiers))
                else:
                    print("seawall surge run: --target needs --keys FILE or --gateway-config FILE", file=sys.stderr)
                    return 2
                target = LiveTarget(args.target.rstrip("/"), keys, profile, args.admin_key)
            result = replay(scenario, target, seed=args.seed, max_requests=args.max_requests,
                            max_duration_s=args.max_duration_s, allow_remote=args.allow_remote, progress=progress)
        except (ValueError, RuntimeError) as exc:
            print(f"seawall surge run: {exc}", file=sys.stderr)
            return 2
        finally:
            if stack is not None:
                stack.stop()
        meta = {"target": target.url, "time_scale": args.time_scale, "load_scale": args.load_scale,
                "wall_s": round(result.wall_s, 2), "requests": result.requests,
                "user_requests": result.user_requests, "stopped_early": result.stopped_early,
                "seed": args.seed if args.seed is not None else scenario.seed, "replicas": 1}
        runs.append(run_json(scenario, result.recorder, mode="live", profile=profile, meta=meta))
        if result.stopped_early:
            print(f"note: {result.stopped_early}", file=sys.stderr)
    if args.simulate:
        for profile in _profiles(args):
            runs.append(_sim_run(scenario, profile, 1, args.seed, args, bucket_s=runs[0]["bucket_s"]))
    path = write_report(args.out, scenario, runs)
    _print_runs(runs, args.json)
    print(f"report: {path}", file=sys.stderr)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from seawall.surge.plan import parse_slos, plan_capacity

    scenario = _scenario(args)
    try:
        slos = parse_slos(scenario, args.slo, args.profile)

        def show(trial: dict[str, Any]) -> None:
            tiers = ", ".join(f"{t} {_pct(v['success_rate_pct'])} p99 {_num(v['p99_s'])}s"
                              for t, v in trial["tiers"].items())
            label = f"capacity x{trial['value']:.3f} ({trial['total_capacity']} in flight)" \
                if args.vary == "capacity" else f"{int(trial['value'])} replicas"
            print(f"  {label}: {'meets' if trial['meets'] else 'misses'} — {tiers}", file=sys.stderr)

        result = plan_capacity(scenario, slos, profile=args.profile, vary=args.vary, replicas=args.replicas,
                               seed=args.seed, lo=args.lo, hi=args.hi, tolerance=args.tolerance, on_trial=show)
    except ValueError as exc:
        print(f"seawall surge plan: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"vary": result.vary, "answer": result.answer, "total_capacity": result.total_capacity,
                          "slos": result.slos, "trials": result.trials}, indent=1))
    elif result.answer is None:
        print("no value within the bounds meets the SLOs")
    elif result.vary == "capacity":
        print(f"smallest capacity meeting the SLOs: x{result.answer:.3f} of the scenario's "
              f"({result.total_capacity} requests in flight upstream)")
    else:
        print(f"smallest replica count meeting the SLOs: {int(result.answer)}")
    return 0 if result.answer is not None else 1


def cmd_list(args: argparse.Namespace) -> int:
    import yaml

    from seawall.surge.scenario import parse_scenario, shipped_scenarios

    for name, text in shipped_scenarios().items():
        scenario = parse_scenario(yaml.safe_load(text))
        print(f"{name:18} {scenario.duration_s / 60:5.0f} min  ~{scenario.expected_requests():>9,.0f} requests  "
              f"{scenario.description[:70]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m seawall.surge.cli`` runs the surge commands without the top-level ``seawall``."""
    parser = argparse.ArgumentParser(prog="seawall")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
