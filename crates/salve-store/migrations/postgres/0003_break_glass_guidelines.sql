-- Break-glass grants and messaging guidelines (PostgreSQL). Keep in step with ../sqlite/.

-- A clinician's time-limited access to a restricted patient, with a reason (sealed under the
-- practice key).
CREATE TABLE break_glass_grants (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    category TEXT NOT NULL,
    reason BYTEA NOT NULL,
    granted_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX break_glass_lookup ON break_glass_grants (patient_id, user_id, expires_at);
CREATE INDEX break_glass_practice ON break_glass_grants (practice_id, granted_at);

ALTER TABLE practices ADD COLUMN break_glass_minutes BIGINT NOT NULL DEFAULT 60;

-- The practice's messaging guidelines, versioned; staff acknowledge each version.
CREATE TABLE guidelines (
    practice_id TEXT NOT NULL REFERENCES practices (id),
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (practice_id, version)
);

CREATE TABLE guideline_acknowledgments (
    practice_id TEXT NOT NULL REFERENCES practices (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    version BIGINT NOT NULL,
    acknowledged_at BIGINT NOT NULL,
    PRIMARY KEY (practice_id, user_id, version)
);
