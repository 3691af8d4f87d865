-- Secure links for patients and patient sessions (SQLite). Keep in step with ../postgres/.

-- A link sent to one contact point. Only the token's hash is stored; the contact point is sealed
-- under the patient's key. Date-of-birth and code failures share one budget.
CREATE TABLE secure_links (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    contact_kind TEXT NOT NULL,
    contact_value BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    locked_at INTEGER,
    failures INTEGER NOT NULL,
    code_hash BLOB,
    code_expires_at INTEGER
);
CREATE INDEX secure_links_patient ON secure_links (patient_id);

-- One row per one-time code sent, for rate limits per link, per patient and per address.
CREATE TABLE code_sends (
    limit_key BLOB NOT NULL,
    sent_at INTEGER NOT NULL
);
CREATE INDEX code_sends_key ON code_sends (limit_key, sent_at);

CREATE TABLE patient_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    link_id TEXT NOT NULL REFERENCES secure_links (id),
    created_at INTEGER NOT NULL,
    last_active_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ended_at INTEGER
);
