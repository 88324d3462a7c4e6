-- courier: receive up to :n and ack_batch them in the same statement (one transaction)
SELECT courier.ack_batch(:q, coalesce(array_agg(receipt), '{}')) FROM courier.receive(:q, :n);
