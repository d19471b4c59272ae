-- 0005: consent truth. Opt-outs that belong to a sending number, inbound messages kept whatever they say, and one
-- owner per sender number.

-- A STOP applies to the number it was sent to (carriers block that number for the person until START/UNSTOP):
-- every shop that sends from it must stop, including shops that never had the person as a contact.
CREATE TABLE sender_opt_outs (
  sender        text NOT NULL,
  phone         text NOT NULL,
  opted_out_at  timestamptz NOT NULL,
  source        text NOT NULL,
  request_id    text,
  PRIMARY KEY (sender, phone)
);
-- A STOP to the shared sender looks the person up in every shop.
CREATE INDEX contacts_phone_idx ON contacts (phone) WHERE phone IS NOT NULL;

-- Every inbound message, stored before it is acted on: an odd number or an unknown keyword is kept and answered 200,
-- never lost. `outcome` says what was done with it.
CREATE TABLE inbound_messages (
  id                   bigserial PRIMARY KEY,
  received_at          timestamptz NOT NULL DEFAULT now(),
  from_raw             text NOT NULL,
  from_phone           text,
  to_number            text NOT NULL,
  text                 text NOT NULL,
  keyword              text,
  provider_message_id  text,
  shop_id              bigint REFERENCES shops(id) ON DELETE CASCADE,
  outcome              text NOT NULL DEFAULT 'received',
  request_id           text
);
CREATE INDEX inbound_messages_phone_idx ON inbound_messages (from_phone);
CREATE UNIQUE INDEX inbound_messages_provider_id_idx ON inbound_messages (provider_message_id) WHERE provider_message_id IS NOT NULL;

-- A sender number belongs to one shop (the platform's shared sender is the absence of one), so replies to it reach
-- that shop alone. Alphanumeric sender ids cannot be replied to and may repeat. Earlier duplicate numbers keep the
-- oldest shop's claim; the others fall back to the shared sender.
UPDATE shops s SET settings = s.settings - 'sender'
WHERE s.settings->>'sender' ~ '^\+?[0-9]+$'
  AND EXISTS (SELECT 1 FROM shops o WHERE o.settings->>'sender' = s.settings->>'sender' AND o.id < s.id);
CREATE UNIQUE INDEX shops_sender_number_idx ON shops ((settings->>'sender')) WHERE settings->>'sender' ~ '^\+?[0-9]+$';
