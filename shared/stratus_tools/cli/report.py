"""`stratus report [--since 7d] [--until ISO] [--tenant T ...] --out DIR`: the static HTML report. Imported
when the CLI builds its parser, so it imports nothing heavy at the top (matplotlib loads only when run).

Database as the other operator commands: DATABASE_URL, a running local stack's, or the embedded one.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_report_parser(sub: Any) -> None:
    report = sub.add_parser(
        "report", help="write a static HTML report: latency, cost, cache, guard, eval scores, drift",
        description="Reads traces, eval aggregates and drift (each tenant through its own tenant transaction)"
        " and writes DIR/index.html with one PNG per chart. Sections without data say so.")
    report.add_argument("--since", default="7d", help="start: a duration before now (30m, 24h, 7d, 2w) or an ISO"
                        " date/time, UTC unless it names a zone (default 7d)")
    report.add_argument("--until", help="end (ISO date/time; default now)")
    report.add_argument("--tenant", action="append", dest="tenants", metavar="TENANT",
                        help="only this tenant (repeat for several; default every tenant)")
    report.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for index.html and images")
    report.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from stratus.gateway.tenancy import check_tenant_id
    from stratus_tools.evals.report import collect, parse_since, write_report
    from stratus_tools.local.commands import command_connection

    until = parse_since(args.until, flag="--until") if args.until else datetime.now(UTC)
    since = parse_since(args.since, now=until)
    tenants = [check_tenant_id(t) for t in args.tenants] if args.tenants else None
    if args.out.exists() and not args.out.is_dir():
        from stratus.errors import InvalidInput

        raise InvalidInput(f"--out: {args.out} exists and is not a folder", field="out")
    with command_connection() as conn:
        data = collect(conn, since, until, tenants)
    page, images = write_report(data, args.out)
    print(f"wrote {page} ({len(images)} chart(s); {len(data.tenants)} tenant(s), "
          f"{sum(t['requests'] for t in data.tenants.values())} request(s) since {since.isoformat()})")
    return 0
