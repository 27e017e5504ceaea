"""`stratus audit list|verify`: the audit trail read with the owner's login (every tenant's chain, and the
global one, '*'). Exit codes as cli/usage.py says: 0 ok, 1 a chain failed verification, 2 bad usage."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

EXIT_OK, EXIT_FAILED = 0, 1


def add_audit_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit trail of administrative changes: list, verify",
                           description="Who changed what, per tenant, hash-chained (docs/audit.md).")
    cmds = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    ls = cmds.add_parser("list", help="a tenant's audit rows, oldest first")
    ls.add_argument("--tenant", required=True, help="the tenant's chain ('*': operator changes to global state)")
    ls.add_argument("--action", help="only this action, e.g. key.create")
    ls.add_argument("--actor", help="only this key id")
    ls.add_argument("--since", type=_when, help="from this time (ISO 8601 or Unix seconds)")
    ls.add_argument("--until", type=_when, help="before this time (ISO 8601 or Unix seconds)")
    ls.add_argument("--after", type=int, default=0, help="cursor: rows after this seq")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=_cmd_list)

    verify = cmds.add_parser("verify", help="check the hash chains: edited, deleted or reordered rows",
                             description="Walks each chain (or one) and recomputes every hash. Prints each"
                             " chain's head hash: keep it elsewhere, and pass it back with --expect-head to"
                             " detect a later truncation of the newest rows.")
    verify.add_argument("--tenant", help="only this tenant's chain")
    verify.add_argument("--expect-head", metavar="HASH", help="the chain's head must still contain this row hash")
    verify.set_defaults(func=_cmd_verify)


def _when(value: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"not a time: {value!r}") from err
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _connection() -> Any:
    from stratus_tools.local.commands import command_connection

    return command_connection(app_role=False)


def _cmd_list(args: argparse.Namespace) -> int:
    from stratus import audit

    filters = audit.Filters(action=args.action, actor=args.actor, since=args.since, until=args.until,
                            after_seq=args.after, limit=args.limit)
    with _connection() as conn, conn.transaction():
        rows = audit.list_rows(conn, args.tenant, filters)
    for row in rows:
        shown = audit.public(row)
        if args.json:
            print(json.dumps(shown, sort_keys=True))
            continue
        at = datetime.fromtimestamp(shown["at"], UTC).isoformat(timespec="seconds")
        who = shown["actor"]["key_id"] or f"operator:{shown['actor']['tenant_id']}"
        print(f"{shown['seq']:>6}  {at}  {shown['action']:<22} {shown['target']:<36} by {who}"
              f" ({','.join(shown['actor']['scopes'])}) req={shown['request_id'] or '-'}")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from stratus import audit

    failed = False
    with _connection() as conn, conn.transaction():
        for chain in [args.tenant] if args.tenant else audit.chains(conn):
            rows = list(audit.stored_rows(conn, chain))
            verdict = audit.verify(rows, chain)
            problems = list(verdict.problems)
            if args.expect_head and args.expect_head not in {r["row_hash"] for r in rows}:
                problems.append(f"{chain}: no row has hash {args.expect_head} (rows removed from the end?)")
            failed |= bool(problems)
            for line in problems:
                print(f"FAIL {line}")
            status = "FAIL" if problems else "ok"
            print(f"{status} {chain}: {verdict.rows} rows, head {verdict.head}")
    return EXIT_FAILED if failed else EXIT_OK
