-- courier.send: one message per transaction
SELECT courier.send(:q, :body::jsonb);
