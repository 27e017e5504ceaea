-- Generations: one row per answer the generate function produced (or served from cache), with what a
-- trace needs: the prompt version that built it, the deployment that answered, every attempt, tokens
-- and cost. Tenant model overrides: a tenant's own ordered deployments for an alias.

CREATE TABLE generations (
  id               bigserial PRIMARY KEY,
  tenant_id        text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  request_id       text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  mode             text NOT NULL CHECK (mode IN ('rag', 'chat')),
  model_alias      text NOT NULL,
  deployment       text,                     -- NULL when served from cache or when every attempt failed
  provider         text,
  model            text,
  prompt_name      text NOT NULL,
  prompt_version   integer NOT NULL,
  prompt_hash      text NOT NULL,
  status           text NOT NULL CHECK (status IN ('ok', 'failed')),
  error_code       text,
  cache_status     text NOT NULL CHECK (cache_status IN ('hit_exact', 'hit_semantic', 'miss', 'bypass')),
  cache_similarity real,
  input_tokens     integer NOT NULL DEFAULT 0,
  output_tokens    integer NOT NULL DEFAULT 0,
  cached_input_tokens integer NOT NULL DEFAULT 0,
  cost_usd         numeric(14, 10) NOT NULL DEFAULT 0,
  latency_ms       real NOT NULL,
  chunk_ids        bigint[] NOT NULL DEFAULT '{}',   -- the passages the prompt was built from
  cited_chunk_ids  bigint[] NOT NULL DEFAULT '{}',
  attempts         jsonb NOT NULL DEFAULT '[]',
  UNIQUE (tenant_id, request_id)
);
CREATE INDEX generations_tenant_time ON generations (tenant_id, created_at);

CREATE TABLE tenant_model_overrides (
  tenant_id    text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  alias        text NOT NULL CHECK (alias ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
  deployments  text[] NOT NULL CHECK (cardinality(deployments) > 0),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, alias)
);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['generations', 'tenant_model_overrides'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I '
      'USING (tenant_id = current_setting(''app.tenant_id'', true)) '
      'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', t);
  END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON generations, tenant_model_overrides TO stratus_app;
GRANT USAGE ON SEQUENCE generations_id_seq TO stratus_app;
