"""What `stratus ingest` does (and the demo reuses); cli.py parses arguments and calls these lazily."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from stratus.config import PROJECT_ROOT, Settings, get_settings

log = logging.getLogger(__name__)

DEMO_CORPUS = PROJECT_ROOT / "examples" / "corpus"
DEMO_TENANT = "demo"
DEMO_QUERIES = (
    "How do I verify that a webhook request really comes from Parcelo?",
    "What should I do when the API answers 429 Too Many Requests?",
    "How much does the Team plan cost per month?",
    "How long are tracking events kept after delivery?",
)


@contextmanager
def function_output(settings: Settings, verbose: bool) -> Iterator[TextIO]:
    """Yields the terminal's stdout; handler output goes to a log file meanwhile.

    Handlers write logs and metrics to stdout (CloudWatch's input on AWS). Locally that would bury the
    command's own output, so stdout and Python logging go to <data_dir>/logs/local.log for the command.
    """
    terminal = sys.stdout
    if verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True)
        yield terminal
        return
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "local.log", "a", encoding="utf-8") as log_file:
        root = logging.getLogger()
        handler = logging.FileHandler(log_file.name, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        previous_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        sys.stdout = log_file
        try:
            yield terminal
        finally:
            sys.stdout = terminal
            root.removeHandler(handler)
            root.setLevel(previous_level)
            handler.close()


@dataclass
class Target:
    """Where documents go and how to tell when ingestion has caught up."""

    s3: Any
    bucket: str
    description: str
    idle: Any = None  # () -> bool, when the queue can be watched


@contextmanager
def ingest_target(settings: Settings) -> Iterator[Target]:
    """A deployed stack (STRATUS_ENV != local), a local stack already running, or one started now."""
    from stratus_tools.local.stack import LocalStack, attached, running_stack

    if settings.env != "local":
        from stratus.aws.clients import client

        # Settings already refuse a non-local environment without STRATUS_DOCUMENTS_BUCKET.
        yield Target(client("s3"), str(settings.documents_bucket), f"deployed stack ({settings.env})")
        return
    state = running_stack(settings)
    if state is not None:
        with attached(state):
            from stratus.aws.clients import client

            queue_url = state.get("STRATUS_INGEST_QUEUE_URL")
            yield Target(client("s3"), str(state["STRATUS_DOCUMENTS_BUCKET"]),
                         f"local stack of process {state['pid']}",
                         idle=(lambda: _queue_idle(client("sqs"), queue_url)) if queue_url else None)
        return
    with LocalStack(settings) as stack:
        yield Target(stack.client("s3"), stack.documents_bucket, "local stack (started for this command)",
                     idle=lambda: all(p.idle() for p in stack.pollers))


def _queue_idle(sqs: Any, queue_url: str) -> bool:
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed"])["Attributes"]
    return all(int(v) == 0 for v in attrs.values())


def ingest_into(target: Target, root: Path, tenant_id: str, prefix: str, *, timeout: float,
                out: TextIO, show_progress: bool = True) -> Any:
    """Upload `root` for `tenant_id`, wait for the pipeline, and return the IngestReport."""
    from tqdm import tqdm

    from stratus_tools.local import folder_ingest

    uploads, refused = folder_ingest.plan(root, tenant_id, prefix)
    before = folder_ingest.snapshot(tenant_id)
    print(f"Uploading {len(uploads)} file(s) from {root} to s3://{target.bucket}/tenants/{tenant_id}/"
          f" ({target.description})", file=out, flush=True)
    folder_ingest.upload(target.s3, target.bucket, tenant_id, uploads)
    with tqdm(total=len(uploads), desc="ingesting", unit="doc", file=sys.stderr,
              disable=not show_progress or not uploads) as bar:
        def progress(done: int) -> None:
            bar.update(done - bar.n)

        after = folder_ingest.wait_for_documents(tenant_id, uploads, before, timeout=timeout,
                                                 idle=target.idle, progress=progress)
    return folder_ingest.classify(tenant_id, uploads, refused, before, after)


def run_ingest(path: Path, tenant_id: str, prefix: str, *, timeout: float, verbose: bool) -> int:
    from stratus_tools.local.folder_ingest import plan

    plan(path, tenant_id, prefix)  # bad arguments fail before anything starts
    settings = get_settings()
    with function_output(settings, verbose) as out, ingest_target(settings) as target:
        report = ingest_into(target, path, tenant_id, prefix, timeout=timeout, out=out)
        print("\n".join(report.lines()), file=out, flush=True)
    return 1 if report.failed else 0


@contextmanager
def command_connection(*, app_role: bool = True) -> Iterator[Any]:
    """A migrated connection for a command: DATABASE_URL, a running local stack's database, the embedded
    server (started for the command and stopped after) in local mode, or the deployed stack's database.
    `app_role=False` keeps the login role (the prompt registry publishes with it)."""
    from stratus.db.connection import connect, database_url
    from stratus.db.migrate import migrate

    settings = get_settings()
    with ExitStack() as opened:
        url = settings.database_url
        if not url and settings.env == "local":
            from stratus_tools.local.stack import running_stack

            state = running_stack(settings)
            if state is not None:
                url = str(state["database_url"])
            else:
                from stratus_tools.local.postgres import start_embedded

                server = start_embedded(settings.data_dir / "pg")
                opened.callback(server.stop)
                url = server.url
        url = url or database_url(settings)
        migrate(url)  # a no-op when current; a command may run before any function's cold start
        conn = connect(url, app_role=app_role)
        opened.callback(conn.close)
        yield conn
