"""DatabaseMigrations (a CloudFormation custom resource), at deploy time: on Create and Update, apply the
pending migrations and publish the packaged prompt files, logged in as the owner (the Aurora master secret,
which only this function may read); on Delete, nothing. CloudFormation always gets an answer.

Not a request-path function: the app functions log in as stratus_app through RDS Proxy and never migrate.
"""

from __future__ import annotations

from typing import Any

from stratus.aws.custom_resource import custom_resource
from stratus.observability import observe

obs = observe("migrate")  # a bad configuration fails at cold start, naming the variable


@obs.handler(correlation_id=lambda event: event.get("RequestId"))
@custom_resource(physical_id="stratus-database-migrations")
def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    from stratus.config import get_settings
    from stratus.db.connection import connect, database_url
    from stratus.db.migrate import migrate
    from stratus.prompts.registry import sync_prompts

    url = database_url(get_settings())  # the owner's login
    with obs.step("migrate"):
        applied = migrate(url)
    with obs.step("publish_prompts"), connect(url, app_role=False) as conn:
        report = sync_prompts(conn)
    obs.logger.info("database ready", extra={"migrations_applied": applied, "prompts_published": report.published})
    return {"MigrationsApplied": ",".join(applied) or "none", "PromptsPublished": str(len(report.published))}
