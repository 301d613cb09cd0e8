// Release v1: products have a `name`.
import { serve } from '../app.js';

serve({
  release: 'v1',
  read: 'SELECT id, name FROM products ORDER BY id',
  write: 'INSERT INTO products (name) VALUES ($1) RETURNING id',
});
