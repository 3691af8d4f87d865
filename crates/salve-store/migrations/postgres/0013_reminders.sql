-- A queued send that stops being worth sending at this instant (a reminder close to its
-- visit): the worker withdraws it instead of sending it late.
ALTER TABLE outbox_jobs ADD COLUMN expires_at BIGINT;

-- The practice's reminder limits and default schedule ("72h,24h").
CREATE TABLE reminder_settings (
    practice_id TEXT PRIMARY KEY NOT NULL REFERENCES practices (id),
    default_schedule TEXT NOT NULL,
    daily_cap BIGINT NOT NULL,
    min_lead_minutes BIGINT NOT NULL,
    spanish_unaccented BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A schedule for one appointment type, instead of the default.
CREATE TABLE reminder_schedules (
    practice_id TEXT NOT NULL REFERENCES practices (id),
    appointment_type_id TEXT NOT NULL REFERENCES catalog_items (id),
    schedule TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (practice_id, appointment_type_id)
);

-- Every reminder decided, sent or not. The unique key (appointment, slot, visit time) is what
-- sends each reminder at most once across restarts and instances; a rescheduled visit has a
-- new time and so new reminders.
CREATE TABLE appointment_reminders (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    appointment_id TEXT NOT NULL REFERENCES appointments (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    slot TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('sent', 'held_by_cap', 'too_late', 'superseded', 'withdrawn', 'not_sent')),
    state_reason TEXT,
    message_id TEXT REFERENCES messages (id),
    delivery TEXT,
    awaits_answer BIGINT NOT NULL,
    answer TEXT,
    answered_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (appointment_id, slot, starts_at)
);
CREATE INDEX appointment_reminders_patient ON appointment_reminders (practice_id, patient_id, awaits_answer);
CREATE INDEX appointment_reminders_state ON appointment_reminders (practice_id, state);

-- When staff were alerted that this send is blocked (emergency guidance that a provider outage
-- or an expired agreement holds back): once per job.
ALTER TABLE outbox_jobs ADD COLUMN alerted_at BIGINT;

-- A patient's text suggested an emergency: flagged for staff until someone clears it.
ALTER TABLE conversations ADD COLUMN urgent_at BIGINT;
