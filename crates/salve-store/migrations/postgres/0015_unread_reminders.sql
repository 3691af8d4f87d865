-- Unread secure messages (PostgreSQL). Keep in step with ../sqlite/.
-- When the patient first saw a message in the portal (the portal view that returns it).
ALTER TABLE messages ADD COLUMN patient_read_at BIGINT;
-- Messages the portal already marked read before this column existed.
UPDATE messages SET patient_read_at = updated_at WHERE status = 'read' AND direction = 'outbound';
-- What the worker scans on every pass: secure messages not yet seen.
CREATE INDEX messages_unread_portal ON messages (created_at)
    WHERE direction = 'outbound' AND channel = 'portal' AND patient_read_at IS NULL;

-- The message a notification's link was minted for, so a reminder can revoke it.
ALTER TABLE secure_links ADD COLUMN message_id TEXT REFERENCES messages (id);
CREATE INDEX secure_links_message ON secure_links (message_id);

-- The follow-up of one unread secure message: one reminder, then one staff alert. The primary
-- key is what reminds (and alerts) at most once across restarts and instances.
CREATE TABLE unread_followups (
    message_id TEXT PRIMARY KEY NOT NULL REFERENCES messages (id),
    practice_id TEXT NOT NULL REFERENCES practices (id),
    reminded_at BIGINT NOT NULL,
    staff_alerted_at BIGINT
);
-- Secure messages sent before this migration are not followed up (no burst of reminders for
-- old messages on upgrade).
INSERT INTO unread_followups (message_id, practice_id, reminded_at, staff_alerted_at)
    SELECT id, practice_id, created_at, created_at FROM messages
    WHERE direction = 'outbound' AND channel = 'portal';

-- The practice's delay before the reminder (and again before the staff alert); 72 hours
-- unless a row says otherwise.
CREATE TABLE unread_settings (
    practice_id TEXT PRIMARY KEY NOT NULL REFERENCES practices (id),
    delay_hours BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
