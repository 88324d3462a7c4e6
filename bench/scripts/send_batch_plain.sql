-- baseline: :n rows per transaction in one INSERT ... SELECT FROM unnest(array)
INSERT INTO bench.plain_send (body) SELECT unnest(array_fill(:body::jsonb, ARRAY[:n::int]));
