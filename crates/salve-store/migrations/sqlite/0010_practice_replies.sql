-- System replies to a number that belongs to no patient (the opt-out confirmation to an unknown
-- sender): sealed under the practice key, sent by the outbox worker like patients' jobs.
CREATE TABLE practice_replies (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    triage_id TEXT REFERENCES inbound_triage (id),
    recipient BLOB NOT NULL,
    body BLOB NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'unknown')),
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    claimed_at INTEGER,
    provider_message_id TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX practice_replies_due ON practice_replies (status, next_attempt_at);
