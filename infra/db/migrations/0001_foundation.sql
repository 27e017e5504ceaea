-- Foundation schema: tenants, versioned documents, chunks with lexical and dense indexes, BM25
-- corpus statistics, and Row Level Security on every tenant-owned table.
--
-- The application runs as role stratus_app (no BYPASSRLS); each transaction binds its tenant with
-- SET LOCAL app.tenant_id. An unset tenant matches nothing.

CREATE EXTENSION IF NOT EXISTS vector;

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stratus_app') THEN
    CREATE ROLE stratus_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
  END IF;
END
$$;
-- Lets the connecting user switch to the application role (Aurora's master user is no superuser).
GRANT stratus_app TO CURRENT_USER;

CREATE TABLE tenants (
  id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  name        text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE documents (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id           text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  source_key          text NOT NULL,           -- object key below tenants/<tenant_id>/
  title               text,
  content_type        text,
  status              text NOT NULL CHECK (status IN ('pending', 'ready', 'failed', 'deleted')),
  version             integer NOT NULL DEFAULT 0,  -- active version; 0 = none was ever ingested
  content_hash        text,                    -- sha256 of the extracted text of the active version
  etag                text,
  source_version_id   text,
  source_modified_at  timestamptz,             -- LastModified of the object last applied
  source_sequencer    text,                    -- S3 event sequencer of the event last applied
  size_bytes          bigint,
  chunk_count         integer NOT NULL DEFAULT 0,
  embedding_model     text,
  error               text,                    -- why the last attempt failed; NULL after a success
  attempted_at        timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, source_key)
);

CREATE TABLE chunks (
  id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id         text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  document_id       uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
  document_version  integer NOT NULL,
  ordinal           integer NOT NULL,
  text              text NOT NULL,
  title             text,
  heading_path      text[] NOT NULL DEFAULT '{}',
  page              integer,
  metadata          jsonb NOT NULL DEFAULT '{}',
  token_count       integer NOT NULL,
  lexemes           tsvector NOT NULL,         -- to_tsvector('english', title + headings + text)
  lexeme_count      integer NOT NULL,          -- BM25 document length
  embedding_model   text NOT NULL,
  embedding         vector NOT NULL,
  UNIQUE (document_id, document_version, ordinal)
);
-- Keep vectors inline: exact scans (used to measure HNSW recall) are ~5x faster than TOASTed.
ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE PLAIN;
CREATE INDEX chunks_tenant_document ON chunks (tenant_id, document_id, document_version);
CREATE INDEX chunks_lexemes ON chunks USING gin (lexemes);
CREATE INDEX chunks_metadata ON chunks USING gin (metadata jsonb_path_ops);
-- One partial HNSW index per embedding model: the model is part of the index's identity, so a new
-- model gets its own index beside this one and vectors never mix.
CREATE INDEX chunks_embedding_minilm ON chunks
  USING hnsw ((embedding::vector(384)) vector_cosine_ops)
  WITH (m = 16, ef_construction = 64)
  WHERE embedding_model = 'all-MiniLM-L6-v2-int8';

-- BM25 corpus statistics per tenant, maintained in the ingest transaction.
CREATE TABLE lexical_stats (
  tenant_id     text PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  chunk_count   bigint NOT NULL DEFAULT 0,
  total_length  bigint NOT NULL DEFAULT 0
);
CREATE TABLE lexical_terms (
  tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  term       text NOT NULL,
  df         integer NOT NULL,
  PRIMARY KEY (tenant_id, term)
);

-- Row Level Security: FORCE applies it to the tables' owner too.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
  USING (id = current_setting('app.tenant_id', true))
  WITH CHECK (id = current_setting('app.tenant_id', true));

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['documents', 'chunks', 'lexical_stats', 'lexical_terms'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I '
      'USING (tenant_id = current_setting(''app.tenant_id'', true)) '
      'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', t);
  END LOOP;
END
$$;

GRANT USAGE ON SCHEMA public TO stratus_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenants, documents, chunks, lexical_stats, lexical_terms
  TO stratus_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO stratus_app;
