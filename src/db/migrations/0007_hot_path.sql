-- 0007: indexes for delivery's one-statement read.
--
-- A message is checked at send time against every number-wide STOP on its recipient's number (whichever sender
-- the rows name), read in the same statement as the message itself: that read looks the number up by phone alone,
-- which the (sender, phone) primary key cannot serve.

CREATE INDEX IF NOT EXISTS sender_opt_outs_phone_idx ON sender_opt_outs (phone);
