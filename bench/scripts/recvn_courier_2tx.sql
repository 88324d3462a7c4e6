-- courier: receive up to :n in one transaction, ack_batch them in the next (two commits per batch)
SELECT count(*) AS got, coalesce(array_agg(receipt), '{}') AS receipts FROM courier.receive(:q, :n) \gset
\if :got > 0
SELECT courier.ack_batch(:q, :receipts);
\else
\sleep 10 ms
\endif
