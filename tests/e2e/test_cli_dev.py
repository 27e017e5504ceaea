"""`stratus dev` as a user runs it: a subprocess that prints two pasteable lines once it serves, answers the
official `openai` SDK with them, and stops everything it started on SIGTERM or SIGINT."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from queue import Empty, Queue
from urllib.parse import urlsplit

import openai
import pytest

from tests.support.cli import ROOT, STRATUS, cli_env, scratch_data_dir

READY_TIMEOUT_S = 180  # a cold start initialises PostgreSQL and applies every migration
STOP_TIMEOUT_S = 20


@pytest.fixture
def data_dir() -> Iterator[Path]:
    yield from scratch_data_dir("dev")


def _start(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(STRATUS), "dev", *args], env=cli_env(data_dir), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _lines(stream: object) -> Queue[str | None]:
    """The stream's lines as they come (None at the end), read by a thread so a wait can time out."""
    lines: Queue[str | None] = Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _read_exports(process: subprocess.Popen[str], stdout: Queue[str | None]) -> dict[str, str]:
    exports: dict[str, str] = {}
    deadline = time.monotonic() + READY_TIMEOUT_S
    while len(exports) < 2:
        try:
            line = stdout.get(timeout=max(0.0, deadline - time.monotonic()))
        except Empty:
            pytest.fail(f"stratus dev printed no base URL and key within {READY_TIMEOUT_S} s")
        if line is None:
            pytest.fail(f"stratus dev exited ({process.wait()}) before it was ready: {process.stderr.read()[-3000:]}")
        name, sep, value = line.rstrip("\n").partition("=")
        assert sep and name in ("STRATUS_BASE_URL", "STRATUS_API_KEY"), f"unexpected stdout line {line!r}"
        exports[name] = value
    return exports


def _postgres_processes(pgdata: Path) -> list[int]:
    """Processes of a PostgreSQL server running on `pgdata` (its command line names the data folder)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if any(b"postgres" in a for a in argv[:1]) and str(pgdata).encode() in b" ".join(argv):
                pids.append(int(proc.name))
    return pids


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(10)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_dev_serves_the_openai_sdk_and_stops_everything_on_a_signal(data_dir: Path, stop_signal: int) -> None:
    process = _start(data_dir, "--port", "0")
    try:
        # Given the two lines on stdout, as a user would paste them into a shell
        exports = _read_exports(process, _lines(process.stdout))
        base_url, api_key = exports["STRATUS_BASE_URL"], exports["STRATUS_API_KEY"]
        url = urlsplit(base_url)
        assert (url.scheme, url.hostname, url.path) == ("http", "127.0.0.1", "/v1") and url.port
        assert api_key.startswith("sk-stratus-")
        state = json.loads((data_dir / "stack.json").read_text())
        assert state["pid"] == process.pid and state["gateway_url"] == f"http://127.0.0.1:{url.port}"
        assert _postgres_processes(data_dir / "pg"), "the check below must see the server while it runs"

        # When the official SDK lists the models with them
        client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
        models = client.models.list()
        assert models.data and all(m.object == "model" for m in models.data)
        # And a wrong key is refused: the printed key is the one that works
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base_url, api_key=api_key[:-4] + "xxxx", max_retries=0).models.list()

        # Then a signal stops it cleanly and promptly, leaving nothing behind
        process.send_signal(stop_signal)
        assert process.wait(STOP_TIMEOUT_S) == 0, process.stderr.read()[-3000:]
        assert process.stdout.read() == ""  # nothing but the two lines ever went to stdout
        assert not _port_open(url.port)
        assert _postgres_processes(data_dir / "pg") == []
        assert not (data_dir / "stack.json").exists()
    finally:
        _stop(process)


def test_a_busy_port_is_a_usage_error_and_stops_what_had_started(data_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        process = _start(data_dir, "--port", str(port))
        try:
            _, stderr = process.communicate(timeout=READY_TIMEOUT_S)
        finally:
            _stop(process)
    assert process.returncode == 2
    assert f"stratus dev: --port: cannot listen on 127.0.0.1:{port}" in stderr
    assert _postgres_processes(data_dir / "pg") == []
    assert not (data_dir / "stack.json").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "70000"], "argument --port: 70000 is not a TCP port"),
    (["--tenant", "Not A Tenant"], "--tenant: 'Not A Tenant' is not a tenant id"),
    (["--corpus", "/nonexistent/folder"], "--corpus: /nonexistent/folder is not a folder"),
])
def test_bad_arguments_are_refused_before_anything_starts(data_dir: Path, args: list[str], message: str) -> None:
    process = _start(data_dir, *args)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2 and message in stderr
    assert not (data_dir / "pg").exists()
