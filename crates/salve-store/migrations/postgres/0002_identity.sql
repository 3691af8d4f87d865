-- Staff identity and access (PostgreSQL). Keep in step with ../sqlite/0002_identity.sql.

-- One account per person. Email and name are sealed under the system key; the email is found
-- by a keyed hash.
CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    email_index BYTEA NOT NULL UNIQUE,
    email BYTEA NOT NULL,
    display_name BYTEA NOT NULL,
    password_hash TEXT,
    totp_secret BYTEA,
    totp_pending BYTEA,
    totp_last_step BIGINT,
    disabled_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE memberships (
    user_id TEXT NOT NULL REFERENCES users (id),
    practice_id TEXT NOT NULL REFERENCES practices (id),
    role TEXT NOT NULL CHECK (role IN ('admin', 'clinician', 'staff', 'auditor')),
    privacy_officer BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, practice_id)
);
CREATE INDEX memberships_practice ON memberships (practice_id);

CREATE TABLE teams (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX teams_name ON teams (practice_id, name);

CREATE TABLE team_members (
    team_id TEXT NOT NULL REFERENCES teams (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    PRIMARY KEY (team_id, user_id)
);

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users (id),
    code_hash BYTEA NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- Only the SHA-256 of a session token is stored. `stage`: waiting for MFA, enrolling MFA, or active.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash BYTEA NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users (id),
    practice_id TEXT NOT NULL REFERENCES practices (id),
    stage TEXT NOT NULL CHECK (stage IN ('mfa', 'enroll', 'active')),
    created_at BIGINT NOT NULL,
    last_active_at BIGINT NOT NULL,
    idle_timeout_secs BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT,
    end_reason TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Failed sign-ins per account and per source address, keyed by a hash of either.
CREATE TABLE auth_throttle (
    throttle_key BYTEA PRIMARY KEY NOT NULL,
    failures BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);

-- Restricted patients are visible only to the people named here (or through break-glass).
ALTER TABLE patients ADD COLUMN restricted BIGINT NOT NULL DEFAULT 0;
CREATE TABLE patient_access (
    patient_id TEXT NOT NULL REFERENCES patients (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    practice_id TEXT NOT NULL REFERENCES practices (id),
    PRIMARY KEY (patient_id, user_id)
);

ALTER TABLE practices ADD COLUMN session_idle_secs BIGINT NOT NULL DEFAULT 900;
ALTER TABLE practices ADD COLUMN session_absolute_secs BIGINT NOT NULL DEFAULT 43200;
