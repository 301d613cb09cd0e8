// Release v3: step 2 of 3: read `title` (backfilled by 003), still write both columns,
// because v2 — the rollback target — reads `name`.
import { serve } from '../app.js';

serve({
  release: 'v3',
  read: 'SELECT id, title FROM products ORDER BY id',
  write: 'INSERT INTO products (name, title) VALUES ($1, $1) RETURNING id',
});
