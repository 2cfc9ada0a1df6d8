-- The webhook body exactly as received (signatures are over these bytes; `payload` is its
-- parsed form for queries).
ALTER TABLE control.billing_events ADD COLUMN raw_body text;
