-- Patients' own portal logins (SQLite). Keep in step with ../postgres/. The login name is the
-- patient's email, stored only as the practice's blind index; TOTP secrets are sealed under the
-- practice key; the password is an argon2id hash.
CREATE TABLE patient_accounts (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT NOT NULL UNIQUE REFERENCES patients (id),
    login_index BLOB NOT NULL,
    password_hash TEXT NOT NULL,
    totp_secret BLOB,
    totp_pending BLOB,
    totp_last_step INTEGER,
    created_at INTEGER NOT NULL,
    activated_at INTEGER,
    UNIQUE (practice_id, login_index)
);

CREATE TABLE patient_recovery_codes (
    account_id TEXT NOT NULL REFERENCES patient_accounts (id),
    code_hash BLOB NOT NULL,
    used_at INTEGER
);
CREATE INDEX patient_recovery_codes_account ON patient_recovery_codes (account_id);

-- A password accepted, waiting for the second factor. Single use, short-lived.
CREATE TABLE patient_sign_ins (
    token_hash BLOB PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL REFERENCES patient_accounts (id),
    expires_at INTEGER NOT NULL
);

-- A session started by a login has no link: rebuild the table with a nullable link_id.
CREATE TABLE patient_sessions_new (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    link_id TEXT REFERENCES secure_links (id),
    created_at INTEGER NOT NULL,
    last_active_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ended_at INTEGER
);
INSERT INTO patient_sessions_new (id, token_hash, practice_id, patient_id, link_id, created_at, last_active_at, expires_at, ended_at)
    SELECT id, token_hash, practice_id, patient_id, link_id, created_at, last_active_at, expires_at, ended_at FROM patient_sessions;
DROP TABLE patient_sessions;
ALTER TABLE patient_sessions_new RENAME TO patient_sessions;
