"""`stratus reindex --tenant T --model M | --status | --rollback | --drop-previous`: move a tenant to another
embedding model blue/green (docs/retrieval.md, "Changing the embedding model"). Imported when the CLI
builds its parser, so it imports nothing heavy at the top.

Database as the other operator commands: DATABASE_URL, a running local stack's, or the embedded one. The
job runs here, batch by batch; interrupted, it resumes from its persisted cursor when run again (on AWS the
admin API's POST starts it on the reindex queue instead).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from stratus_tools.cli.usage import EXIT_OK, run_refusing, tenant_arg


def add_reindex_parser(sub: Any) -> None:
    p = sub.add_parser(
        "reindex", help="re-embed a tenant's chunks with another model, then switch its queries to it",
        description="Embeds the tenant's chunks into MODEL beside the current vectors, in bounded batches (new"
        " ingestions write both meanwhile), then switches the tenant's queries to MODEL in one transaction."
        " Resumable: run it again after an interruption. --rollback switches back to the previous model's"
        " vectors, kept until --drop-previous.")
    p.add_argument("--tenant", required=True, type=_tenant, help="tenant id")
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--model", help="embedding model to move the tenant to (or resume moving it to)")
    action.add_argument("--status", action="store_true", help="print the tenant's models and progress")
    action.add_argument("--rollback", action="store_true", help="switch queries back to the previous model")
    action.add_argument("--drop-previous", action="store_true", help="delete the previous model's vectors")
    p.add_argument("--batch", type=int, default=128, choices=range(1, 1025), metavar="N",
                   help="chunks per batch (1-1024, default 128)")
    p.add_argument("--json", action="store_true", help="print the final state as JSON")
    p.set_defaults(func=_cmd_reindex)


def _tenant(value: str) -> str:
    try:
        return tenant_arg(value)
    except Exception as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _cmd_reindex(args: argparse.Namespace) -> int:
    from stratus.config import get_settings
    from stratus.errors import InvalidInput, NotFound
    from stratus.reindex import job
    from stratus_tools.local.commands import command_connection

    settings = get_settings()

    def body() -> None:
        with command_connection() as conn:
            if args.status:
                progress = job.status(conn, args.tenant, settings)
            elif args.rollback:
                progress = job.rollback(conn, args.tenant, settings)
            elif args.drop_previous:
                progress = job.drop_previous(conn, args.tenant, settings)
            else:
                _ensure_index(args.model, settings)
                progress = job.start(conn, args.tenant, args.model, settings)
                while progress.target_model is not None:
                    progress = job.step(conn, args.tenant, settings, batch=args.batch)
                    print(f"  {progress.embedded}/{progress.total} chunks embedded into {args.model}",
                          file=sys.stderr)
        state = progress.as_dict()
        if args.json:
            print(json.dumps(state))
        else:
            print(f"tenant {args.tenant}: queries use {state['query_model']}; previous model kept:"
                  f" {state['previous_model'] or 'none'}; running: {state['target_model'] or 'none'}")

    code = run_refusing("reindex", body, (InvalidInput, NotFound))
    return code if code else EXIT_OK


def _ensure_index(model: str, settings: Any) -> None:
    """The model's partial HNSW index in chunk_embeddings (the owner creates it; an unknown model is left to
    job.start's refusal). The deployment's model is indexed on the chunk rows by the migrations."""
    from stratus.db.embedding_state import ensure_index
    from stratus.embeddings import get_embedder
    from stratus_tools.local.commands import command_connection

    if model == settings.embedding_model:
        return
    try:
        dims = get_embedder(model).dimensions
    except ValueError:
        return
    with command_connection(app_role=False) as owner:
        ensure_index(owner, model, dims)
        owner.commit()
