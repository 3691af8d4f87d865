-- Salve foundation schema (PostgreSQL). Keep in step with ../sqlite/0001_foundation.sql:
-- a test compares the two schemas. Personal data is stored only as AEAD ciphertext (BYTEA)
-- or as a keyed blind index; nothing identifying is in clear.

CREATE TABLE master_keys (
    id TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'retired')),
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

CREATE TABLE practices (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    phone_region TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    patients_generation BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Keys wrapped by the master key: per practice (practice, blind_index, audit_signing,
-- provider_credentials) and the system's own (system, system_audit_signing).
CREATE TABLE ring_keys (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT REFERENCES practices (id),
    purpose TEXT NOT NULL,
    public_key BYTEA,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX ring_keys_purpose ON ring_keys (practice_id, purpose);

CREATE TABLE key_wraps (
    key_id TEXT NOT NULL REFERENCES ring_keys (id),
    master_key_id TEXT NOT NULL REFERENCES master_keys (id),
    wrapped BYTEA NOT NULL,
    PRIMARY KEY (key_id, master_key_id)
);

CREATE TABLE patients (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    given_name BYTEA NOT NULL,
    family_name BYTEA NOT NULL,
    birth_date BYTEA NOT NULL,
    mrn BYTEA,
    mrn_index BYTEA,
    preferred_language BYTEA NOT NULL,
    time_zone TEXT,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    shredded_at BIGINT
);
CREATE INDEX patients_practice ON patients (practice_id, id);
CREATE UNIQUE INDEX patients_mrn ON patients (practice_id, mrn_index);

-- One data key per patient, wrapped by the practice key. Deleting the row shreds the patient.
CREATE TABLE patient_keys (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT NOT NULL UNIQUE REFERENCES patients (id),
    wrapping_key_id TEXT NOT NULL REFERENCES ring_keys (id),
    wrapped BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE contacts (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    position BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('phone', 'email')),
    role TEXT NOT NULL CHECK (role IN ('self', 'guardian', 'caregiver')),
    value BYTEA NOT NULL,
    lookup BYTEA
);
CREATE INDEX contacts_patient ON contacts (patient_id, position);
CREATE INDEX contacts_lookup ON contacts (practice_id, kind, lookup);

-- Patients whose keys were destroyed; restore re-applies the copy kept outside the database.
CREATE TABLE shredded_patients (
    patient_id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    shredded_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    token_hash BYTEA NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- Create requests replayed with the same Idempotency-Key return the first answer.
CREATE TABLE idempotency_keys (
    practice_id TEXT NOT NULL REFERENCES practices (id),
    actor TEXT NOT NULL,
    key_hash BYTEA NOT NULL,
    request_hash BYTEA NOT NULL,
    status BIGINT NOT NULL,
    resource_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (practice_id, actor, key_hash)
);

-- The audit trail: one hash chain per scope (a practice id, or 'system').
CREATE TABLE audit_events (
    scope TEXT NOT NULL,
    seq BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    action TEXT NOT NULL,
    targets TEXT NOT NULL,
    outcome TEXT NOT NULL,
    context BYTEA,
    context_key_id TEXT,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (scope, seq)
);

CREATE TABLE audit_heads (
    scope TEXT PRIMARY KEY NOT NULL,
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL
);

CREATE TABLE audit_checkpoints (
    scope TEXT NOT NULL,
    seq BIGINT NOT NULL,
    head_hash BYTEA NOT NULL,
    signed_at BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (scope, seq)
);
