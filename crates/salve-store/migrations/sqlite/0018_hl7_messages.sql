-- HL7 v2 feed (SQLite). Keep in step with ../postgres/.
-- Each message a practice's feed had accepted, by its MSH-10 control id: the same id again gets
-- the same acknowledgement and changes nothing. Only ids, the type and a digest are kept: never
-- the message (it carries PHI).
CREATE TABLE hl7_messages (
    practice_id TEXT NOT NULL REFERENCES practices (id),
    control_id TEXT NOT NULL,
    -- SHA-256 of the message without its MSH segment: a reused id with other content is refused.
    content_sha256 BLOB NOT NULL,
    message_type TEXT NOT NULL,
    ack_code TEXT NOT NULL,
    ack_text TEXT NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (practice_id, control_id)
);
