-- 0001: shops, contacts and their consent history, received webhook events, dead letters.

CREATE TABLE shops (
  id             bigserial PRIMARY KEY,
  domain         text NOT NULL UNIQUE,
  name           text,
  timezone       text NOT NULL DEFAULT 'UTC',
  country_code   text,
  currency       text,
  settings       jsonb NOT NULL DEFAULT '{}'::jsonb,
  installed_at   timestamptz NOT NULL DEFAULT now(),
  uninstalled_at timestamptz,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contacts (
  id                       bigserial PRIMARY KEY,
  shop_id                  bigint NOT NULL REFERENCES shops(id) ON DELETE CASCADE,
  shopify_customer_id      text,
  phone                    text CHECK (phone IS NULL OR phone ~ '^\+[1-9][0-9]{6,14}$'),
  first_name               text,
  last_name                text,
  email                    text,
  tags                     text[] NOT NULL DEFAULT '{}',
  country_code             text,
  province_code            text,
  timezone                 text,
  sms_consent              text NOT NULL DEFAULT 'not_subscribed'
                           CHECK (sms_consent IN ('not_subscribed', 'pending', 'subscribed', 'unsubscribed', 'redacted')),
  sms_consent_opt_in_level text,
  sms_consent_source       text,
  sms_consent_updated_at   timestamptz,
  opted_out_at             timestamptz,
  created_at               timestamptz NOT NULL DEFAULT now(),
  updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX contacts_shop_customer_uq ON contacts (shop_id, shopify_customer_id) WHERE shopify_customer_id IS NOT NULL;
CREATE UNIQUE INDEX contacts_shop_phone_uq ON contacts (shop_id, phone) WHERE phone IS NOT NULL;

CREATE TABLE consent_changes (
  id             bigserial PRIMARY KEY,
  shop_id        bigint NOT NULL REFERENCES shops(id) ON DELETE CASCADE,
  contact_id     bigint NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
  previous_state text,
  new_state      text NOT NULL,
  source         text NOT NULL,
  occurred_at    timestamptz NOT NULL,
  recorded_at    timestamptz NOT NULL DEFAULT now(),
  request_id     text
);
CREATE INDEX consent_changes_contact_idx ON consent_changes (contact_id, recorded_at);

-- Every webhook taken in. `status`: received (persisted, not yet on the queue) -> queued -> processed | ignored | failed.
CREATE TABLE events (
  id           bigserial PRIMARY KEY,
  shop_domain  text NOT NULL,
  topic        text NOT NULL,
  object_id    text,
  webhook_id   text NOT NULL,
  event_id     text,
  api_version  text,
  triggered_at timestamptz,
  payload      jsonb,
  request_id   text,
  status       text NOT NULL DEFAULT 'received'
               CHECK (status IN ('received', 'queued', 'processed', 'ignored', 'failed')),
  outcome      text,
  error        text,
  received_at  timestamptz NOT NULL DEFAULT now(),
  queued_at    timestamptz,
  processed_at timestamptz
);
CREATE UNIQUE INDEX events_shop_webhook_uq ON events (shop_domain, webhook_id);
-- Several subscriptions to one topic each get a copy with its own webhook id but the same event id.
CREATE UNIQUE INDEX events_shop_topic_event_uq ON events (shop_domain, topic, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX events_status_received_idx ON events (received_at) WHERE status = 'received';

-- Jobs that failed for good. One row per job instance (a job id can be reused once BullMQ removes the job).
CREATE TABLE dead_letters (
  id             bigserial PRIMARY KEY,
  queue          text NOT NULL,
  job_name       text NOT NULL,
  job_id         text NOT NULL,
  job_created_at timestamptz NOT NULL,
  data           jsonb NOT NULL,
  error_code     text,
  error_message  text NOT NULL,
  stack          text,
  attempts_made  integer NOT NULL,
  max_attempts   integer NOT NULL,
  request_id     text,
  shop_id        text,
  failed_at      timestamptz NOT NULL DEFAULT now(),
  replay_count   integer NOT NULL DEFAULT 0,
  replayed_at    timestamptz,
  replay_job_id  text
);
CREATE UNIQUE INDEX dead_letters_job_uq ON dead_letters (queue, job_id, job_created_at);
CREATE INDEX dead_letters_queue_idx ON dead_letters (queue, failed_at DESC);
CREATE INDEX dead_letters_shop_idx ON dead_letters (shop_id, failed_at DESC);
