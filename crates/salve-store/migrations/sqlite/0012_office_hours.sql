-- Office hours, holidays and response-time promises (SQLite). Keep in step with ../postgres/.
-- All of it is the practice's plain configuration or timing facts, not PHI: no message content.

-- The zone the weekly intervals are read in; a practice without a row is always open.
CREATE TABLE practice_office_hours (
    practice_id TEXT PRIMARY KEY NOT NULL REFERENCES practices (id),
    time_zone TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Opening intervals, in minutes after local midnight; weekday 0 = Monday.
CREATE TABLE office_hours_intervals (
    practice_id TEXT NOT NULL REFERENCES practices (id),
    weekday INTEGER NOT NULL CHECK (weekday BETWEEN 0 AND 6),
    start_minute INTEGER NOT NULL CHECK (start_minute BETWEEN 0 AND 1439),
    end_minute INTEGER NOT NULL CHECK (end_minute BETWEEN 1 AND 1440),
    PRIMARY KEY (practice_id, weekday, start_minute)
);

-- Days closed all day (YYYY-MM-DD, local).
CREATE TABLE practice_holidays (
    practice_id TEXT NOT NULL REFERENCES practices (id),
    holiday_date TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (practice_id, holiday_date)
);

-- The response target in business minutes; a practice without a row uses the default.
CREATE TABLE practice_response_settings (
    practice_id TEXT PRIMARY KEY NOT NULL REFERENCES practices (id),
    target_minutes INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Who is told when a conversation is overdue.
CREATE TABLE response_escalation_recipients (
    practice_id TEXT NOT NULL REFERENCES practices (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    PRIMARY KEY (practice_id, user_id)
);

-- One escalation per waiting episode (the episode is named by when the patient started waiting),
-- however many workers look.
CREATE TABLE conversation_escalations (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    waiting_since INTEGER NOT NULL,
    escalated_at INTEGER NOT NULL,
    UNIQUE (conversation_id, waiting_since)
);

-- When each conversation last got the after-hours reply (one per 12 hours).
CREATE TABLE after_hours_replies (
    conversation_id TEXT PRIMARY KEY NOT NULL REFERENCES conversations (id),
    practice_id TEXT NOT NULL REFERENCES practices (id),
    sent_at INTEGER NOT NULL
);

CREATE INDEX messages_direction ON messages (conversation_id, direction, created_at);
