-- Step 1 of the rename: a nullable column. v1 does not know it and keeps working;
-- v2 writes both columns.
SET lock_timeout = '5s';
ALTER TABLE products ADD COLUMN title text;
