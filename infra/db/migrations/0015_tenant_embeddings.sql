-- Per-tenant embedding model and blue/green re-embedding (docs/retrieval.md#changing-the-embedding-model).
--
-- A chunk row keeps the vector of the deployment's model (STRATUS_EMBEDDING_MODEL), which chunking needs
-- anyway for its token budget. Every other model's vectors live in chunk_embeddings, one row per chunk and
-- model, with one partial HNSW index per model (docs/decisions.md, "Where a second model's vectors live").

-- query_model: what the tenant's questions are embedded with (NULL: the deployment's model).
-- target_model: the model a running re-embedding fills; cursor: the last chunk id it embedded.
-- previous_model: the model before the last switch, kept complete until dropped, for --rollback.
CREATE TABLE tenant_embeddings (
  tenant_id        text PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  query_model      text,
  target_model     text,
  cursor           bigint NOT NULL DEFAULT 0,
  embedded         bigint NOT NULL DEFAULT 0,   -- chunks the running re-embedding has written
  total            bigint NOT NULL DEFAULT 0,   -- chunks it had to embed when it started
  started_at       timestamptz,
  previous_model   text,
  switched_at      timestamptz,
  updated_at       timestamptz NOT NULL DEFAULT now(),
  CHECK (target_model IS NULL OR target_model IS DISTINCT FROM query_model)
);

CREATE TABLE chunk_embeddings (
  chunk_id         bigint NOT NULL REFERENCES chunks (id) ON DELETE CASCADE,
  tenant_id        text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  embedding_model  text NOT NULL,
  embedding        vector NOT NULL,
  PRIMARY KEY (chunk_id, embedding_model)
);
-- MAIN, as chunks.embedding since 0017: in the row whenever it fits a page (an exact scan stays fast), out
-- of line for the largest hosted models' vectors (3,072 dimensions = 12 KB), which PLAIN cannot hold.
ALTER TABLE chunk_embeddings ALTER COLUMN embedding SET STORAGE MAIN;
CREATE INDEX chunk_embeddings_tenant_model ON chunk_embeddings (tenant_id, embedding_model, chunk_id);
-- The deployment's model has its vectors on the chunk rows; this index serves a tenant that moved away
-- from it and back while another deployment model was the default.
CREATE INDEX chunk_embeddings_minilm ON chunk_embeddings
  USING hnsw ((embedding::vector(384)) vector_cosine_ops)
  WITH (m = 16, ef_construction = 128)
  WHERE embedding_model = 'all-MiniLM-L6-v2-int8';

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['tenant_embeddings', 'chunk_embeddings'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I '
      'USING (tenant_id = current_setting(''app.tenant_id'', true)) '
      'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', t);
  END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_embeddings, chunk_embeddings TO stratus_app;
