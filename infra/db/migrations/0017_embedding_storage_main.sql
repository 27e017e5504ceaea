-- Vectors of hosted embedding models are stored in the same untyped column (stratus/db/vector_index.py).
-- 0001 set its storage to PLAIN to keep MiniLM's 1.5 KB vectors in the row (an exact scan was 5x faster
-- than over TOASTed ones), but PLAIN cannot hold a row larger than a page: a 3,072-dimension vector
-- (12 KB) fails with "row is too big". MAIN keeps a vector in the row whenever the row fits a page
-- (384, 1,024 and 1,536 dimensions alike, as before) and moves it out of line only when it cannot.
-- Only the column's policy changes: no row is rewritten.
ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE MAIN;
