-- Break-glass grants and messaging guidelines (SQLite). Keep in step with ../postgres/.

-- A clinician's time-limited access to a restricted patient, with a reason (sealed under the
-- practice key).
CREATE TABLE break_glass_grants (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    category TEXT NOT NULL,
    reason BLOB NOT NULL,
    granted_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX break_glass_lookup ON break_glass_grants (patient_id, user_id, expires_at);
CREATE INDEX break_glass_practice ON break_glass_grants (practice_id, granted_at);

ALTER TABLE practices ADD COLUMN break_glass_minutes INTEGER NOT NULL DEFAULT 60;

-- The practice's messaging guidelines, versioned; staff acknowledge each version.
CREATE TABLE guidelines (
    practice_id TEXT NOT NULL REFERENCES practices (id),
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (practice_id, version)
);

CREATE TABLE guideline_acknowledgments (
    practice_id TEXT NOT NULL REFERENCES practices (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    version INTEGER NOT NULL,
    acknowledged_at INTEGER NOT NULL,
    PRIMARY KEY (practice_id, user_id, version)
);
