"""The embedded local stack: PostgreSQL, moto (S3, SQS, Lambda, Step Functions...) and the pollers.

    with LocalStack() as stack:
        ...  # handlers, boto3 clients and `stratus` commands in this process now talk to it

This process plays AWS, so it is the one place besides config.py that touches the environment: it
*sets* the variables the handlers read (endpoint, bucket, queue URL, DATABASE_URL) and restores them
on exit. Resources come from template.yaml's own definitions (see resources.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from stratus.config import Settings, get_settings, reset_settings
from stratus_tools.local import lambdas
from stratus_tools.local.cfn import Resolver
from stratus_tools.local.poller import SqsPoller
from stratus_tools.local.resources import CreatedStack, StackBuilder
from stratus_tools.local.template import load_template

log = logging.getLogger(__name__)
_active_lock = threading.Lock()

STACK_NAME = "stratus-local"
ACCOUNT_ID = "123456789012"  # moto's default account
# What the handlers are told, and which template resource provides it (when the template has it).
_OUTPUTS = {
    "STRATUS_DOCUMENTS_BUCKET": ("DocumentsBucket", "Ref"),
    "STRATUS_INGEST_QUEUE_URL": ("IngestQueue", "QueueUrl"),
    "STRATUS_QUERY_STATE_MACHINE_ARN": ("QueryStateMachine", "Arn"),
    "STRATUS_MULTILINGUAL_FUNCTION": ("GuardMultilingualFunction.Alias", "Ref"),  # its AutoPublishAlias
}


class EnvOverlay:
    """Sets environment variables for this process and puts the previous values back on `restore`."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, values: dict[str, str | None]) -> None:
        for key, value in values.items():
            if key not in self._saved:
                self._saved[key] = os.environ.get(key)
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _refresh()

    def restore(self) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved = {}
        _refresh()


def _refresh() -> None:
    from stratus.aws.clients import reset_clients

    reset_settings()
    reset_clients()


class LocalStack:
    """Starts everything in `__enter__`, stops what it started in `__exit__` (also on Ctrl-C).

    One at a time per process: moto's state and the Lambda hook are process-wide. With
    `serve_gateway`, the gateway app is also served over HTTP (uvicorn on 127.0.0.1:`gateway_port`,
    0 = any free port) once the resources exist, so it sees the stack's endpoint, database and ARNs.
    """

    _active: LocalStack | None = None

    def __init__(self, settings: Settings | None = None, *, template_path: Path | None = None,
                 start_pollers: bool = True, retry_delay_s: int = 1,
                 parameters: dict[str, str] | None = None, serve_gateway: bool = False,
                 gateway_port: int = 0) -> None:
        self.settings = settings or get_settings()
        self.template_path = Path(template_path or self.settings.template_path).resolve()
        self.start_pollers = start_pollers
        self.retry_delay_s = retry_delay_s
        self.parameters = parameters
        self.serve_gateway = serve_gateway
        self.gateway_port = gateway_port
        self.gateway: Any = None  # a GatewayServer while serving
        self.region = self.settings.aws_region
        self.database_url: str | None = None
        self.endpoint_url: str | None = None
        self.resources: CreatedStack | None = None
        self.pollers: list[SqsPoller] = []
        self.schedules: list[Any] = []  # ScheduleRunners for the template's rate(...) schedules
        self._pg: Any = None
        self._moto: Any = None
        self._env = EnvOverlay()
        self._clients: dict[str, Any] = {}
        self._state_file = self.settings.data_dir / "stack.json"
        self._state_written = False

    # --- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        with _active_lock:
            if LocalStack._active is not None:
                raise RuntimeError("a LocalStack is already running in this process; stop it first")
            LocalStack._active = self
        template = load_template(self.template_path)  # fail fast on a bad template, before starting servers
        self._start_database()
        self._start_moto()
        self._env.set({
            "AWS_ACCESS_KEY_ID": "stratus-local", "AWS_SECRET_ACCESS_KEY": "stratus-local",
            "AWS_DEFAULT_REGION": self.region, "STRATUS_AWS_ENDPOINT_URL": self.endpoint_url,
            "DATABASE_URL": self.database_url,
        })
        resolver = Resolver(template, stack_name=STACK_NAME, region=self.region, account_id=ACCOUNT_ID,
                            parameters=self.parameters)
        self.resources = StackBuilder(template, self.template_path.parent, resolver, {
            name: self.client(name) for name in ("s3", "sqs", "lambda", "iam", "stepfunctions", "secretsmanager")
        }).build()
        for fn in self.resources.functions.values():
            lambdas.register(fn)
        lambdas.install_hook()
        created = self.resources.resolver.attributes
        self._env.set({var: str(created[lid][attr]) for var, (lid, attr) in _OUTPUTS.items() if lid in created})
        if self.start_pollers:
            for source in self.resources.event_sources:
                if source.enabled:
                    poller = SqsPoller(source, self.client("sqs"), self.client("lambda", read_timeout=900),
                                       self.region, retry_delay_s=self.retry_delay_s)
                    poller.start()
                    self.pollers.append(poller)
            self._start_schedules()
        if self.serve_gateway:
            self._start_gateway()
        self._write_state()
        log.info("local stack up: %s (moto %s)", self.template_path.name, self.endpoint_url)

    def stop(self) -> None:
        if self.gateway is not None:  # first: in-flight requests still need the database and moto
            self.gateway.stop()
            self.gateway = None
        for runner in self.schedules:
            runner.stop()
        self.schedules = []
        for poller in self.pollers:
            poller.stop()
        self.pollers = []
        if self.resources is not None:
            for fn in self.resources.functions.values():
                lambdas.unregister(fn.name)
                fn.close()  # its warm execution environments, and the connections they kept
            lambdas.uninstall_hook()
            self.resources = None
        if self._state_written:
            self._state_file.unlink(missing_ok=True)
            self._state_written = False
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        from stratus.db.connection import close_connection

        close_connection()
        if "stratus.gateway.deps" in sys.modules:  # its idle connections point at this database
            sys.modules["stratus.gateway.deps"].close_idle()
        if self._pg is not None:
            self._pg.stop()
            self._pg = None
        self._env.restore()
        self._clients = {}
        with _active_lock:
            if LocalStack._active is self:
                LocalStack._active = None

    def _start_schedules(self) -> None:
        from stratus_tools.local.scheduler import ScheduleRunner

        assert self.resources is not None
        for schedule in self.resources.schedules:
            runner = ScheduleRunner(schedule, self.client("lambda", read_timeout=900), self.region, ACCOUNT_ID)
            self.schedules.append(runner.start())

    def schedule(self, logical_id: str) -> Any:
        """The runner of a function's schedule (started with the pollers), e.g. to run it now."""
        for runner in self.schedules:
            if runner.schedule.logical_id == logical_id:
                return runner
        raise KeyError(f"no schedule runs {logical_id} (start_pollers=False starts none)")

    def _start_database(self) -> None:
        from stratus.db.migrate import migrate

        if self.settings.database_url:
            self.database_url = self.settings.database_url
        else:
            from stratus_tools.local.postgres import start_embedded

            self._pg = start_embedded(self.settings.data_dir / "pg")
            self.database_url = self._pg.url
            self._pg.watch()  # an ERROR line if it dies under us (the gateway's /health then answers 503)
        applied = migrate(self.database_url)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))

    def _start_gateway(self) -> None:
        from stratus.gateway.app import create_app
        from stratus_tools.local.server import GatewayServer

        self.gateway = GatewayServer(create_app(), port=self.gateway_port).start()
        log.info("gateway at %s", self.gateway.url)

    @property
    def gateway_url(self) -> str | None:
        """http://127.0.0.1:<port> while the gateway is served, else None."""
        return self.gateway.url if self.gateway is not None else None

    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        from stratus_tools.local import sync_executions

        sync_executions.install()  # the gateway runs the query workflow with StartSyncExecution, as on AWS
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per moto request
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        # moto calls itself back on MOTO_PORT (e.g. Step Functions -> Lambda).
        self._env.set({"MOTO_PORT": str(port)})
        # moto keeps its backends in module state: start from an empty account, as a new stack would.
        self._moto_api("reset", None)
        self._moto_api("config", {"stepfunctions": {"execute_state_machine": True}})

    def _moto_api(self, path: str, body: dict[str, Any] | None) -> None:
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/{path}", method="POST",
            data=json.dumps(body).encode() if body is not None else b"",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - our own loopback server
            pass

    # --- use ---------------------------------------------------------------------------------------
    def client(self, service: str, *, read_timeout: int = 60) -> Any:
        """A boto3 client for the local endpoint (never retries, so an invoke is never repeated)."""
        key = f"{service}:{read_timeout}"
        if key not in self._clients:
            import boto3
            from botocore.config import Config

            self._clients[key] = boto3.session.Session().client(
                service, region_name=self.region, endpoint_url=self.endpoint_url,
                aws_access_key_id="stratus-local", aws_secret_access_key="stratus-local",
                config=Config(retries={"total_max_attempts": 1}, read_timeout=read_timeout),
            )
        return self._clients[key]

    @property
    def documents_bucket(self) -> str:
        assert self.resources is not None, "the stack is not running"
        return str(self.resources.ref("DocumentsBucket"))

    def function_name(self, logical_id: str) -> str:
        assert self.resources is not None, "the stack is not running"
        return str(self.resources.ref(logical_id))

    def wait_for_ingestion(self, timeout: float = 120.0) -> bool:
        """Wait until every polled queue is empty and no batch is in flight; False on timeout."""
        import time

        deadline = time.monotonic() + timeout
        return all(p.wait_idle(max(0.0, deadline - time.monotonic())) for p in self.pollers)

    def _write_state(self) -> None:
        self._state_file.parent.mkdir(parents=True, exist_ok=True)
        self._state_file.write_text(json.dumps({
            "pid": os.getpid(), "endpoint_url": self.endpoint_url, "database_url": self.database_url,
            "region": self.region,
            **{var: os.environ.get(var) for var in _OUTPUTS},
            **({"gateway_url": self.gateway_url} if self.gateway is not None else {}),
        }, indent=2))
        self._state_written = True


def running_stack(settings: Settings | None = None) -> dict[str, Any] | None:
    """The state of a local stack another process runs on this data folder (alive and reachable)."""
    import socket
    from urllib.parse import urlsplit

    settings = settings or get_settings()
    state = _read_state(settings.data_dir / "stack.json")
    if not state.get("pid") or state["pid"] == os.getpid():
        return None
    try:
        os.kill(int(state["pid"]), 0)
        endpoint = urlsplit(str(state["endpoint_url"]))
        socket.create_connection((endpoint.hostname, endpoint.port), timeout=2).close()
    except (OSError, ValueError, TypeError):
        return None
    return state


@contextmanager
def attached(state: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Point this process's handlers and clients at a stack that another process runs."""
    env = EnvOverlay()
    env.set({
        "AWS_ACCESS_KEY_ID": "stratus-local", "AWS_SECRET_ACCESS_KEY": "stratus-local",
        "AWS_DEFAULT_REGION": state["region"], "STRATUS_AWS_ENDPOINT_URL": state["endpoint_url"],
        "DATABASE_URL": state["database_url"], **{var: state.get(var) for var in _OUTPUTS},
    })
    try:
        yield state
    finally:
        env.restore()


def _read_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
