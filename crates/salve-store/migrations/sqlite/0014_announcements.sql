-- General practice announcements: one text to many patients. The text (and the channel
-- policy's decision, which quotes it) is sealed under the practice key; the filter holds
-- catalog ids only. Counts are kept on the row for the list; the progress is read from the
-- recipients and their messages.
CREATE TABLE announcements (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    body BLOB NOT NULL,
    decision BLOB NOT NULL,
    route TEXT NOT NULL CHECK (route IN ('direct', 'secure')),
    filter TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'scheduled', 'sending', 'done', 'cancelled')),
    scheduled_at INTEGER,
    started_at INTEGER,
    finished_at INTEGER,
    recipient_count INTEGER NOT NULL,
    queued_count INTEGER NOT NULL,
    held_count INTEGER NOT NULL,
    created_by_kind TEXT NOT NULL,
    created_by_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX announcements_due ON announcements (status, scheduled_at);
CREATE INDEX announcements_practice ON announcements (practice_id, created_at);

-- Each patient chosen when the send started, once: the primary key is what sends an
-- announcement to a patient at most once across restarts and instances.
CREATE TABLE announcement_recipients (
    announcement_id TEXT NOT NULL REFERENCES announcements (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    practice_id TEXT NOT NULL REFERENCES practices (id),
    state TEXT NOT NULL CHECK (state IN ('pending', 'queued', 'held_back')),
    hold_reason TEXT CHECK (hold_reason IN ('no_consent', 'opted_out_during_send', 'no_contact_point', 'confidential_request', 'cancelled')),
    message_id TEXT REFERENCES messages (id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (announcement_id, patient_id)
);
CREATE INDEX announcement_recipients_state ON announcement_recipients (announcement_id, state);
