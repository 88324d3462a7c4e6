-- baseline: plain INSERT of one row per transaction into a table with courier's columns
INSERT INTO bench.plain_send (body) VALUES (:body::jsonb);
