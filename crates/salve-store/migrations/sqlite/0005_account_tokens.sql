-- Single-use tokens for staff invitations and password resets (SQLite). Keep in step with
-- ../postgres/. Only the token's hash is stored.
CREATE TABLE account_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users (id),
    practice_id TEXT REFERENCES practices (id),
    purpose TEXT NOT NULL CHECK (purpose IN ('invite', 'reset')),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX account_tokens_user ON account_tokens (user_id);
