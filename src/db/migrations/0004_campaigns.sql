-- 0004: segments, campaigns, and the contact order statistics segments filter on.

-- Order statistics, kept up to date by the events processor from order webhooks (see contact_orders).
ALTER TABLE contacts ADD COLUMN last_order_at timestamptz;
ALTER TABLE contacts ADD COLUMN orders_count integer NOT NULL DEFAULT 0;
ALTER TABLE contacts ADD COLUMN total_spent numeric(14, 2) NOT NULL DEFAULT 0;

-- Campaign audiences are read in keyset pages per shop (shop_id, id > cursor ORDER BY id).
CREATE INDEX contacts_shop_id_idx ON contacts (shop_id, id);
-- The usual campaign audience: subscribed contacts of one shop, in id order.
CREATE INDEX contacts_shop_subscribed_idx ON contacts (shop_id, id) WHERE sms_consent = 'subscribed' AND opted_out_at IS NULL;
CREATE INDEX contacts_tags_idx ON contacts USING gin (tags);
CREATE INDEX contacts_shop_last_order_idx ON contacts (shop_id, last_order_at);

-- Each order counted once per contact, whatever webhooks (orders/create, orders/paid, retries) report it.
CREATE TABLE contact_orders (
  shop_id     bigint NOT NULL REFERENCES shops(id) ON DELETE CASCADE,
  order_id    text NOT NULL,
  contact_id  bigint NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
  total       numeric(14, 2) NOT NULL DEFAULT 0,
  ordered_at  timestamptz NOT NULL,
  PRIMARY KEY (shop_id, order_id)
);

-- Saved audience filters (src/campaigns/segments.ts describes the JSON language).
CREATE TABLE segments (
  id          bigserial PRIMARY KEY,
  shop_id     bigint NOT NULL REFERENCES shops(id) ON DELETE CASCADE,
  name        text NOT NULL,
  filter      jsonb NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX segments_shop_name_uq ON segments (shop_id, name);

-- status: draft -> scheduled -> sending -> sent; sending <-> paused; draft|scheduled|sending|paused -> cancelled; failed.
-- `cursor_contact_id` is the last contact materialised; it moves in the same transaction as that page's messages.
CREATE TABLE campaigns (
  id                 bigserial PRIMARY KEY,
  shop_id            bigint NOT NULL REFERENCES shops(id) ON DELETE CASCADE,
  name               text NOT NULL,
  segment_id         bigint REFERENCES segments(id) ON DELETE SET NULL,
  -- The audience filter, copied from the segment when the campaign starts (later edits of the segment do not move it).
  filter             jsonb,
  body               text NOT NULL,
  discount_code      text,
  link_url           text,
  -- {frequencyCap?: {max, windowHours} | null, quietHours?: {enabled, start, end}}; unset fields follow the shop.
  settings           jsonb NOT NULL DEFAULT '{}'::jsonb,
  status             text NOT NULL DEFAULT 'draft'
                     CHECK (status IN ('draft', 'scheduled', 'sending', 'paused', 'sent', 'cancelled', 'failed')),
  scheduled_at       timestamptz,
  -- Bumped by every send, schedule and resume: the batch job's id carries it, so a stale job recognises itself.
  generation         integer NOT NULL DEFAULT 0,
  cursor_contact_id  bigint NOT NULL DEFAULT 0,
  -- The cursor before the last page, and whether that page's delivery jobs may not all be in Redis yet.
  page_start_id      bigint NOT NULL DEFAULT 0,
  pending_enqueue    boolean NOT NULL DEFAULT false,
  total_recipients   integer,
  materialized_at    timestamptz,
  started_at         timestamptz,
  paused_at          timestamptz,
  completed_at       timestamptz,
  cancelled_at       timestamptz,
  error              text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaigns_shop_idx ON campaigns (shop_id, id DESC);

-- Backlog and progress of a campaign are counted from its messages.
CREATE INDEX messages_campaign_status_idx ON messages (campaign_id, status) WHERE campaign_id IS NOT NULL;
