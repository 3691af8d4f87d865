-- Appointments, from the JSON API or a CSV import. The time, zone, duration and status stay in
-- clear so reminders can be scheduled in SQL; what reveals a condition (the appointment type,
-- location and provider, each a catalog item id) and the EHR's own id are sealed under the
-- patient's key. The EHR id is found again by a blind index.
CREATE TABLE appointments (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    external_id BLOB,
    external_id_index BLOB,
    starts_at INTEGER NOT NULL,
    time_zone TEXT NOT NULL,
    duration_minutes INTEGER NOT NULL,
    appointment_type_id BLOB NOT NULL,
    location_id BLOB NOT NULL,
    provider_id BLOB NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('booked', 'confirmed', 'reschedule_requested', 'cancelled', 'completed', 'no_show')),
    status_source TEXT NOT NULL CHECK (status_source IN ('staff', 'api', 'import', 'patient_reply')),
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX appointments_external ON appointments (practice_id, external_id_index);
CREATE INDEX appointments_starts ON appointments (practice_id, starts_at);
CREATE INDEX appointments_patient ON appointments (practice_id, patient_id, starts_at);
