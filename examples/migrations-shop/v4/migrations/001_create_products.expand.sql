-- A new table: nothing uses it yet, so nothing here can break a running version.
CREATE TABLE products (
  id serial PRIMARY KEY,
  name text NOT NULL
);
INSERT INTO products (name) VALUES ('apple'), ('pear'), ('plum');
