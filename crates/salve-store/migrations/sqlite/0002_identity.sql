-- Staff identity and access (SQLite). Keep in step with ../postgres/0002_identity.sql.

-- One account per person. Email and name are sealed under the system key; the email is found
-- by a keyed hash.
CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    email_index BLOB NOT NULL UNIQUE,
    email BLOB NOT NULL,
    display_name BLOB NOT NULL,
    password_hash TEXT,
    totp_secret BLOB,
    totp_pending BLOB,
    totp_last_step INTEGER,
    disabled_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE memberships (
    user_id TEXT NOT NULL REFERENCES users (id),
    practice_id TEXT NOT NULL REFERENCES practices (id),
    role TEXT NOT NULL CHECK (role IN ('admin', 'clinician', 'staff', 'auditor')),
    privacy_officer INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, practice_id)
);
CREATE INDEX memberships_practice ON memberships (practice_id);

CREATE TABLE teams (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX teams_name ON teams (practice_id, name);

CREATE TABLE team_members (
    team_id TEXT NOT NULL REFERENCES teams (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    PRIMARY KEY (team_id, user_id)
);

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users (id),
    code_hash BLOB NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (user_id, code_hash)
);

-- Only the SHA-256 of a session token is stored. `stage`: waiting for MFA, enrolling MFA, or active.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users (id),
    practice_id TEXT NOT NULL REFERENCES practices (id),
    stage TEXT NOT NULL CHECK (stage IN ('mfa', 'enroll', 'active')),
    created_at INTEGER NOT NULL,
    last_active_at INTEGER NOT NULL,
    idle_timeout_secs INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ended_at INTEGER,
    end_reason TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Failed sign-ins per account and per source address, keyed by a hash of either.
CREATE TABLE auth_throttle (
    throttle_key BLOB PRIMARY KEY NOT NULL,
    failures INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL,
    locked_until INTEGER NOT NULL
);

-- Restricted patients are visible only to the people named here (or through break-glass).
ALTER TABLE patients ADD COLUMN restricted INTEGER NOT NULL DEFAULT 0;
CREATE TABLE patient_access (
    patient_id TEXT NOT NULL REFERENCES patients (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    practice_id TEXT NOT NULL REFERENCES practices (id),
    PRIMARY KEY (patient_id, user_id)
);

ALTER TABLE practices ADD COLUMN session_idle_secs INTEGER NOT NULL DEFAULT 900;
ALTER TABLE practices ADD COLUMN session_absolute_secs INTEGER NOT NULL DEFAULT 43200;
