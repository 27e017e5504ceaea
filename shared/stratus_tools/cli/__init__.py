"""The `stratus` command (pyproject's console script: stratus_tools.cli:main). Subcommand implementations
are imported only when chosen (fast --help); each group's parser and commands are a module beside this one
(admin: keys and tenants; prompts; guard; eval_gold, eval_sample; report), and they share usage.py (exit
codes as it says: 0 success, 1 failed, 2 bad usage or configuration, 130 interrupted).
"""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stratus_tools.cli.usage import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, UsageError


def _cmd_ingest(args: argparse.Namespace) -> int:
    from stratus_tools.local.commands import run_ingest

    if not args.path.is_dir():
        raise UsageError(f"PATH: {args.path} is not a folder")
    return run_ingest(args.path, args.tenant, args.prefix, timeout=args.timeout, verbose=args.verbose)


def _cmd_demo(args: argparse.Namespace) -> int:
    from stratus_tools.local.demo import run_demo

    return run_demo(verbose=args.verbose)


def _cmd_dev(args: argparse.Namespace) -> int:
    from stratus.tenants import TENANT_ID
    from stratus_tools.local.dev import run_dev
    from stratus_tools.local.server import ServerError

    if not TENANT_ID.match(args.tenant):
        raise UsageError(f"--tenant: {args.tenant!r} is not a tenant id (lowercase letters, digits, '-', '_')")
    if args.corpus is not None and not args.corpus.is_dir():
        raise UsageError(f"--corpus: {args.corpus} is not a folder")
    try:
        return run_dev(port=args.port, tenant_id=args.tenant, corpus=args.corpus, verbose=args.verbose)
    except ServerError as err:
        raise UsageError(f"--port: {err}") from None


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0-65535)")
    return port


def _cmd_ask(args: argparse.Namespace) -> int:
    from stratus.aws.workflows import WorkflowFailed
    from stratus_tools.local.ask import run_ask

    if not args.question.strip():
        raise UsageError("QUESTION: must not be blank")
    try:
        return run_ask(args.question, args.tenant, mode=args.mode, model=args.model, prompt=args.prompt, k=args.k,
                       as_json=args.json, verbose=args.verbose)
    except WorkflowFailed as err:
        print(f"stratus ask: {err.error}: {err.detail}", file=sys.stderr)
        return EXIT_USAGE if err.error in ("InvalidInput", "NotFound") else EXIT_FAILED


def _cmd_eval_retrieval(args: argparse.Namespace) -> int:
    import json
    from contextlib import ExitStack

    from stratus.config import get_settings
    from stratus_tools.evals.retrieval import MODES, run_retrieval_eval

    for name, path in (("--corpus", args.corpus), ("--queries", args.queries)):
        if not path.exists():
            raise UsageError(f"{name}: {path} does not exist")
    modes = MODES if args.mode == "all" else (args.mode,)
    settings = get_settings()
    with ExitStack() as running:
        if not settings.database_url and settings.env == "local":
            # The evaluation needs a database: the local stack's embedded PostgreSQL, migrated.
            from stratus_tools.local.commands import function_output
            from stratus_tools.local.stack import LocalStack

            running.enter_context(function_output(settings, args.verbose))
            running.enter_context(LocalStack(settings, start_pollers=False))
        results = run_retrieval_eval(args.corpus, args.queries, modes, keep_tenant=args.keep_tenant)
    for row in results:
        print(json.dumps(row), flush=True)
    return 0


def _cmd_eval_run(args: argparse.Namespace) -> int:
    from stratus_tools.cli.eval_gold import run_command
    from stratus_tools.evals.gold import available_suites

    suites = available_suites()
    if args.gold_suite is not None and args.gold_suite not in suites:
        raise UsageError(f"--suite: no gold suite {args.gold_suite!r} (have: {', '.join(suites) or 'none'})")
    chosen = [args.gold_suite] if args.gold_suite else suites
    if args.out is not None and len(chosen) > 1:
        raise UsageError("--out: one file per suite; choose one with --suite")
    if not args.thresholds.is_file():
        raise UsageError(f"--thresholds: {args.thresholds} is not a file")
    return run_command(chosen, as_json=args.json, out_file=args.out, thresholds=args.thresholds,
                       verbose=args.verbose)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stratus",
                                     description="Stratus: local stack, ingestion, questions, prompts, evals.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the functions' logs on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = sub.add_parser("ingest", help="upload a folder through S3 and report what was ingested",
                            description="Uploads PATH's supported files to tenants/TENANT/[PREFIX/]<relative"
                            " path> and waits for the ingest pipeline. Uses the deployed stack when"
                            " STRATUS_ENV is not local, a running local stack, or starts one.")
    ingest.add_argument("path", type=Path, metavar="PATH")
    ingest.add_argument("--tenant", required=True, help="tenant id (lowercase letters, digits, '-', '_')")
    ingest.add_argument("--prefix", default="", help="folder inside the tenant's space")
    ingest.add_argument("--timeout", type=float, default=600, help="seconds to wait for ingestion")
    ingest.set_defaults(func=_cmd_ingest)

    demo = sub.add_parser("demo", help="start the local stack, ingest examples/corpus, ask through the gateway",
                          description="Starts the local stack and its gateway, ingests examples/corpus through"
                          " local S3, creates a key, asks questions over HTTP with the openai SDK (one"
                          " streamed), updates a document through the documents API, asks again, and stops.")
    demo.set_defaults(func=_cmd_demo)

    dev = sub.add_parser("dev", help="serve the gateway locally (OpenAI-compatible API) until Ctrl-C",
                         description="Starts the local stack and serves the gateway on 127.0.0.1:PORT, creates"
                         " a fresh API key for the tenant, prints STRATUS_BASE_URL=... and STRATUS_API_KEY=..."
                         " on stdout once ready, and serves until SIGINT or SIGTERM (exit 0).")
    dev.add_argument("--port", type=_port, default=8080, help="port on 127.0.0.1 (default 8080; 0: any free port)")
    dev.add_argument("--tenant", default="demo", help="tenant the key is for (created if missing; default demo)")
    dev.add_argument("--corpus", type=Path, metavar="PATH", help="ingest this folder for the tenant first")
    dev.set_defaults(func=_cmd_dev)

    ask = sub.add_parser("ask", help="answer a question through the query workflow",
                         description="Runs the query workflow (Retrieve -> Generate, or Generate alone with"
                         " --chat) and prints the answer, citations, usage, cost and the time of each step.")
    ask.add_argument("question", metavar="QUESTION")
    ask.add_argument("--tenant", required=True, help="tenant id")
    ask.add_argument("--model", help="model alias (e.g. fast, smart); default: the prompt's")
    ask.add_argument("--prompt", help="prompt name in the registry; default: rag-answer, or chat with --chat")
    ask.add_argument("--chat", dest="mode", action="store_const", const="chat", default="rag",
                     help="plain chat: no retrieval")
    ask.add_argument("-k", type=int, choices=range(1, 51), metavar="K", help="passages to retrieve (1-50)")
    ask.add_argument("--json", action="store_true", help="print the workflow's JSON result")
    ask.set_defaults(func=_cmd_ask)

    evals = sub.add_parser("eval", help="offline evaluations")
    eval_sub = evals.add_subparsers(dest="suite", required=True, metavar="SUITE")
    retrieval = eval_sub.add_parser("retrieval", help="retrieval quality over a corpus and a query set")
    retrieval.add_argument("--corpus", type=Path, required=True, help="folder of documents")
    retrieval.add_argument("--queries", type=Path, required=True, help="JSONL file of queries and judgements")
    retrieval.add_argument("--mode", choices=["lexical", "dense", "hybrid", "bm25s", "all"], default="all")
    retrieval.add_argument("--keep-tenant", action="store_true", help="leave the eval tenant's data in place")
    retrieval.set_defaults(func=_cmd_eval_retrieval)
    from stratus_tools.evals.gold import THRESHOLDS

    run = eval_sub.add_parser("run", help="gold question sets through the query workflow, scored against floors",
                              description="Runs evals/gold/<suite>.jsonl (all suites by default) through the"
                              " local query workflow; exit 1 naming each metric below its floor in"
                              " evals/gold/thresholds.json. See docs/evals.md.")
    run.add_argument("--suite", dest="gold_suite", metavar="NAME", help="one suite (a prompt name, e.g. rag-answer)")
    run.add_argument("--json", action="store_true", help="print the JSON result instead of the table")
    run.add_argument("--out", type=Path, metavar="FILE", help="JSON result file (default .stratus/evals/<suite>.json)")
    run.add_argument("--thresholds", type=Path, default=THRESHOLDS, help="floors per suite (JSON)")
    run.set_defaults(func=_cmd_eval_run)
    from stratus_tools.cli.guard import add_eval_guard_parser, add_guard_parser

    add_eval_guard_parser(eval_sub)
    from stratus_tools.cli.eval_sample import add_eval_sample_parser

    add_eval_sample_parser(eval_sub)

    from stratus_tools.cli.admin import add_keys_parser
    from stratus_tools.cli.prompts import add_prompts_parser

    add_prompts_parser(sub)
    add_keys_parser(sub)  # `stratus keys` and `stratus tenants`
    add_guard_parser(sub)
    from stratus_tools.cli.report import add_report_parser

    add_report_parser(sub)
    from stratus_tools.cli.audit import add_audit_parser

    add_audit_parser(sub)

    from stratus_tools.cli.reindex import add_reindex_parser

    add_reindex_parser(sub)
    return parser


def _on_sigterm(signum: int, frame: Any) -> None:
    # Unwinds like Ctrl-C, so every `with LocalStack()` stops its poller, moto and PostgreSQL.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")  # platformdirs, via pgserver
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args))
    except UsageError as err:
        print(f"stratus {args.command}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("stratus: interrupted; stopped what was started", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:
        from stratus.config import ConfigError
        from stratus.errors import InvalidInput
        from stratus_tools.local.template import TemplateError

        if isinstance(err, ConfigError | InvalidInput | TemplateError):
            print(f"stratus {args.command}: {err}", file=sys.stderr)
            return EXIT_USAGE
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
