"""PgBouncer in transaction mode: the local stand-in for RDS Proxy.

    with pgbouncer(server_url, pool_size=4) as bouncer:
        conn = connect(bouncer.url)   # stratus_app through the pooler, as on AWS through RDS Proxy

Like RDS Proxy, it multiplexes many client connections onto at most `pool_size` server connections per
(database, user), handing a server connection to a client for one transaction at a time; so nothing may
rely on session state (SET, session advisory locks, prepared statements, temporary tables). It admits
only the users it is given (the application role by default), as the proxy admits only the database users
it has auth entries for.

It listens on a free loopback TCP port and reaches the server at `server_url`'s host, which may be a Unix
socket folder (the embedded server listens on one only). Client authentication is `trust` and the server
is reached with the password written in the userlist (none for the embedded server, which trusts local
logins): a development stand-in, not a security boundary. PgBouncer refuses to run as root, so under root
it drops to the embedded server's system user `pgserver` (or `nobody`) with `-u`, and its folder is
handed to that user.

Debian/Ubuntu: `apt-get install pgbouncer` (`make test` does it); the binary is /usr/sbin/pgbouncer.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stratus.db.connection import APP_ROLE
from stratus_tools.local.ports import free_port

_CANDIDATES = ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/local/bin/pgbouncer")


class PgBouncerError(RuntimeError):
    pass


def find_pgbouncer() -> str | None:
    """The pgbouncer binary: on PATH, or where Debian and Homebrew put it (sbin is not on every PATH)."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    return next((c for c in _CANDIDATES if os.access(c, os.X_OK)), None)


def version(binary: str | None = None) -> str:
    """`PgBouncer 1.18.0`, or '' when it is not installed."""
    binary = binary or find_pgbouncer()
    if binary is None:
        return ""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0].strip() if out else ""


@dataclass
class PgBouncer:
    """A running PgBouncer: `url` logs in as the first of its users (the application role)."""

    url: str
    host: str
    port: int
    dbname: str
    pool_size: int
    folder: Path
    process: subprocess.Popen[bytes]

    def url_for(self, user: str) -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{self.dbname}?sslmode=disable"

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: immediate shutdown, server connections closed
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _run_as() -> pwd.struct_passwd | None:
    """The user PgBouncer runs as when we are root: the embedded server's own user, else nobody."""
    if os.geteuid() != 0:
        return None
    for name in ("pgserver", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PgBouncerError("running as root, and neither a 'pgserver' nor a 'nobody' user exists to run pgbouncer")


def _quote(value: str) -> str:
    """A value in a PgBouncer connection string."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_config(folder: Path, *, server_host: str, server_port: int, dbname: str, port: int,
                 users: dict[str, str], pool_size: int, max_client_conn: int) -> Path:
    """pgbouncer.ini and userlist.txt in `folder`; returns the ini file."""
    target = f"host={_quote(server_host)} port={server_port} dbname={_quote(dbname)}"
    ini = folder / "pgbouncer.ini"
    ini.write_text("\n".join([
        "[databases]",
        f"{dbname} = {target}",
        "",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",  # TCP only
        "pool_mode = transaction",
        f"default_pool_size = {pool_size}",
        "min_pool_size = 0",
        "reserve_pool_size = 0",
        f"max_db_connections = {pool_size}",
        f"max_client_conn = {max_client_conn}",
        "auth_type = trust",
        f"auth_file = {folder / 'userlist.txt'}",
        f"logfile = {folder / 'pgbouncer.log'}",
        f"pidfile = {folder / 'pgbouncer.pid'}",
        "log_connections = 0",
        "log_disconnections = 0",
        "server_login_retry = 1",
        "",
    ]))
    (folder / "userlist.txt").write_text(
        "".join(f'"{user}" "{password}"\n' for user, password in users.items())
    )
    return ini


def _wait_ready(process: subprocess.Popen[bytes], port: int, folder: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (folder / "pgbouncer.log").read_text(errors="replace") if (folder / "pgbouncer.log").exists() else ""
            raise PgBouncerError(f"pgbouncer exited with {process.returncode}:\n{log[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise PgBouncerError(f"pgbouncer did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s")


@contextmanager
def pgbouncer(server_url: str, *, pool_size: int = 4, users: dict[str, str] | None = None,
              max_client_conn: int = 500, folder: Path | None = None, binary: str | None = None,
              timeout_s: float = 10.0) -> Iterator[PgBouncer]:
    """PgBouncer (transaction pooling, `pool_size` server connections at most) in front of `server_url`,
    stopped and its folder removed on exit. `users` maps the users it admits to the passwords it logs in
    to the server with (default: the application role, no password)."""
    from psycopg.conninfo import conninfo_to_dict

    if pool_size < 1:
        raise ValueError("pool_size must be at least 1")
    binary = binary or find_pgbouncer()
    if binary is None:
        raise PgBouncerError("pgbouncer is not installed (Debian/Ubuntu: apt-get install pgbouncer; `make test` "
                             "installs it)")
    params = conninfo_to_dict(server_url)
    server_host = str(params.get("host") or "/var/run/postgresql")
    server_port = int(params.get("port") or 5432)
    dbname = str(params.get("dbname") or "postgres")
    users = users if users is not None else {APP_ROLE: ""}
    if not users:
        raise ValueError("pgbouncer needs at least one user to admit")

    owner = _run_as()
    made = folder is None
    folder = Path(tempfile.mkdtemp(prefix="stratus-pgbouncer-")) if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    ini = write_config(folder, server_host=server_host, server_port=server_port, dbname=dbname, port=port,
                       users=users, pool_size=pool_size, max_client_conn=max_client_conn)
    command = [binary, "-q"]
    if owner is not None:
        for path in (folder, *folder.iterdir()):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        folder.chmod(0o700)
        command += ["-u", owner.pw_name]
    process = subprocess.Popen([*command, str(ini)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    user = next(iter(users))
    bouncer = PgBouncer(url=f"postgresql://{user}@127.0.0.1:{port}/{dbname}?sslmode=disable", host="127.0.0.1",
                        port=port, dbname=dbname, pool_size=pool_size, folder=folder, process=process)
    try:
        _wait_ready(process, port, folder, timeout_s)
        yield bouncer
    finally:
        bouncer.stop()
        if made:
            shutil.rmtree(folder, ignore_errors=True)
