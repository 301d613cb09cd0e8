-- Step 3 of the rename: nothing running reads or writes `name` once v3 is retired.
-- Contract: Cutover records it as pending and applies it only then.
SET lock_timeout = '5s';
ALTER TABLE products DROP COLUMN name;
