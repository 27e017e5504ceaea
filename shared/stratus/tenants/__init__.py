"""Tenants: what a tenant id may look like, in one place (S3 keys, requests and the schema agree).

May import: errors. Never stratus_tools; no cycles (pyproject.toml, [tool.importlinter]).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

from stratus.errors import InvalidInput

# Mirrors the CHECK on tenants.id in infra/db/migrations/0001_foundation.sql; ids appear in S3 keys.
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
TENANT_ID = re.compile(TENANT_ID_PATTERN)
TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]  # for request models


def check_tenant_id(tenant_id: str) -> str:
    """`tenant_id` if it is a valid tenant id; InvalidInput (field tenant_id) otherwise."""
    if not isinstance(tenant_id, str) or not TENANT_ID.match(tenant_id):
        raise InvalidInput(f"tenant_id {tenant_id!r} must match {TENANT_ID_PATTERN}", field="tenant_id")
    return tenant_id
