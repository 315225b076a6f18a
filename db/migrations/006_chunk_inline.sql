-- Message content is compressed and kept in the chunk's row when it then
-- fits into a page (a process message of a few kilobytes compresses to a
-- third): writing, reading and deleting it touch one row, not the row and
-- its TOAST rows and TOAST index. STORAGE EXTERNAL (002) stored every
-- content uncompressed out of line, which also meant the lz4 setting of
-- 005 was never used. A chunk that does not fit compressed (up to 1 MiB)
-- still goes out of line, compressed.
ALTER TABLE xta_chunk ALTER COLUMN data SET STORAGE MAIN;
