"""Where application connections go, and as whom: one rule (`app_conninfo`), no database needed.

Locally DATABASE_URL is the owner's URL and the application logs in to the same server as stratus_app; on
AWS it logs in to RDS Proxy as stratus_app with a fresh IAM auth token per connection, over TLS; the master
secret is never used for it."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from stratus.aws.clients import client, reset_clients
from stratus.config import ConfigError, load_settings
from stratus.db.connection import app_conninfo, app_url

PROXY = "stratus-dev-proxy.proxy-abcdefghijkl.us-east-1.rds.amazonaws.com"


def test_the_owner_url_becomes_the_same_server_as_the_application_role() -> None:
    local = "postgresql://postgres:@/postgres?host=/work/main/.stratus/pg"
    assert conninfo_to_dict(app_url(local)) == {"user": "stratus_app", "dbname": "postgres",
                                                "host": "/work/main/.stratus/pg"}
    remote = "postgresql://stratus_admin:s3cret@db.internal:5433/stratus?sslmode=require"
    assert conninfo_to_dict(app_url(remote, "reader")) == {
        "user": "reader", "host": "db.internal", "port": "5433", "dbname": "stratus", "sslmode": "require"}
    assert "s3cret" not in app_url("host=db user=admin password=s3cret dbname=stratus")


def test_locally_the_app_uses_database_url_as_stratus_app() -> None:
    settings = load_settings(database_url="postgresql://postgres:pw@/postgres?host=/tmp/pg")
    assert conninfo_to_dict(app_conninfo(settings=settings)) == {"user": "stratus_app", "dbname": "postgres",
                                                                 "host": "/tmp/pg"}


def test_an_explicit_app_url_wins_over_the_proxy_and_database_url() -> None:
    settings = load_settings(database_url="postgresql://postgres@/postgres?host=/tmp/pg",
                             database_proxy_endpoint=PROXY,
                             database_app_url="postgresql://stratus_app:pw@127.0.0.1:6432/postgres")
    assert app_conninfo(settings=settings) == "postgresql://stratus_app:pw@127.0.0.1:6432/postgres"


def test_on_aws_the_app_logs_in_to_the_proxy_with_a_new_iam_token_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Real botocore presigning (offline: a token is a SigV4-signed URL, made without calling AWS).
    for name, value in {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
                        "AWS_SESSION_TOKEN": "session"}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(env="prod", documents_bucket="docs", database_proxy_endpoint=PROXY,
                             database_secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:master",
                             aws_region="us-east-1")
    monkeypatch.setattr("stratus.aws.clients.get_settings", lambda: settings)
    reset_clients()
    try:
        rds = client("rds")
        signed: list[dict[str, object]] = []
        real = rds.generate_db_auth_token

        def spy(**kwargs: object) -> str:
            signed.append(kwargs)
            return real(**kwargs)

        monkeypatch.setattr(rds, "generate_db_auth_token", spy)
        first = conninfo_to_dict(app_conninfo(settings=settings))
        second = conninfo_to_dict(app_conninfo(settings=settings))
    finally:
        reset_clients()
    assert {k: first[k] for k in ("host", "port", "user", "dbname", "sslmode")} == {
        "host": PROXY, "port": "5432", "user": "stratus_app", "dbname": "stratus", "sslmode": "require"}
    token = first["password"]
    assert token.startswith(f"{PROXY}:5432/?") and "Action=connect" in token and "DBUser=stratus_app" in token
    assert "X-Amz-Signature=" in token and "secretsmanager" not in token
    # One token per connection (a token lasts 15 minutes; a connection, once open, does not need it again).
    assert len(signed) == 2 and second["host"] == PROXY
    assert signed[0] == {"DBHostname": PROXY, "Port": 5432, "DBUsername": "stratus_app", "Region": "us-east-1"}


def test_no_database_configured_names_the_variables() -> None:
    with pytest.raises(ConfigError, match="STRATUS_DATABASE_PROXY_ENDPOINT.*STRATUS_DATABASE_APP_URL.*DATABASE_URL"):
        app_conninfo(settings=load_settings(database_url=None))


@pytest.mark.parametrize(("field", "value", "variable"), [
    ("database_proxy_endpoint", "https://proxy.example", "STRATUS_DATABASE_PROXY_ENDPOINT"),
    ("database_app_user", "Robert'); DROP TABLE", "STRATUS_DATABASE_APP_USER"),
    ("database_app_url", "mysql://x", "STRATUS_DATABASE_APP_URL"),
    ("database_port", "0", "STRATUS_DATABASE_PORT"),
])
def test_a_bad_database_setting_names_its_variable(field: str, value: str, variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(**{field: value})


def test_outside_local_mode_the_proxy_alone_is_enough() -> None:
    settings = load_settings(env="prod", documents_bucket="docs", database_url=None, database_secret_arn=None,
                             database_proxy_endpoint=PROXY)
    assert settings.database_proxy_endpoint == PROXY
