-- The privacy officer's review of a break-glass access (PostgreSQL). Keep in step with ../sqlite/.
-- One review per grant; the note may name the patient or the clinical situation, so it is
-- sealed under the practice key like the grant's reason.
CREATE TABLE break_glass_reviews (
    grant_id TEXT PRIMARY KEY NOT NULL REFERENCES break_glass_grants (id),
    practice_id TEXT NOT NULL REFERENCES practices (id),
    reviewed_by TEXT NOT NULL REFERENCES users (id),
    note BYTEA NOT NULL,
    reviewed_at BIGINT NOT NULL
);
