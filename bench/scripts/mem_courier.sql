-- memory: send one, receive one, ack it (each its own transaction) in one long-lived connection
SELECT courier.send(:q, :body::jsonb);
SELECT count(*) AS got, max(receipt) AS receipt FROM courier.receive(:q, 1) \gset
\if :got > 0
SELECT courier.ack(:q, :receipt);
\endif
