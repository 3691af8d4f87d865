-- Reading patients and appointments from the practice's EHR (sqlite). Keep in step with ../postgres/.
-- One pull per practice: its schedule, a cursor per resource type (the highest meta.lastUpdated
-- applied, unix microseconds), a lease so that one instance runs it at a time, and the last
-- run's status. Reasons are fixed texts (PHI-free).
CREATE TABLE ehr_pulls (
    practice_id TEXT PRIMARY KEY NOT NULL REFERENCES practices (id),
    enabled INTEGER NOT NULL,
    interval_secs INTEGER NOT NULL,
    patient_cursor INTEGER,
    appointment_cursor INTEGER,
    next_run_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER,
    last_run_at INTEGER,
    last_success_at INTEGER,
    last_error_kind TEXT,
    last_error TEXT,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    unchanged INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    -- The last run's skip reasons with their counts, one "count<TAB>reason" per line.
    skip_reasons TEXT,
    updated_at INTEGER NOT NULL
);

-- Which Salve record an EHR resource was applied to, and the version applied: found again by
-- the EHR's id (a blind index under the practice's key, like appointments' external ids), so a
-- re-pull never creates a second record and an unchanged version changes nothing.
CREATE TABLE ehr_pull_links (
    practice_id TEXT NOT NULL REFERENCES practices (id),
    resource_type TEXT NOT NULL,
    remote_index BLOB NOT NULL,
    local_id TEXT NOT NULL,
    remote_version TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (practice_id, resource_type, remote_index)
);
