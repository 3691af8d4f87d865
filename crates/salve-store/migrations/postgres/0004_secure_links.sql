-- Secure links for patients and patient sessions (PostgreSQL). Keep in step with ../sqlite/.

-- A link sent to one contact point. Only the token's hash is stored; the contact point is sealed
-- under the patient's key. Date-of-birth and code failures share one budget.
CREATE TABLE secure_links (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash BYTEA NOT NULL UNIQUE,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    contact_kind TEXT NOT NULL,
    contact_value BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    locked_at BIGINT,
    failures BIGINT NOT NULL,
    code_hash BYTEA,
    code_expires_at BIGINT
);
CREATE INDEX secure_links_patient ON secure_links (patient_id);

-- One row per one-time code sent, for rate limits per link, per patient and per address.
CREATE TABLE code_sends (
    limit_key BYTEA NOT NULL,
    sent_at BIGINT NOT NULL
);
CREATE INDEX code_sends_key ON code_sends (limit_key, sent_at);

CREATE TABLE patient_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash BYTEA NOT NULL UNIQUE,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    link_id TEXT NOT NULL REFERENCES secure_links (id),
    created_at BIGINT NOT NULL,
    last_active_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT
);
