// Release v2: `name` becomes `title`. Step 1 of 3: add `title` (expand) and write both
// columns; keep reading `name`, which every row has.
import { serve } from '../app.js';

serve({
  release: 'v2',
  read: 'SELECT id, name FROM products ORDER BY id',
  write: 'INSERT INTO products (name, title) VALUES ($1, $1) RETURNING id',
});
