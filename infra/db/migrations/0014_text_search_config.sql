-- The lexical index's text search configuration (stratus/lexical_analysis.py: TS_CONFIG).
--
-- Same parser and English stop words as `english`, but words are only lower-cased, not stemmed: on the
-- project's labelled set (evals/retrieval/) BM25 over unstemmed words beat the Snowball-stemmed index
-- (nDCG@10 0.857 against 0.834, k1=1.5 b=0.9) and the bm25s library (0.844); docs/retrieval.md has
-- the figures. Number, host, file, URL and e-mail tokens keep the `simple` mapping they have in
-- `english`. Built-in dictionary templates only, so it runs on Aurora PostgreSQL as it is.
--
-- Chunks indexed before this migration keep their `english` lexemes until their document is
-- ingested again (`stratus ingest` of the same files, or touching the objects); queries are analysed
-- with this configuration from now on.
CREATE TEXT SEARCH DICTIONARY stratus_english_words (TEMPLATE = pg_catalog.simple, STOPWORDS = english);

CREATE TEXT SEARCH CONFIGURATION stratus_english (COPY = pg_catalog.english);
ALTER TEXT SEARCH CONFIGURATION stratus_english
  ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part
  WITH stratus_english_words;
