"""`stratus prompts rollout|status|advance|complete|abort`: progressive rollout of a prompt version on one
of a tenant's labels (docs/prompts.md#progressive-rollout), as an operator (no key: the audit rows name
`operator:<user>/<login>`). A rollout is found by its prompt and label (one active rollout per label).
Exit codes as cli/usage.py says: 0 ok, 1 refused (the reason on stderr), 2 bad usage naming the argument.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

# stratus.prompts.rollout.METRICS, repeated so that building the parser imports no database code (a unit test
# keeps the two equal).
METRICS = ("overall", "citations_retrieved", "refusal_consistent", "groundedness", "output_pii", "latency",
           "cost", "judge_faithfulness", "judge_relevance")


def add_rollout_commands(cmds: Any) -> None:
    start = cmds.add_parser("rollout", help="serve VERSION to a share of a tenant's label",
                            description="Starts a progressive rollout: VERSION serves --share percent of the"
                            " label's traffic for --tenant, sticky per conversation, user or key; the eval"
                            " sampler compares it with the label's version and rolls it back on a regression"
                            " of more than --margin.")
    start.add_argument("name", metavar="NAME")
    start.add_argument("version", metavar="VERSION")
    _common(start)
    start.add_argument("--share", type=_share, required=True, help="percent of sticky keys on VERSION (0-100)")
    start.add_argument("--margin", type=_unit, default=0.05, help="the drop that rolls back (0-1, default 0.05)")
    start.add_argument("--min-samples", type=_positive, default=30,
                       help="scored samples each version needs before it is judged (default 30)")
    start.add_argument("--sticky-by", choices=("conversation", "user", "key"), default="conversation",
                       help="the most specific key to split on (default conversation, then user, then key)")
    start.add_argument("--metric", choices=METRICS, default="overall", help="what it is judged on (default overall)")
    start.set_defaults(func=_cmd_start)

    status = cmds.add_parser("status", help="a prompt's rollouts for a tenant, with each version's figures")
    status.add_argument("name", metavar="NAME")
    status.add_argument("--tenant", required=True, help="the tenant")
    status.add_argument("--json", action="store_true", help="print the rollouts as JSON")
    status.set_defaults(func=_cmd_status)

    advance = cmds.add_parser("advance", help="a new share for the label's active rollout")
    advance.add_argument("name", metavar="NAME")
    _common(advance)
    advance.add_argument("--share", type=_share, required=True, help="percent of sticky keys (0-100)")
    advance.set_defaults(func=_cmd_advance)

    complete = cmds.add_parser("complete", help="move the label to the rollout's candidate and end it",
                               description="Refused before both versions have --min-samples scored samples or"
                               " on a regression, unless --force. A protected label needs two admin keys: use"
                               " the API (docs/audit.md#approvals).")
    complete.add_argument("name", metavar="NAME")
    _common(complete)
    complete.add_argument("--force", action="store_true", help="complete without the online comparison")
    complete.set_defaults(func=_cmd_complete)

    abort = cmds.add_parser("abort", help="roll the label's active rollout back by hand (share 0)")
    abort.add_argument("name", metavar="NAME")
    _common(abort)
    abort.add_argument("--reason", default="", help="why (kept on the rollout and in the audit row)")
    abort.set_defaults(func=_cmd_abort)


def _common(parser: Any) -> None:
    parser.add_argument("--tenant", required=True, help="the tenant whose label is rolled out")
    parser.add_argument("--label", default="production", help="the label (default: production)")
    parser.add_argument("--json", action="store_true", help="print the rollout as JSON")


def _number(value: str, argument: str, low: float, high: float) -> float:
    """An argparse type: its error is argparse's usage error (exit 2), naming the argument."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{argument}: {value!r} is not a number") from None
    if not low <= number <= high:
        raise argparse.ArgumentTypeError(f"{argument}: {value} is not between {low:g} and {high:g}")
    return number


def _share(value: str) -> float:
    return round(_number(value, "--share", 0, 100), 2)


def _unit(value: str) -> float:
    return _number(value, "--margin", 0, 1)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"--min-samples: {value!r} is not a positive integer")
    return int(value)


def _args(args: argparse.Namespace) -> tuple[str, str, str]:
    from stratus_tools.cli.prompts import _label, _name
    from stratus_tools.cli.usage import tenant_arg

    return _name(args.name), tenant_arg(args.tenant), _label(getattr(args, "label", "production"))


def _run(action: str, body: Any) -> int:
    from stratus.errors import Forbidden, InvalidInput, NotFound
    from stratus_tools.cli.usage import run_refusing

    return run_refusing(f"prompts {action}", body, (NotFound, Forbidden, InvalidInput))


def _connection() -> Any:
    from stratus_tools.local.commands import command_connection

    return command_connection(app_role=False)


def _active_id(conn: Any, tenant: str, name: str, label: str) -> str:
    from stratus.db import rollouts as store
    from stratus.db.connection import tenant_transaction
    from stratus.errors import NotFound

    with tenant_transaction(tenant, conn):
        row = store.active(conn, tenant, name, label)
    if row is None:
        raise NotFound(f"prompt {name} label {label!r} has no active rollout for tenant {tenant}")
    return str(row["id"])


def _show(rollout: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rollout, indent=2, sort_keys=True))
        return
    print(f"{rollout['name']} {rollout['label']} for tenant {rollout['tenant_id']}: v{rollout['candidate_version']}"
          f" on {rollout['share']:g}% (baseline v{rollout['baseline_version']}, sticky by {rollout['sticky_by']})"
          f" - {rollout['state']}" + (f": {rollout['reason']}" if rollout["reason"] else ""))
    check = rollout.get("check") or rollout.get("last_check")
    if check:
        c, b = check["candidate"], check["baseline"]
        print(f"  {check['metric']}: candidate {c['mean']} (n={c['n']}), baseline {b['mean']} (n={b['n']});"
              f" margin {check['margin']}, min {check['min_samples']} samples: {check['decision']}")


def _cmd_start(args: argparse.Namespace) -> int:
    from stratus_tools.cli.prompts import _version

    name, tenant, label = _args(args)
    version = _version(args.version, "VERSION")

    def body() -> None:
        from stratus import audit, prompt_rollouts

        with _connection() as conn:
            shown = prompt_rollouts.start(conn, audit.operator(conn), tenant, name=name, version=version,
                                          label=label, share=args.share, margin=args.margin,
                                          min_samples=args.min_samples, sticky_by=args.sticky_by,
                                          metric=args.metric)
        _show(shown, args.json)

    return _run("rollout", body)


def _cmd_status(args: argparse.Namespace) -> int:
    from stratus_tools.cli.prompts import _name
    from stratus_tools.cli.usage import tenant_arg

    name, tenant = _name(args.name), tenant_arg(args.tenant)

    def body() -> None:
        from stratus import prompt_rollouts

        with _connection() as conn:
            rollouts = prompt_rollouts.status(conn, tenant, name)
        if args.json:
            print(json.dumps(rollouts, indent=2, sort_keys=True))
        elif not rollouts:
            print(f"no rollouts of {name} for tenant {tenant}")
        for rollout in [] if args.json else rollouts:
            _show(rollout, False)

    return _run("status", body)


def _cmd_advance(args: argparse.Namespace) -> int:
    name, tenant, label = _args(args)

    def body() -> None:
        from stratus import audit, prompt_rollouts

        with _connection() as conn:
            rollout_id = _active_id(conn, tenant, name, label)
            _show(prompt_rollouts.advance(conn, audit.operator(conn), tenant, rollout_id, args.share), args.json)

    return _run("advance", body)


def _cmd_complete(args: argparse.Namespace) -> int:
    name, tenant, label = _args(args)

    def body() -> None:
        from stratus import audit, prompt_rollouts

        with _connection() as conn:
            rollout_id = _active_id(conn, tenant, name, label)
            shown, _ = prompt_rollouts.complete(conn, audit.operator(conn), tenant, rollout_id, force=args.force)
        _show(shown, args.json)

    return _run("complete", body)


def _cmd_abort(args: argparse.Namespace) -> int:
    name, tenant, label = _args(args)

    def body() -> None:
        from stratus import audit, prompt_rollouts

        with _connection() as conn:
            rollout_id = _active_id(conn, tenant, name, label)
            _show(prompt_rollouts.abort(conn, audit.operator(conn), tenant, rollout_id, args.reason), args.json)

    return _run("abort", body)
