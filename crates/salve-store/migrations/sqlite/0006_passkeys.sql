-- Staff passkeys (WebAuthn) and the state of ceremonies in progress (SQLite). Keep in step
-- with ../postgres/. Credentials and ceremony states are sealed under the system key; a
-- credential id is stored only as a hash, to refuse registering the same one twice.
CREATE TABLE passkeys (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    credential_hash BLOB NOT NULL UNIQUE,
    credential BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX passkeys_user ON passkeys (user_id);

-- Single use: taking a ceremony deletes it; expired ones are refused and swept.
CREATE TABLE webauthn_ceremonies (
    id TEXT PRIMARY KEY NOT NULL,
    purpose TEXT NOT NULL CHECK (purpose IN ('register', 'mfa', 'sign_in')),
    user_id TEXT REFERENCES users (id),
    session_id TEXT,
    practice_id TEXT REFERENCES practices (id),
    state BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies (expires_at);
