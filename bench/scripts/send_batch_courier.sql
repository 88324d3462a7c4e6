-- courier.send_batch: :n messages per transaction
SELECT courier.send_batch(:q, array_fill(:body::jsonb, ARRAY[:n::int]));
