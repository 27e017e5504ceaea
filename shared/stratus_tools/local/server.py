"""The gateway served over HTTP in local mode: uvicorn in a background thread.

On AWS the gateway is uvicorn in a Lambda, behind the Lambda Web Adapter and API Gateway; locally the
same ASGI app is served by uvicorn on a loopback port, in this process. Both stream SSE as it is written.

    server = GatewayServer(create_app()).start()   # port 0: any free port
    ...  # server.url == "http://127.0.0.1:<port>"
    server.stop()

The listening socket is bound here, before uvicorn starts, so the port is known (and already
accepting into the backlog) as soon as `start()` returns, even when it was 0.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

log = logging.getLogger(__name__)


class ServerError(RuntimeError):
    """The server could not start (or stopped on its own); the message says why."""


class GatewayServer:
    """One uvicorn server for one ASGI app, in a daemon thread of this process."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *,
                 graceful_shutdown_s: float = 3.0, access_log: bool = False) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port: {port} is not a TCP port (0-65535; 0 picks a free one)")
        self.app = app
        self.host = host
        self.requested_port = port
        # Open connections (an SSE stream, a keep-alive client) get this long to finish on stop().
        self.graceful_shutdown_s = graceful_shutdown_s
        self.access_log = access_log
        self.port: int | None = None
        self._server: Any = None
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise ServerError("the gateway server is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 15.0) -> GatewayServer:
        """Bind, start serving, and return once the app's startup has run; ServerError otherwise."""
        import uvicorn

        if self._thread is not None:
            raise ServerError("the gateway server is already started")
        self._socket = _bind(self.host, self.requested_port)
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self.app, lifespan="auto", log_config=None, access_log=self.access_log,
            timeout_graceful_shutdown=max(1, round(self.graceful_shutdown_s)),
            # The gateway sets its own x-request-id; uvicorn's server/date headers add nothing locally.
            server_header=False, date_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"gateway-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._close_socket()
                why = f": {self._error!r}" if self._error is not None else ""
                raise ServerError(f"the gateway server on port {self.port} stopped during startup{why}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"the gateway server did not start within {timeout:g} s")
            time.sleep(0.01)
        log.info("gateway serving at %s", self.url)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, let open requests finish (graceful_shutdown_s), then force; idempotent."""
        thread, server = self._thread, self._server
        if thread is None or server is None:
            return
        server.should_exit = True
        thread.join(timeout if timeout is not None else self.graceful_shutdown_s + 2.0)
        if thread.is_alive():
            log.warning("gateway server still busy after graceful shutdown; forcing")
            server.force_exit = True
            thread.join(2.0)
        self._close_socket()
        self._thread = self._server = None
        self.port = None

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as err:  # noqa: BLE001 - reported by start()/the owner, never swallowed silently
            # uvicorn calls sys.exit when the app's lifespan startup fails.
            self._error = err
            log.error("gateway server stopped: %r", err)

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    # A restarted `stratus dev` can take its port back while the old sockets sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ServerError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
