-- Channels (SQLite). Keep in step with ../postgres/. Provider credentials are sealed under the
-- practice's provider-credential key; vendor names, dates, document hashes and the practice's
-- own sender numbers are not PHI and stay in clear.

-- Business Associate Agreements, and attestations that a service is run by the practice itself.
-- A renewal is a new row; the provider then points at it.
CREATE TABLE vendor_agreements (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    vendor TEXT NOT NULL,
    basis TEXT NOT NULL CHECK (basis IN ('baa', 'self_operated')),
    -- YYYY-MM-DD in the practice's time zone: signed (BAA) or attested (self-operated).
    effective_on TEXT NOT NULL,
    expires_on TEXT,
    document_sha256 TEXT,
    recorded_by TEXT,
    recorded_at INTEGER NOT NULL,
    CHECK ((basis = 'baa') = (document_sha256 IS NOT NULL))
);
CREATE INDEX vendor_agreements_practice ON vendor_agreements (practice_id);

CREATE TABLE channel_providers (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    kind TEXT NOT NULL CHECK (kind IN ('twilio', 'telnyx', 'smtp', 'local_outbox')),
    medium TEXT NOT NULL CHECK (medium IN ('sms', 'email', 'both')),
    label TEXT NOT NULL,
    credentials BLOB NOT NULL,
    agreement_id TEXT REFERENCES vendor_agreements (id),
    enabled INTEGER NOT NULL,
    -- The expiry date the admins were last alerted about: one alert per expiry.
    expiry_alerted_on TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX channel_providers_practice ON channel_providers (practice_id);
-- At most one enabled provider per practice and medium.
CREATE UNIQUE INDEX channel_providers_one_enabled ON channel_providers (practice_id, medium) WHERE enabled = 1;

-- One sender number belongs to one practice (inbound texts are routed by the number they went to).
CREATE TABLE provider_numbers (
    number TEXT PRIMARY KEY NOT NULL,
    provider_id TEXT NOT NULL REFERENCES channel_providers (id),
    practice_id TEXT NOT NULL REFERENCES practices (id)
);

-- Webhook deliveries already applied, so that a replay changes nothing.
CREATE TABLE provider_events (
    provider_id TEXT NOT NULL REFERENCES channel_providers (id),
    event_key TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (provider_id, event_key)
);

-- Texts no single patient can be matched to: an unknown number, or a phone several patients
-- share (a family). Sender and text are sealed under the practice key until staff attribute
-- them; the blind index groups one sender's texts.
CREATE TABLE inbound_triage (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    provider_id TEXT NOT NULL REFERENCES channel_providers (id),
    reason TEXT NOT NULL CHECK (reason IN ('unknown_sender', 'shared_number')),
    sender_lookup BLOB NOT NULL,
    sender BLOB NOT NULL,
    body BLOB NOT NULL,
    intent TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    attributed_to TEXT REFERENCES patients (id),
    attributed_at INTEGER
);
CREATE INDEX inbound_triage_open ON inbound_triage (practice_id, attributed_at);

-- Inbound texts that may revoke consent but are not clear: a person decides. The reasons are
-- rule names, never the text.
CREATE TABLE keyword_reviews (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT REFERENCES patients (id),
    message_id TEXT REFERENCES messages (id),
    triage_id TEXT REFERENCES inbound_triage (id),
    reasons TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'revoked', 'dismissed')),
    created_at INTEGER NOT NULL,
    decided_at INTEGER,
    decided_by TEXT
);
CREATE INDEX keyword_reviews_open ON keyword_reviews (practice_id, state);
