-- 0003: housekeeping (daily report rollups, the record of failed messages sent again) and privacy requests.

-- One row per shop, per day in the shop's time zone, per automation, campaign or neither ("other"). Recomputed whole
-- for a day (delete and insert in one transaction), so computing a day again gives the same rows.
CREATE TABLE report_rollups (
  id                bigserial PRIMARY KEY,
  shop_id           bigint NOT NULL REFERENCES shops(id) ON DELETE CASCADE,
  day               date NOT NULL,
  dimension         text NOT NULL CHECK (dimension IN ('automation', 'campaign', 'other')),
  -- automations.id or messages.campaign_id as text ('' for "other"); no foreign key, rollups outlive what they count.
  dimension_id      text NOT NULL DEFAULT '',
  sent              integer NOT NULL DEFAULT 0,
  delivered         integer NOT NULL DEFAULT 0,
  failed            integer NOT NULL DEFAULT 0,
  skipped           integer NOT NULL DEFAULT 0,
  skipped_by_reason jsonb NOT NULL DEFAULT '{}'::jsonb,
  parts             integer NOT NULL DEFAULT 0,
  cost              numeric(14, 4) NOT NULL DEFAULT 0,
  computed_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX report_rollups_uq ON report_rollups (shop_id, day, dimension, dimension_id);

-- A failed message sent again by `retry_failed_messages`: at most once per message, ever (the primary key).
CREATE TABLE message_retries (
  message_id bigint PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
  job_id     text NOT NULL,
  error_code text,
  retried_at timestamptz NOT NULL DEFAULT now()
);

-- Shopify's privacy webhooks and app/uninstalled, as carried out: what, when, how many rows of each table.
-- Keyed by shop domain, not shops.id: the record of a shop/redact outlives the shop.
CREATE TABLE privacy_requests (
  id                  bigserial PRIMARY KEY,
  shop_domain         text NOT NULL,
  topic               text NOT NULL
                      CHECK (topic IN ('customers/data_request', 'customers/redact', 'shop/redact', 'app/uninstalled')),
  webhook_id          text,
  shopify_customer_id text,
  request_id          text,
  status              text NOT NULL DEFAULT 'completed' CHECK (status IN ('completed', 'failed')),
  row_counts          jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- customers/data_request: everything stored about the customer, for an operator to hand to the merchant.
  export              jsonb,
  received_at         timestamptz NOT NULL DEFAULT now(),
  completed_at        timestamptz
);
CREATE UNIQUE INDEX privacy_requests_webhook_uq ON privacy_requests (shop_domain, webhook_id) WHERE webhook_id IS NOT NULL;
CREATE INDEX privacy_requests_shop_idx ON privacy_requests (shop_domain, received_at DESC);

-- Housekeeping scans: retention by age, and rollups by shop and time.
CREATE INDEX messages_shop_created_idx ON messages (shop_id, created_at);
CREATE INDEX message_skips_created_idx ON message_skips (created_at);
CREATE INDEX events_received_idx ON events (received_at);
