-- Patients' own portal logins (PostgreSQL). Keep in step with ../sqlite/. The login name is the
-- patient's email, stored only as the practice's blind index; TOTP secrets are sealed under the
-- practice key; the password is an argon2id hash.
CREATE TABLE patient_accounts (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT NOT NULL UNIQUE REFERENCES patients (id),
    login_index BYTEA NOT NULL,
    password_hash TEXT NOT NULL,
    totp_secret BYTEA,
    totp_pending BYTEA,
    totp_last_step BIGINT,
    created_at BIGINT NOT NULL,
    activated_at BIGINT,
    UNIQUE (practice_id, login_index)
);

CREATE TABLE patient_recovery_codes (
    account_id TEXT NOT NULL REFERENCES patient_accounts (id),
    code_hash BYTEA NOT NULL,
    used_at BIGINT
);
CREATE INDEX patient_recovery_codes_account ON patient_recovery_codes (account_id);

-- A password accepted, waiting for the second factor. Single use, short-lived.
CREATE TABLE patient_sign_ins (
    token_hash BYTEA PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL REFERENCES patient_accounts (id),
    expires_at BIGINT NOT NULL
);

-- A session started by a login has no link.
ALTER TABLE patient_sessions ALTER COLUMN link_id DROP NOT NULL;
