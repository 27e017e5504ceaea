"""`stratus prompts list|sync|promote|rollback|diff` (and the rollout commands: cli/rollouts.py). Imported
when the CLI builds its parser, so this module imports nothing heavy at the top; each command loads what it needs.

Database: DATABASE_URL (or the Aurora secret outside local mode); in local mode without one, the
database of a running local stack, else the embedded PostgreSQL started for this command. The registry
is an operator tool, so it connects with the login role (see registry.py). Exit codes as cli/usage.py says:
0 ok, 1 the operation was refused or failed, 2 bad usage naming the argument.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED = 0, 1


def add_prompts_parser(sub: Any) -> None:
    prompts = sub.add_parser("prompts", help="the prompt registry: list, sync, promote, rollback, diff, rollouts",
                             description="Versioned prompts (prompts/<name>/<version>.yaml) and the labels"
                             " that choose which version is served, globally or per tenant.")
    cmds = prompts.add_subparsers(dest="prompts_command", required=True, metavar="ACTION")

    ls = cmds.add_parser("list", help="published prompts, their versions and labels")
    ls.add_argument("--tenant", help="also show this tenant's own labels")
    ls.set_defaults(func=_cmd_list)

    sync = cmds.add_parser("sync", help="publish new prompt versions from the prompt folder",
                           description="Publishes versions not yet in the registry; a published version whose"
                           " file changed is refused (versions are immutable). A prompt without a production"
                           " label gets one at its highest version.")
    sync.add_argument("--dir", type=Path, help="prompt folder (default: STRATUS_PROMPTS_DIR or prompts/)")
    sync.set_defaults(func=_cmd_sync)

    promote = cmds.add_parser("promote", help="point a label at a published version",
                              description="Runs the prompt's gold suite (evals/gold/NAME.jsonl, when there is"
                              " one) on VERSION first and refuses when a threshold is missed.")
    promote.add_argument("name", metavar="NAME")
    promote.add_argument("version", metavar="VERSION")
    promote.add_argument("--label", default="production", help="label to move (default: production)")
    promote.add_argument("--tenant", help="move this tenant's own label instead of the global one")
    promote.add_argument("--force", action="store_true", help="promote without the gold suite gate")
    promote.add_argument("--thresholds", type=Path, help="the gate's floors (default evals/gold/thresholds.json)")
    promote.set_defaults(func=_cmd_promote)

    rollback = cmds.add_parser("rollback", help="move a label back to its previous version")
    rollback.add_argument("name", metavar="NAME")
    rollback.add_argument("--label", default="production", help="label to move back (default: production)")
    rollback.add_argument("--tenant", help="roll back this tenant's own label (its first one: removed)")
    rollback.set_defaults(func=_cmd_rollback)

    diff = cmds.add_parser("diff", help="unified diff of two versions' content",
                           description="Compares the canonical YAML of two versions, read from the prompt"
                           " folder, or from the registry with --published.")
    diff.add_argument("name", metavar="NAME")
    diff.add_argument("v1", metavar="V1")
    diff.add_argument("v2", metavar="V2")
    where = diff.add_mutually_exclusive_group()
    where.add_argument("--dir", type=Path, help="prompt folder (default: STRATUS_PROMPTS_DIR or prompts/)")
    where.add_argument("--published", action="store_true", help="compare published versions in the registry")
    diff.set_defaults(func=_cmd_diff)

    from stratus_tools.cli.rollouts import add_rollout_commands

    add_rollout_commands(cmds)  # rollout, status, advance, complete, abort


# --- arguments -----------------------------------------------------------------------------------------


def _usage(message: str) -> Exception:
    from stratus_tools.cli.usage import UsageError

    return UsageError(message)


def _version(value: str, argument: str) -> int:
    if not re.fullmatch(r"[1-9][0-9]{0,8}", value):
        raise _usage(f"{argument}: {value!r} is not a positive integer version")
    return int(value)


def _name(value: str) -> str:
    from stratus.prompts.models import NAME, NAME_PATTERN

    if not NAME.match(value):
        raise _usage(f"NAME: {value!r} must match {NAME_PATTERN}")
    return value


def _label(value: str) -> str:
    from stratus.prompts.models import LABEL, LABEL_PATTERN

    if not LABEL.match(value):
        raise _usage(f"--label: {value!r} must match {LABEL_PATTERN}")
    return value


def _tenant(value: str | None) -> str | None:
    from stratus_tools.cli.usage import tenant_arg

    return None if value is None else tenant_arg(value)


def _folder(value: Path | None) -> Path | None:
    if value is not None and not value.is_dir():
        raise _usage(f"--dir: {value} is not a folder")
    return value


# --- database ------------------------------------------------------------------------------------------


def _registry_connection() -> Any:
    from stratus_tools.local.commands import command_connection

    return command_connection(app_role=False)


def _run(action: str, body: Any) -> int:
    """Registry refusals end the command with exit code 1 and the reason on stderr."""
    from stratus.errors import Forbidden, NotFound
    from stratus.prompts.models import PromptFileError, VersionConflict
    from stratus_tools.cli.usage import run_refusing

    return run_refusing(f"prompts {action}", body, (NotFound, Forbidden, PromptFileError, VersionConflict))


# --- commands ------------------------------------------------------------------------------------------


def _cmd_list(args: argparse.Namespace) -> int:
    tenant = _tenant(args.tenant)

    def body() -> None:
        from stratus.prompts.registry import list_prompts

        with _registry_connection() as conn:
            summaries = list_prompts(conn, tenant)
        if not summaries:
            print("no prompts published (run `stratus prompts sync`)")
            return
        width = max(len(s.name) for s in summaries)
        print(f"{'NAME':<{width}}  {'VERSIONS':<10}  LABELS")
        for s in summaries:
            labels = " ".join(f"{k}=v{v}" for k, v in sorted(s.labels.items())) or "-"
            if s.tenant_labels:
                own = " ".join(f"{k}=v{v}" for k, v in sorted(s.tenant_labels.items()))
                labels += f"  tenant {tenant}: {own}"
            print(f"{s.name:<{width}}  {','.join(map(str, s.versions)):<10}  {labels}")

    return _run("list", body)


def _cmd_sync(args: argparse.Namespace) -> int:
    folder = _folder(args.dir)

    def body() -> None:
        from stratus import audit
        from stratus.prompts.registry import sync_prompts

        with _registry_connection() as conn, audit.change(conn, audit.GLOBAL_CHAIN, audit.operator(conn),
                                                          "prompt.sync", str(folder or "prompts")) as change:
            report = sync_prompts(conn, folder)
            change.after = {"published": report.published, "labelled": report.labelled}
            change.record = bool(report.published or report.labelled)
        print("\n".join(report.lines()))

    return _run("sync", body)


def _cmd_promote(args: argparse.Namespace) -> int:
    name, version = _name(args.name), _version(args.version, "VERSION")
    label, tenant = _label(args.label), _tenant(args.tenant)
    from stratus_tools.cli.eval_gold import promotion_gate

    if args.thresholds is not None and not args.thresholds.is_file():
        raise _usage(f"--thresholds: {args.thresholds} is not a file")
    if tenant is not None and _protected(tenant, label):
        print(f"stratus prompts promote: label {label!r} of tenant {tenant} is protected: a promotion needs two"
              " admin keys (POST /v1/admin/tenants/{id}/prompts/{name}/promote, docs/audit.md#approvals)",
              file=sys.stderr)
        return EXIT_FAILED
    if not promotion_gate(name, version, force=args.force, verbose=args.verbose, thresholds=args.thresholds,
                          served=lambda: _current_version(name, label, tenant)):
        return EXIT_FAILED

    def body() -> None:
        from stratus import audit
        from stratus.prompts.registry import promote

        with _registry_connection() as conn:
            with audit.change(conn, tenant or audit.GLOBAL_CHAIN, audit.operator(conn), "prompt.promote",
                              f"{name}:{label}") as change:
                moved = promote(conn, name, version, label, tenant)
                change.before = {"version": moved.previous}
                change.after = {"version": moved.current, "eval_gate": "skipped (--force)" if args.force else "passed"}
            print(moved.describe())

    return _run("promote", body)


def _protected(tenant: str, label: str) -> bool:
    """Whether the tenant requires two admin keys to move `label` (stratus.approvals)."""
    from stratus import approvals
    from stratus.db.connection import tenant_transaction

    with _registry_connection() as conn, tenant_transaction(tenant, conn):
        return label in approvals.protected_labels(conn, tenant)


def _current_version(name: str, label: str, tenant: str | None) -> int | None:
    """What the label serves now (the gate compares the candidate with it); None when unset or unreadable."""
    from stratus.errors import NotFound
    from stratus.prompts.registry import current_version

    try:
        with _registry_connection() as conn:
            return current_version(conn, name, label, tenant)
    except NotFound:
        return None


def _cmd_rollback(args: argparse.Namespace) -> int:
    name, label, tenant = _name(args.name), _label(args.label), _tenant(args.tenant)

    def body() -> None:
        from stratus import audit
        from stratus.prompts.registry import rollback

        with _registry_connection() as conn:
            with audit.change(conn, tenant or audit.GLOBAL_CHAIN, audit.operator(conn), "prompt.rollback",
                              f"{name}:{label}") as change:
                moved = rollback(conn, name, label, tenant)
                change.before, change.after = {"version": moved.previous}, {"version": moved.current}
            print(moved.describe())

    return _run("rollback", body)


def _cmd_diff(args: argparse.Namespace) -> int:
    name, v1, v2 = _name(args.name), _version(args.v1, "V1"), _version(args.v2, "V2")
    folder = _folder(args.dir)

    def body() -> None:
        from stratus.prompts.files import prompts_dir
        from stratus.prompts.registry import diff

        if args.published:
            with _registry_connection() as conn:
                text = diff(conn, name, v1, v2)
        else:
            text = diff(folder or prompts_dir(), name, v1, v2)
        sys.stdout.write(text or f"{name} v{v1} and v{v2} have the same content\n")

    return _run("diff", body)
