-- Appointments, from the JSON API or a CSV import. The time, zone, duration and status stay in
-- clear so reminders can be scheduled in SQL; what reveals a condition (the appointment type,
-- location and provider, each a catalog item id) and the EHR's own id are sealed under the
-- patient's key. The EHR id is found again by a blind index.
CREATE TABLE appointments (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    external_id BYTEA,
    external_id_index BYTEA,
    starts_at BIGINT NOT NULL,
    time_zone TEXT NOT NULL,
    duration_minutes BIGINT NOT NULL,
    appointment_type_id BYTEA NOT NULL,
    location_id BYTEA NOT NULL,
    provider_id BYTEA NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('booked', 'confirmed', 'reschedule_requested', 'cancelled', 'completed', 'no_show')),
    status_source TEXT NOT NULL CHECK (status_source IN ('staff', 'api', 'import', 'patient_reply')),
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX appointments_external ON appointments (practice_id, external_id_index);
CREATE INDEX appointments_starts ON appointments (practice_id, starts_at);
CREATE INDEX appointments_patient ON appointments (practice_id, patient_id, starts_at);
