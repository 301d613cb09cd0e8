// Release v4: step 3 of 3: only `title`. The old column is dropped by a contract migration,
// which Cutover holds until v3 (which still writes `name`) is retired.
import { serve } from '../app.js';

serve({
  release: 'v4',
  read: 'SELECT id, title FROM products ORDER BY id',
  write: 'INSERT INTO products (title) VALUES ($1) RETURNING id',
});
