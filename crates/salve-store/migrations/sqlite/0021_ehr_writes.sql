-- Writing into the practice's EHR (sqlite). Keep in step with ../postgres/.
-- One connection per practice: its FHIR endpoint, how Salve authenticates there (a bearer
-- token, or as a SMART backend-services client with a key Salve generated), and what it writes.
-- Secrets (the bearer token, the private key) are sealed under the practice's
-- provider-credential key; the public JWK Set is not secret.
CREATE TABLE ehr_connections (
    practice_id TEXT PRIMARY KEY NOT NULL REFERENCES practices (id),
    base_url TEXT NOT NULL,
    auth_kind TEXT NOT NULL,
    bearer_token BLOB,
    client_id TEXT,
    token_url TEXT,
    private_key BLOB,
    key_id TEXT,
    public_jwks TEXT,
    -- The EHR's identifier system for the MRN: how a Salve patient is found there.
    patient_identifier_system TEXT NOT NULL,
    -- 'communication' (each message) or 'document' (each closed conversation, a PDF).
    write_mode TEXT NOT NULL,
    push_consent INTEGER NOT NULL,
    enabled INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The EHR write queue, filled in the transaction of the event it records (a message, a
-- conversation closed, a consent change). Ids only: the resource is built from the records
-- when it is sent, so nothing here needs sealing. The reason of a failure is PHI-free.
CREATE TABLE ehr_writes (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    -- 'communication' (subject: a message), 'document' (a conversation), 'consent' (an event).
    kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    conversation_id TEXT,
    -- pending, sending, written, failed
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    claimed_by TEXT,
    claimed_at INTEGER,
    -- The resource's id in the EHR once written.
    remote_id TEXT,
    error_kind TEXT,
    reason TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX ehr_writes_due ON ehr_writes (status, next_attempt_at);
CREATE INDEX ehr_writes_subject ON ehr_writes (practice_id, subject_id);
CREATE INDEX ehr_writes_conversation ON ehr_writes (conversation_id);
