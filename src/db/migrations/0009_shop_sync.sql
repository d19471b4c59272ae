-- 0009: Admin API access tokens and the state of each shop's customer sync (issue 17).
--
-- `shop_tokens` holds one offline access token per shop, obtained by token exchange. Tokens are encrypted by the
-- service (AES-256-GCM, src/shopify/tokens.ts): `access_token` and `refresh_token` are `<key id>:<iv>:<tag>:<data>`
-- (base64 parts), never the token itself, so a dump of the database opens no shop. The key id names the key that
-- encrypted the row, which lets TOKEN_ENCRYPTION_KEY be rotated (README "Install"). `expires_at` is null for a
-- non-expiring offline token. Deleted on `app/uninstalled` and with the shop.
CREATE TABLE shop_tokens (
  shop_id            bigint PRIMARY KEY REFERENCES shops(id) ON DELETE CASCADE,
  access_token       text NOT NULL,
  scope              text,
  expires_at         timestamptz,
  refresh_token      text,
  refresh_expires_at timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);

-- `shop_syncs`: one row per shop, the latest sync. A sync killed part-way resumes from `bulk_operation_id` (the bulk
-- operation it started, polled again rather than started anew) and `lines_done` (JSONL lines of the result already
-- upserted, skipped on resume). `status`: queued, shop, bulk_running, importing, done, failed.
CREATE TABLE shop_syncs (
  shop_id            bigint PRIMARY KEY REFERENCES shops(id) ON DELETE CASCADE,
  status             text NOT NULL,
  reason             text NOT NULL,
  bulk_operation_id  text,
  object_count       bigint,
  lines_done         bigint NOT NULL DEFAULT 0,
  customers_synced   bigint NOT NULL DEFAULT 0,
  error              text,
  started_at         timestamptz NOT NULL DEFAULT now(),
  finished_at        timestamptz,
  updated_at         timestamptz NOT NULL DEFAULT now()
);

-- The shop's Shopify plan (`shop { plan { displayName } }`), read by the sync with its other facts.
ALTER TABLE shops ADD COLUMN plan_name text;
