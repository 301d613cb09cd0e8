-- Step 2 of the rename: every live version writes `title` now (v2 dual-writes), so a
-- backfill catches all older rows. `name` becomes optional so that v4 can stop writing it;
-- v2 and v3 still write it, so this breaks neither.
SET lock_timeout = '5s';
UPDATE products SET title = name WHERE title IS NULL;
ALTER TABLE products ALTER COLUMN name DROP NOT NULL;
