-- 0008: campaign progress kept as counters, so reading it costs the same for 100 recipients or 1,000,000.
--
-- `campaign_counters` holds, per campaign, how many of its messages are in each status. A campaign has up to 16 rows
-- (`shard`): the statement that changes a message's status adds to the row of its own session (pg_backend_pid() % 16),
-- so concurrent delivery workers do not queue on one row lock held until each commit, and one statement touches one
-- row per campaign (no lock-order deadlock between two multi-row statements). Progress is the sum of at most 16 rows.
-- The rows are separate from `campaigns` on purpose: a page of the audience holds that row FOR UPDATE while it is
-- produced, and the delivery processor reads it for every message.
--
-- Who adds what:
-- * a page's INSERT of message rows (src/db/campaigns.ts insertPageMessages) adds its page's queued and skipped
--   counts, set-based, in the same statement;
-- * every later status change of a campaign message, wherever it happens (claim, send, delivery report, retry,
--   cancel, uninstall), moves one count from the old status to the new one, in the same transaction, through the
--   trigger below. It fires only when the status really changes (OLD.status IS DISTINCT FROM NEW.status), so a
--   delivery report received twice, or one that arrives after a later one, moves nothing the second time: the
--   counters count transitions of the row, not events.
-- * message rows deleted by retention do not decrement: the counters are the campaign's record.
CREATE TABLE campaign_counters (
  campaign_id  bigint NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
  shard        smallint NOT NULL,
  queued       integer NOT NULL DEFAULT 0,
  sending      integer NOT NULL DEFAULT 0,
  sent         integer NOT NULL DEFAULT 0,
  delivered    integer NOT NULL DEFAULT 0,
  failed       integer NOT NULL DEFAULT 0,
  skipped      integer NOT NULL DEFAULT 0,
  cancelled    integer NOT NULL DEFAULT 0,
  PRIMARY KEY (campaign_id, shard)
);

-- Skipped messages of a campaign by reason (the message's error code); a handful of rows per campaign.
CREATE TABLE campaign_skip_counts (
  campaign_id  bigint NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
  reason       text NOT NULL,
  n            integer NOT NULL DEFAULT 0,
  PRIMARY KEY (campaign_id, reason)
);

-- Backfill from the messages as they are now (shard 0).
INSERT INTO campaign_counters (campaign_id, shard, queued, sending, sent, delivered, failed, skipped, cancelled)
SELECT c.id, 0,
       count(*) FILTER (WHERE m.status = 'queued'),
       count(*) FILTER (WHERE m.status = 'sending'),
       count(*) FILTER (WHERE m.status = 'sent'),
       count(*) FILTER (WHERE m.status = 'delivered'),
       count(*) FILTER (WHERE m.status = 'failed'),
       count(*) FILTER (WHERE m.status = 'skipped'),
       count(*) FILTER (WHERE m.status = 'cancelled')
  FROM campaigns c JOIN messages m ON m.campaign_id = c.id::text
 GROUP BY c.id;

INSERT INTO campaign_skip_counts (campaign_id, reason, n)
SELECT c.id, coalesce(m.error_code, 'unknown'), count(*)
  FROM campaigns c JOIN messages m ON m.campaign_id = c.id::text AND m.status = 'skipped'
 GROUP BY c.id, coalesce(m.error_code, 'unknown');

-- Moves one message of a campaign from status `was` to status `became` in the session's counter row of the campaign: one
-- UPDATE, or, on the session's first change for that campaign, an upsert (skipped when the campaign is gone, so a
-- message update never fails for its campaign's sake).
CREATE FUNCTION campaign_message_status_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  campaign bigint := NEW.campaign_id::bigint;
  was text := OLD.status;
  became text := NEW.status;
  s smallint := pg_backend_pid() % 16;
BEGIN
  UPDATE campaign_counters SET
    queued    = queued    + (became = 'queued')::int    - (was = 'queued')::int,
    sending   = sending   + (became = 'sending')::int   - (was = 'sending')::int,
    sent      = sent      + (became = 'sent')::int      - (was = 'sent')::int,
    delivered = delivered + (became = 'delivered')::int - (was = 'delivered')::int,
    failed    = failed    + (became = 'failed')::int    - (was = 'failed')::int,
    skipped   = skipped   + (became = 'skipped')::int   - (was = 'skipped')::int,
    cancelled = cancelled + (became = 'cancelled')::int - (was = 'cancelled')::int
  WHERE campaign_id = campaign AND shard = s;
  IF NOT FOUND THEN
    INSERT INTO campaign_counters AS k (campaign_id, shard, queued, sending, sent, delivered, failed, skipped, cancelled)
    SELECT c.id, s,
           (became = 'queued')::int    - (was = 'queued')::int,
           (became = 'sending')::int   - (was = 'sending')::int,
           (became = 'sent')::int      - (was = 'sent')::int,
           (became = 'delivered')::int - (was = 'delivered')::int,
           (became = 'failed')::int    - (was = 'failed')::int,
           (became = 'skipped')::int   - (was = 'skipped')::int,
           (became = 'cancelled')::int - (was = 'cancelled')::int
      FROM campaigns c WHERE c.id = campaign
    ON CONFLICT (campaign_id, shard) DO UPDATE SET
      queued = k.queued + excluded.queued, sending = k.sending + excluded.sending, sent = k.sent + excluded.sent,
      delivered = k.delivered + excluded.delivered, failed = k.failed + excluded.failed,
      skipped = k.skipped + excluded.skipped, cancelled = k.cancelled + excluded.cancelled;
  END IF;
  IF was = 'skipped' THEN
    UPDATE campaign_skip_counts SET n = n - 1 WHERE campaign_id = campaign AND reason = coalesce(OLD.error_code, 'unknown');
  END IF;
  IF became = 'skipped' THEN
    INSERT INTO campaign_skip_counts AS k (campaign_id, reason, n)
    SELECT c.id, coalesce(NEW.error_code, 'unknown'), 1 FROM campaigns c WHERE c.id = campaign
    ON CONFLICT (campaign_id, reason) DO UPDATE SET n = k.n + 1;
  END IF;
  RETURN NULL;
END $$;

-- Evaluated before any PL/pgSQL runs: a message that is not a campaign's, or whose status did not change, costs nothing.
-- A campaign id that is no number (rows written before campaign ids were numbers) names no campaign: skipped too, so
-- the cast in the function cannot fail the message's update.
CREATE TRIGGER messages_campaign_counters
  AFTER UPDATE OF status ON messages
  FOR EACH ROW
  WHEN (NEW.campaign_id ~ '^[0-9]{1,18}$' AND OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION campaign_message_status_changed();
