-- Response cache: answers keyed on tenant, prompt version, model alias, generation parameters and the
-- retrieved chunks, found exactly (hash of the normalised question + the full context fingerprint) or
-- semantically (cosine similarity of question embeddings within the same scope).
--
-- Depends only on 0001 (tenants, the vector extension, the stratus_app role).

CREATE TABLE response_cache (
  id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id            text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  scope_key            text NOT NULL,          -- sha256(tenant, prompt hash, model alias, params hash)
  exact_key            text NOT NULL,          -- sha256(scope, normalised question, context fingerprint)
  prompt_hash          text NOT NULL,
  model_alias          text NOT NULL,
  params_hash          text NOT NULL,
  context_fingerprint  text NOT NULL,          -- sha256 over the sorted (chunk, document, version) given
  cited_refs           text[] NOT NULL DEFAULT '{}',  -- '<chunk_id>@<document_version>' the answer cited
  citations            jsonb NOT NULL DEFAULT '[]',   -- [{number, chunk_id}] as numbered when stored
  question             text NOT NULL,          -- as asked (for operators; the key uses the normalised form)
  guard                text NOT NULL,          -- numbers and polarity words a semantic hit must share
  embedding_model      text,
  embedding            vector(384),            -- NULL: the entry can only hit exactly
  response             jsonb NOT NULL,
  hits                 integer NOT NULL DEFAULT 0,
  last_hit_at          timestamptz,
  created_at           timestamptz NOT NULL DEFAULT now(),
  expires_at           timestamptz NOT NULL,
  CHECK ((embedding IS NULL) = (embedding_model IS NULL)),
  UNIQUE (tenant_id, exact_key)                -- the exact lookup; a re-store replaces the entry
);
-- Keep vectors inline (the response JSON is what gets TOASTed): the semantic lookup reads every
-- vector in its scope.
ALTER TABLE response_cache ALTER COLUMN embedding SET STORAGE PLAIN;
-- The semantic lookup scans one scope exactly (no HNSW): a scope holds at most a few thousand live
-- entries; 5,000 took p50 ~9 ms on 2 shared cores (docs/cache.md), with no approximate-search misses
-- and no filter-vs-ANN interplay. Expiry, guard and embedding model are filtered in the same scan.
CREATE INDEX response_cache_scope ON response_cache (tenant_id, scope_key);
-- Purging expired entries, per tenant.
CREATE INDEX response_cache_expiry ON response_cache (tenant_id, expires_at);

ALTER TABLE response_cache ENABLE ROW LEVEL SECURITY;
ALTER TABLE response_cache FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON response_cache
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

GRANT SELECT, INSERT, UPDATE, DELETE ON response_cache TO stratus_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO stratus_app;
