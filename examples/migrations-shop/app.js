// The shop service of the migrations example: a tiny HTTP service on PostgreSQL (pg).
// Each release directory (v1…v4) has a server.js that calls serve() with the SQL that release
// uses, so the difference between releases is exactly the queries. Cutover sets PORT; the
// database URL comes from DATABASE_URL (the compatibility run points it at a shadow database).
//   GET  /health          200 when the database answers
//   GET  /                the products, read with this release's query
//   POST /products?title= add a product, written with this release's query (or a JSON body {"title": …})
import http from 'node:http';
import pg from 'pg';

export function serve({ release, read, write }) {
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
  pool.on('error', () => {}); // a dropped connection is the next query's error
  const port = Number(process.env.PORT ?? 3000);
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const send = (status, body) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    try {
      if (url.pathname === '/health') {
        await pool.query('SELECT 1');
        return send(200, { ok: true, release });
      }
      if (url.pathname === '/' && req.method === 'GET') {
        const { rows } = await pool.query(read);
        return send(200, { release, products: rows });
      }
      if (url.pathname === '/products' && req.method === 'POST') {
        let title = url.searchParams.get('title');
        if (title === null && (req.headers['content-type'] ?? '').includes('json')) {
          let raw = '';
          for await (const chunk of req) raw += chunk;
          title = raw ? (JSON.parse(raw).title ?? null) : null;
        }
        title ??= 'unnamed';
        const { rows } = await pool.query(write, [title]);
        return send(201, { release, id: rows[0].id });
      }
      send(404, { error: 'not found' });
    } catch (err) {
      // The database's own words: the compatibility run shows them when a version fails.
      send(500, { release, error: err.message });
    }
  });
  server.listen(port, '127.0.0.1');
  process.on('SIGTERM', () => server.close(() => pool.end().then(() => process.exit(0))));
}
