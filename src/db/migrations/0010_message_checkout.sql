-- 0010: an abandoned-checkout reminder remembers its checkout.
--
-- Delivery cancels a reminder whose checkout was completed meanwhile (src/messages/delivery.ts). The token came only
-- with the delivery job, so a reminder queued again without it — by `reconcile` after its job was lost, or by
-- `retry_failed_messages` — skipped that check and could remind a customer who had already paid. The row keeps it now.
ALTER TABLE messages ADD COLUMN checkout_token text;
