-- An email's secret (an invitation token) is kept beside its body, which holds a placeholder
-- in its place, only until the email is delivered; delivery clears it. Emails stored before
-- this were delivered (logged) when written, and their bodies carry tokens: those bodies go.
ALTER TABLE email_outbox ADD COLUMN secret TEXT;
ALTER TABLE email_outbox ADD COLUMN sent_at BIGINT;
UPDATE email_outbox SET sent_at = created_at,
    body = '(delivered before email secrets were kept apart; the body is not kept)';
CREATE INDEX email_outbox_waiting ON email_outbox(sent_at, id);
