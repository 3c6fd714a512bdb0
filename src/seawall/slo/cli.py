"""``seawall slo export | rules`` and ``seawall incidents list | open | update | resolve``.

The incident commands write to the configured database directly (like ``seawall keys``), so they
work while the gateway is overloaded or down; running gateways show the change on their status page
within ``slo.status.refresh_interval_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seawall.config.schema import Config

__all__ = ["add_parsers"]


def _config(args: argparse.Namespace) -> Config:
    from seawall.cli import _config_arg, _load

    return _load(_config_arg(args))


def _write(text: str, out: str | None) -> None:
    if out:
        with open(out, "w") as f:
            f.write(text)
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def cmd_slo(args: argparse.Namespace) -> int:
    from seawall.slo.export import openslo_yaml, prometheus_rules_yaml

    config = _config(args)
    _write(openslo_yaml(config) if args.action == "export" else prometheus_rules_yaml(config), args.output)
    return 0


def cmd_incidents(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_incidents(args, _config(args)))
    except (OSError, TimeoutError) as exc:
        print(f"seawall: database unreachable: {exc}", file=sys.stderr)
        return 1


async def _incidents(args: argparse.Namespace, config: Config) -> int:
    from seawall.core.errors import InvalidRequest
    from seawall.edges.status.routes import IncidentRequest, UpdateRequest, new_incident, new_update
    from seawall.edges.stores import slo_store_for

    store = slo_store_for(config)
    now = time.time()
    try:
        if args.action == "list":
            incidents = await store.incidents(now - args.days * 86400, limit=200)
            if args.json:
                import msgspec

                print(msgspec.json.encode(incidents).decode())
                return 0
            print(f"{'ID':30} {'STATUS':14} {'IMPACT':8} {'OPENED (UTC)':17} NAME")
            for i in incidents:
                opened = time.strftime("%Y-%m-%d %H:%M", time.gmtime(i.created_at))
                print(f"{i.id:30} {i.status:14} {i.impact:8} {opened:17} {i.name}")
            return 0
        if args.action == "open":
            components = [c for c in (args.components or "").split(",") if c]
            incident, first = new_incident(IncidentRequest(args.name, args.body, args.status, args.impact,
                                                           components), now)
            await store.open_incident(incident, first)
            _print(args, {"id": incident.id, "status": incident.status})
            return 0
        status = "resolved" if args.action == "resolve" else args.status
        body = args.body or ("This incident has been resolved." if args.action == "resolve" else "")
        updated = await store.add_update(new_update(args.incident_id, UpdateRequest(status, body), now))
        if updated is None:
            print(f"seawall: no incident {args.incident_id}", file=sys.stderr)
            return 1
        _print(args, {"id": updated.id, "status": updated.status})
        return 0
    except InvalidRequest as exc:
        print(f"seawall: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await store.close()


def _print(args: argparse.Namespace, what: dict[str, Any]) -> None:
    print(json.dumps(what) if args.json else f"incident {what['id']}: {what['status']}")


def add_parsers(sub: Any) -> None:
    slo = sub.add_parser("slo", help="the configured SLOs as OpenSLO v1 or Prometheus rules")
    slo.add_argument("action", choices=["export", "rules"],
                     help="export: OpenSLO v1 YAML; rules: a Prometheus rules file (burn-rate alerts)")
    slo.add_argument("--config", "-c")
    slo.add_argument("--output", "-o", help="write to this file (default: stdout)")
    slo.set_defaults(func=cmd_slo)

    inc = sub.add_parser("incidents", help="list, open, update or resolve status page incidents")
    inc.add_argument("--config", "-c")
    isub = inc.add_subparsers(dest="action", required=True)
    lst = isub.add_parser("list")
    lst.add_argument("--days", type=float, default=14.0, help="resolved ones updated within N days (default 14)")
    opened = isub.add_parser("open")
    opened.add_argument("--name", required=True)
    opened.add_argument("--body", required=True, help="the first update")
    opened.add_argument("--status", default="investigating",
                        choices=["investigating", "identified", "monitoring", "resolved"])
    opened.add_argument("--impact", default="major", choices=["none", "minor", "major", "critical"])
    opened.add_argument("--components", help="comma-separated component ids (front_door, group:<model>, ...)")
    update = isub.add_parser("update")
    update.add_argument("incident_id")
    update.add_argument("--status", required=True, choices=["investigating", "identified", "monitoring", "resolved"])
    update.add_argument("--body", required=True)
    resolve = isub.add_parser("resolve")
    resolve.add_argument("incident_id")
    resolve.add_argument("--body")
    for p in (lst, opened, update, resolve):
        p.add_argument("--config", "-c", default=argparse.SUPPRESS)
        p.add_argument("--json", action="store_true")
    inc.set_defaults(func=cmd_incidents)
