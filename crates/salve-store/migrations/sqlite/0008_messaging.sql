-- Messaging (SQLite). Keep in step with ../postgres/. Message bodies, attachments, outbox
-- recipients and bodies, consent evidence and confidential-communication rules are sealed with
-- the patient's key, bound to their row. Catalog names, templates and consent texts are the
-- practice's own wording, not PHI, and stay in clear.

-- What a practice shows in texts and system messages, and its front-desk setting.
CREATE TABLE practice_messaging (
    practice_id TEXT PRIMARY KEY NOT NULL REFERENCES practices (id),
    sender_name TEXT NOT NULL,
    phone TEXT NOT NULL,
    hours_text TEXT NOT NULL,
    expected_reply_text TEXT NOT NULL,
    on_call_number TEXT,
    front_desk_sees_clinical INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Appointment types, locations and providers, with the practice's SMS-safe flag.
CREATE TABLE catalog_items (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    kind TEXT NOT NULL CHECK (kind IN ('appointment_type', 'location', 'provider')),
    name TEXT NOT NULL,
    sms_safe INTEGER NOT NULL,
    active INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (practice_id, kind, name)
);

CREATE TABLE reply_templates (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    active INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (practice_id, name)
);

-- Consent texts as shown to patients, versioned; the hash is what events cite.
CREATE TABLE consent_texts (
    practice_id TEXT NOT NULL REFERENCES practices (id),
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (practice_id, version)
);

-- Append-only: the effective state is computed from the history.
CREATE TABLE consent_events (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    channel TEXT NOT NULL,
    purpose TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('grant', 'revoke')),
    method TEXT NOT NULL,
    consent_text_version TEXT,
    consent_text_sha256 TEXT,
    sms_risk_acknowledged INTEGER NOT NULL,
    recorded_by_kind TEXT NOT NULL,
    recorded_by_id TEXT NOT NULL,
    evidence BLOB,
    source_message_id TEXT,
    recorded_at INTEGER NOT NULL
);
CREATE INDEX consent_events_patient ON consent_events (patient_id, recorded_at);

-- One main thread per patient (is_main = 1), plus topic threads.
CREATE TABLE conversations (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    is_main INTEGER NOT NULL,
    topic BLOB,
    state TEXT NOT NULL CHECK (state IN ('open', 'snoozed', 'closed')),
    snoozed_until INTEGER,
    assigned_user TEXT REFERENCES users (id),
    assigned_team TEXT REFERENCES teams (id),
    last_message_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX conversations_main ON conversations (patient_id) WHERE is_main = 1;
CREATE INDEX conversations_inbox ON conversations (practice_id, last_message_at);

CREATE TABLE messages (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound', 'note', 'system')),
    channel TEXT CHECK (channel IN ('portal', 'sms', 'email')),
    kind TEXT NOT NULL CHECK (kind IN ('clinical', 'administrative')),
    author_kind TEXT NOT NULL,
    author_id TEXT NOT NULL,
    body BLOB NOT NULL,
    route TEXT CHECK (route IN ('direct', 'secure')),
    decision BLOB,
    delivery TEXT,
    status TEXT CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'unknown', 'received')),
    status_reason BLOB,
    legal_basis TEXT REFERENCES consent_events (id),
    provider_message_id TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX messages_conversation ON messages (conversation_id, created_at);

CREATE TABLE attachments (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    message_id TEXT NOT NULL REFERENCES messages (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    media_type TEXT NOT NULL,
    file_name BLOB NOT NULL,
    size INTEGER NOT NULL,
    content BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX attachments_message ON attachments (message_id);

-- Per user: the newest message they have seen in a conversation.
CREATE TABLE conversation_reads (
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    read_at INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);

CREATE TABLE confidential_requests (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    rule BLOB NOT NULL,
    method TEXT NOT NULL,
    evidence BLOB,
    recorded_by_kind TEXT NOT NULL,
    recorded_by_id TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    withdrawn_at INTEGER,
    withdrawn_by TEXT
);
CREATE INDEX confidential_requests_patient ON confidential_requests (patient_id);

-- The transactional outbox: committed with its message and audit row, sent by a worker.
CREATE TABLE outbox_jobs (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    message_id TEXT NOT NULL REFERENCES messages (id),
    medium TEXT NOT NULL CHECK (medium IN ('sms', 'email')),
    purpose TEXT,
    consent_channel TEXT,
    legal_basis TEXT REFERENCES consent_events (id),
    recipient BLOB NOT NULL,
    body BLOB NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'unknown', 'cancelled')),
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    claimed_by TEXT,
    claimed_at INTEGER,
    provider_message_id TEXT,
    last_error_kind TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX outbox_jobs_due ON outbox_jobs (status, next_attempt_at);
CREATE INDEX outbox_jobs_message ON outbox_jobs (message_id);

-- Ids and kinds of inbox changes, for live updates and for instances that missed a NOTIFY.
CREATE TABLE inbox_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    conversation_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX inbox_changes_practice ON inbox_changes (practice_id, seq);
