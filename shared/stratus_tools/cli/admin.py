"""`stratus keys create|list|revoke` and `stratus tenants create|list|limits|retrieval`: the admin API's key,
tenant, limit and retrieval-settings operations from the command line. Imported when the CLI builds its
parser, so this module imports nothing heavy at the top.

Database: DATABASE_URL (or the Aurora secret outside local mode); in local mode without one, the
database of a running local stack, else the embedded PostgreSQL started for the command. Exit codes as
cli/usage.py says: 0 ok, 1 refused (e.g. no such key), 2 bad usage naming the argument.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from stratus.validation import INT4_MAX

EXIT_OK, EXIT_FAILED = 0, 1
_SCOPES = ("inference", "documents", "admin")


def add_keys_parser(sub: Any) -> None:
    """Registers `keys` and `tenants` on the CLI's subparsers."""
    keys = sub.add_parser("keys", help="API keys: create, list, revoke",
                          description="API keys of a tenant. A new key is printed once and stored only as a hash.")
    cmds = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = cmds.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--tenant", required=True, help="tenant id")
    create.add_argument("--name", default="", help="what the key is for (shown in lists)")
    create.add_argument("--scope", action="append", choices=_SCOPES, dest="scopes",
                        help="repeat for several (default: inference and documents)")
    create.add_argument("--rpm", type=_positive("--rpm"), help="the key's own requests per minute")
    create.add_argument("--tpm", type=_positive("--tpm"), help="the key's own tokens per minute")
    create.add_argument("--create-tenant", action="store_true", help="create the tenant if it does not exist")
    create.add_argument("--json", action="store_true", help="print the key and its details as JSON")
    create.set_defaults(func=_cmd_keys_create)
    ls = cmds.add_parser("list", help="a tenant's keys (prefix, scopes, state; never the secret)")
    ls.add_argument("--tenant", required=True, help="tenant id")
    ls.add_argument("--json", action="store_true", help="one JSON object per key")
    ls.set_defaults(func=_cmd_keys_list)
    revoke = cmds.add_parser("revoke", help="revoke a key by id or prefix")
    revoke.add_argument("key", metavar="KEY_ID_OR_PREFIX")
    revoke.add_argument("--tenant", required=True, help="tenant id")
    revoke.set_defaults(func=_cmd_keys_revoke)

    tenants = sub.add_parser("tenants", help="tenants: create, list, limits and budget",
                             description="Tenants, their rate limits and spend budget, and their current usage.")
    tcmds = tenants.add_subparsers(dest="tenants_command", required=True, metavar="ACTION")
    tcreate = tcmds.add_parser("create", help="create a tenant")
    tcreate.add_argument("tenant", metavar="TENANT")
    tcreate.add_argument("--name", default="", help="display name")
    tcreate.set_defaults(func=_cmd_tenants_create)
    tls = tcmds.add_parser("list", help="every tenant")
    tls.add_argument("--json", action="store_true", help="one JSON object per tenant")
    tls.set_defaults(func=_cmd_tenants_list)
    limits = tcmds.add_parser("limits", help="show or change a tenant's limits and budget, with its usage",
                              description="Without options, shows the limits in force and this minute's and this"
                              " budget period's usage. 'default' puts a limit back to the default; --budget none"
                              " removes the budget.")
    limits.add_argument("tenant", metavar="TENANT")
    for flag, field in (("--rpm", "requests_per_minute"), ("--tpm", "tokens_per_minute"),
                        ("--key-rpm", "key_requests_per_minute"), ("--key-tpm", "key_tokens_per_minute")):
        limits.add_argument(flag, dest=field, type=_positive(flag, allow="default"), metavar="N|default")
    limits.add_argument("--budget", dest="budget_usd", type=_amount, metavar="USD|none", help="spend budget")
    limits.add_argument("--period", dest="budget_period", choices=("day", "month"), help="budget period (UTC)")
    limits.add_argument("--json", action="store_true", help="print limits and usage as JSON")
    limits.set_defaults(func=_cmd_tenants_limits)
    retrieval = tcmds.add_parser("retrieval", help="show or choose a tenant's reranker",
                                 description="Without options, shows the tenant's reranker and what its requests get."
                                 " 'default' makes a field follow the deployment (STRATUS_RERANKER,"
                                 " STRATUS_RERANK_MODEL).")
    retrieval.add_argument("tenant", metavar="TENANT")
    retrieval.add_argument("--reranker", choices=("none", "bedrock", "default"))
    retrieval.add_argument("--rerank-model", choices=("amazon.rerank-v1:0", "cohere.rerank-v3-5:0", "default"))
    retrieval.add_argument("--json", action="store_true", help="print the settings as JSON")
    retrieval.set_defaults(func=_cmd_tenants_retrieval)


_UNSET = object()  # "default"/"none" on the command line: clear the tenant's own value


def _positive(flag: str, allow: str | None = None) -> Any:
    def parse(value: str) -> Any:
        if allow and value == allow:
            return _UNSET
        if not value.isdigit() or not 1 <= int(value) <= INT4_MAX:  # the limits are int4 columns
            raise argparse.ArgumentTypeError(f"{flag}: {value!r} is not a positive integer up to {INT4_MAX}")
        return int(value)
    return parse


def _amount(value: str) -> Any:
    if value == "none":
        return _UNSET
    try:
        amount = float(value)
    except ValueError:
        amount = -1.0
    if not amount >= 0:
        raise argparse.ArgumentTypeError(f"--budget: {value!r} is not an amount in USD (or 'none')")
    return amount


def _connection() -> Any:
    from stratus_tools.local.commands import command_connection

    return command_connection()  # the application role: every operation binds the tenant it concerns


def _run(command: str, body: Any) -> int:
    from stratus.errors import NotFound
    from stratus_tools.cli.usage import run_refusing

    return run_refusing(command, body, (NotFound,))


def _tenant(value: str) -> str:
    from stratus_tools.cli.usage import tenant_arg

    return tenant_arg(value)


def _key_json(info: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in asdict(info).items()}


def _cmd_keys_create(args: argparse.Namespace) -> int:
    tenant = _tenant(args.tenant)

    def body() -> None:
        from stratus import audit
        from stratus.gateway.keys import DEFAULT_SCOPES, create_key
        from stratus.gateway.tenancy import create_tenant

        with _connection() as conn:
            if args.create_tenant:
                with audit.change(conn, tenant, audit.operator(conn), "tenant.create", tenant) as change:
                    change.after = create_tenant(conn, tenant)
                    change.record = change.after["created"]
            with audit.change(conn, tenant, audit.operator(conn), "key.create", tenant) as change:
                text, info = create_key(conn, tenant, name=args.name, scopes=args.scopes or DEFAULT_SCOPES,
                                        requests_per_minute=args.rpm, tokens_per_minute=args.tpm)
                change.after = info  # audit.scrub drops the hash; the text is never passed
        if args.json:
            print(json.dumps({"key": text, **_key_json(info)}))
            return
        print(text)
        print(f"created key {info.prefix} (id {info.id}) for tenant {tenant}, scopes {','.join(info.scopes)};"
              " the key is shown only now", file=sys.stderr)

    return _run("keys create", body)


def _cmd_keys_list(args: argparse.Namespace) -> int:
    tenant = _tenant(args.tenant)

    def body() -> None:
        from stratus.gateway.keys import list_keys

        with _connection() as conn:
            found = list_keys(conn, tenant)
        if args.json:
            for info in found:
                print(json.dumps(_key_json(info)))
            return
        if not found:
            print(f"tenant {tenant} has no keys")
            return
        print(f"{'PREFIX':<12}  {'ID':<36}  {'SCOPES':<26}  {'STATE':<7}  {'LAST USED':<16}  NAME")
        for k in found:
            state = "revoked" if k.revoked_at else "active"
            used = k.last_used_at.strftime("%Y-%m-%d %H:%M") if k.last_used_at else "-"
            print(f"{k.prefix:<12}  {k.id:<36}  {','.join(k.scopes):<26}  {state:<7}  {used:<16}  {k.name}")

    return _run("keys list", body)


def _cmd_keys_revoke(args: argparse.Namespace) -> int:
    tenant = _tenant(args.tenant)

    def body() -> None:
        from stratus import audit
        from stratus.gateway.keys import revoke_key

        with _connection() as conn, audit.change(conn, tenant, audit.operator(conn), "key.revoke", args.key) as change:
            change.after = info = revoke_key(conn, tenant, args.key)
        print(f"revoked key {info.prefix} (id {info.id}) of tenant {tenant}")

    return _run("keys revoke", body)


def _cmd_tenants_create(args: argparse.Namespace) -> int:
    tenant = _tenant(args.tenant)

    def body() -> None:
        from stratus import audit
        from stratus.gateway.tenancy import create_tenant

        with _connection() as conn, audit.change(conn, tenant, audit.operator(conn), "tenant.create", tenant) as change:
            change.after = made = create_tenant(conn, tenant, args.name)
            change.record = made["created"]
        print(f"{'created' if made['created'] else 'exists:'} tenant {tenant}")

    return _run("tenants create", body)


def _cmd_tenants_list(args: argparse.Namespace) -> int:
    def body() -> None:
        from stratus.gateway.tenancy import list_tenants

        with _connection() as conn:
            found = list_tenants(conn)
        for t in found:
            if args.json:
                print(json.dumps({**t, "created_at": t["created_at"].isoformat()}))
            else:
                print(f"{t['id']:<32}  {t['created_at']:%Y-%m-%d}  {t['name']}")

    return _run("tenants list", body)


def _cmd_tenants_limits(args: argparse.Namespace) -> int:
    tenant = _tenant(args.tenant)
    fields = ("requests_per_minute", "tokens_per_minute", "key_requests_per_minute", "key_tokens_per_minute",
              "budget_usd", "budget_period")
    changes = {f: (None if getattr(args, f) is _UNSET else getattr(args, f)) for f in fields
               if getattr(args, f) is not None}

    def body() -> None:
        from stratus import audit
        from stratus.gateway.tenancy import get_limits, set_limits, usage

        with _connection() as conn:
            if changes:
                with audit.change(conn, tenant, audit.operator(conn), "limits.set", tenant) as change:
                    change.before = get_limits(conn, tenant)
                    change.after = limits = set_limits(conn, tenant, **changes)
            else:
                limits = get_limits(conn, tenant)
            used = usage(conn, tenant)
        if args.json:
            print(json.dumps({"limits": limits, "usage": used}))
            return
        custom = set(limits["custom"])
        for f in fields[:-1]:
            value = limits[f]
            shown = "none" if value is None else (f"${value:.2f}" if f == "budget_usd" else str(value))
            print(f"{f:<24} {shown}{'' if f in custom or value is None else ' (default)'}")
        print(f"{'budget_period':<24} {limits['budget_period']}")
        w = used["window"]
        print(f"this minute: {w['requests']}/{w['requests_limit']} requests, {w['tokens']}/{w['tokens_limit']} tokens")
        print(f"this {used['period']}: spent ${used['spent_usd']:.4f}, reserved ${used['reserved_usd']:.4f}"
              + (f", remaining ${used['remaining_usd']:.4f}" if used["remaining_usd"] is not None else ""))

    return _run("tenants limits", body)


def _cmd_tenants_retrieval(args: argparse.Namespace) -> int:
    tenant = _tenant(args.tenant)

    def body() -> None:
        from stratus import audit
        from stratus.retrieval.rerank import set_tenant_choice, tenant_choice

        with _connection() as conn:
            found = tenant_choice(conn, tenant)
            if args.reranker is not None or args.rerank_model is not None:
                wanted = {field: found[field] if value is None else (None if value == "default" else value)
                          for field, value in (("reranker", args.reranker), ("rerank_model", args.rerank_model))}
                with audit.change(conn, tenant, audit.operator(conn), "retrieval_settings.set", tenant) as change:
                    change.before = found
                    change.after = found = set_tenant_choice(conn, tenant, wanted["reranker"], wanted["rerank_model"])
        if args.json:
            print(json.dumps(found))
            return
        for field in ("reranker", "rerank_model"):
            own = found[field]
            print(f"{field:<13} {found['effective'][field] or '-'}{'' if own is not None else ' (default)'}")

    return _run("tenants retrieval", body)
