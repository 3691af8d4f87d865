-- Staff disabled in one practice (PostgreSQL). Keep in step with ../sqlite/0016_practice_disable.sql.

-- A membership can be disabled on its own: the person keeps their account and their other
-- practices, but cannot sign in to or act in this one. `users.disabled_at` still disables an
-- account everywhere (the operator's CLI).
ALTER TABLE memberships ADD COLUMN disabled_at BIGINT;

-- A coarse description of the client a session signed in from ("Firefox on Linux"), for the
-- sessions list. Never the raw user agent or the address (those are sealed in audit rows).
ALTER TABLE sessions ADD COLUMN client TEXT;
