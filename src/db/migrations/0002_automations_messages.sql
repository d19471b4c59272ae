-- 0002: automations, messages, the record of every decision not to send, abandoned checkouts.

CREATE TABLE automations (
  id                  bigserial PRIMARY KEY,
  shop_id             bigint NOT NULL REFERENCES shops(id) ON DELETE CASCADE,
  trigger             text NOT NULL
                      CHECK (trigger IN ('order_paid', 'order_created', 'abandoned_checkout', 'fulfillment_update', 'welcome')),
  name                text NOT NULL,
  enabled             boolean NOT NULL DEFAULT true,
  template            text NOT NULL,
  delay_minutes       integer NOT NULL DEFAULT 0 CHECK (delay_minutes >= 0 AND delay_minutes <= 10080),
  transactional       boolean NOT NULL DEFAULT false,
  -- {quietHours: {enabled, start, end, bypass}, frequencyCap: {max, windowHours} | null, dedupeWindowHours, conditions}
  rules               jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX automations_shop_trigger_uq ON automations (shop_id, trigger);

-- One row per message we mean to send. `idempotency_key` makes "one message per automation per object" and
-- "one message per campaign per contact" hold whatever is retried.
-- status: queued -> sending -> sent -> delivered | failed; queued -> skipped | cancelled.
CREATE TABLE messages (
  id                  bigserial PRIMARY KEY,
  shop_id             bigint NOT NULL REFERENCES shops(id) ON DELETE CASCADE,
  contact_id          bigint REFERENCES contacts(id) ON DELETE SET NULL,
  automation_id       bigint REFERENCES automations(id) ON DELETE SET NULL,
  campaign_id         text,
  kind                text NOT NULL CHECK (kind IN ('marketing', 'transactional')),
  trigger             text,
  idempotency_key     text NOT NULL,
  to_phone            text,
  sender              text,
  body                text,
  encoding            text CHECK (encoding IS NULL OR encoding IN ('GSM-7', 'UCS-2')),
  segments            integer,
  cost_estimate       numeric(10, 4),
  render_warnings     text[] NOT NULL DEFAULT '{}',
  status              text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'failed', 'skipped', 'cancelled')),
  provider            text,
  provider_message_id text,
  error_code          text,
  error_text          text,
  send_attempts       integer NOT NULL DEFAULT 0,
  scheduled_for       timestamptz,
  queued_at           timestamptz NOT NULL DEFAULT now(),
  sending_at          timestamptz,
  sent_at             timestamptz,
  delivered_at        timestamptz,
  failed_at           timestamptz,
  request_id          text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX messages_idempotency_uq ON messages (shop_id, idempotency_key);
CREATE UNIQUE INDEX messages_provider_id_uq ON messages (provider, provider_message_id) WHERE provider_message_id IS NOT NULL;
CREATE INDEX messages_contact_recent_idx ON messages (contact_id, created_at DESC);
CREATE INDEX messages_status_idx ON messages (status, updated_at);

-- Every decision not to send, so a merchant can see why a customer got no message.
CREATE TABLE message_skips (
  id             bigserial PRIMARY KEY,
  shop_id        bigint NOT NULL REFERENCES shops(id) ON DELETE CASCADE,
  contact_id     bigint REFERENCES contacts(id) ON DELETE SET NULL,
  automation_id  bigint REFERENCES automations(id) ON DELETE SET NULL,
  campaign_id    text,
  message_id     bigint REFERENCES messages(id) ON DELETE SET NULL,
  trigger        text,
  object_id      text,
  reason         text NOT NULL,
  detail         text,
  request_id     text,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_skips_shop_idx ON message_skips (shop_id, created_at DESC);
CREATE INDEX message_skips_contact_idx ON message_skips (contact_id, created_at DESC);

-- Checkouts seen, to know whether an abandonment was recovered before its reminder goes out.
CREATE TABLE checkouts (
  id             bigserial PRIMARY KEY,
  shop_id        bigint NOT NULL REFERENCES shops(id) ON DELETE CASCADE,
  token          text NOT NULL,
  contact_id     bigint REFERENCES contacts(id) ON DELETE SET NULL,
  recovery_url   text,
  abandoned_at   timestamptz NOT NULL DEFAULT now(),
  last_seen_at   timestamptz NOT NULL DEFAULT now(),
  completed_at   timestamptz
);
CREATE UNIQUE INDEX checkouts_shop_token_uq ON checkouts (shop_id, token);
