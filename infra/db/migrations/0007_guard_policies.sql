-- Guard policies: per tenant, what each rail does (block, redact, flag or off) and at what threshold.
-- A tenant without a row gets the defaults in stratus/guard/policy.py; the row stores only what the
-- tenant changed, so new rails and new defaults reach every tenant that did not opt out.

CREATE TABLE guard_policies (
  tenant_id   text PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  policy      jsonb NOT NULL DEFAULT '{}',
  updated_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE guard_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE guard_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON guard_policies
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

GRANT SELECT, INSERT, UPDATE, DELETE ON guard_policies TO stratus_app;
