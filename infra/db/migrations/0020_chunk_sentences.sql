-- Sentence vectors of each chunk, computed at ingestion in the same embedding batch as the chunk's own
-- vector, so the groundedness rail embeds only the answer's sentences at answer time.
-- A sentence is identified by the 16-byte BLAKE2b digest of its text (as stratus.llm.extractive splits
-- the chunk): the rail matches digests, so a changed splitter or a rewritten (fenced) passage simply
-- misses and falls back to embedding that sentence. halfvec: half the storage (about 7 KB per chunk of
-- ten sentences at 384 dimensions); cosine changes by under 1e-3. Rows are tagged with the embedding
-- model, so a tenant on another model (and a re-index beside the old one) never mixes vectors.
-- Chunks ingested before this migration have no rows: the rail embeds their sentences as before.

CREATE TABLE chunk_sentences (
  chunk_id         bigint NOT NULL REFERENCES chunks (id) ON DELETE CASCADE,
  tenant_id        text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  ordinal          integer NOT NULL,
  digest           bytea NOT NULL,
  embedding_model  text NOT NULL,
  embedding        halfvec NOT NULL,
  PRIMARY KEY (chunk_id, embedding_model, ordinal)
);
ALTER TABLE chunk_sentences ALTER COLUMN embedding SET STORAGE PLAIN;

ALTER TABLE chunk_sentences ENABLE ROW LEVEL SECURITY;
ALTER TABLE chunk_sentences FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON chunk_sentences
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

GRANT SELECT, INSERT, UPDATE, DELETE ON chunk_sentences TO stratus_app;
