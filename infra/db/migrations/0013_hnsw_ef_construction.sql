-- The MiniLM HNSW index is rebuilt with ef_construction = 128 (0001 built it with 64). At 100k chunks
-- the graph built with 64 left recall@10 at 0.92-0.94 at ef_search = 200 (strict ordering was no
-- better) and needed ef_search = 400 to pass 0.95 without a metadata filter. Built with 128 it reaches
-- >= 0.98 with tenant and metadata filters at ef_search = 200 (docs/retrieval.md, "Dense"), for about
-- twice the build time; 200 gained nothing more.
-- m stays 16: the index size (and so what must stay in memory) does not change.
--
-- The new index is built beside the old one and swapped in the same transaction: searches keep using
-- the old index while the new one builds (CREATE INDEX blocks writes to chunks, not reads), and the
-- swap holds its exclusive lock only from the DROP to the commit.
CREATE INDEX chunks_embedding_minilm_next ON chunks
  USING hnsw ((embedding::vector(384)) vector_cosine_ops)
  WITH (m = 16, ef_construction = 128)
  WHERE embedding_model = 'all-MiniLM-L6-v2-int8';
DROP INDEX chunks_embedding_minilm;
ALTER INDEX chunks_embedding_minilm_next RENAME TO chunks_embedding_minilm;
