"""Tenants: what a tenant id may look like, in one place (S3 keys, requests and the schema agree)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

# Mirrors the CHECK on tenants.id in infra/db/migrations/0001_foundation.sql; ids appear in S3 keys.
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
TENANT_ID = re.compile(TENANT_ID_PATTERN)
TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]  # for request models
