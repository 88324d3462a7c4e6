-- courier: receive 1 in one transaction, ack it in the next (two commits per message)
SELECT count(*) AS got, max(receipt) AS receipt FROM courier.receive(:q, 1) \gset
\if :got > 0
SELECT courier.ack(:q, :receipt);
\else
\sleep 10 ms
\endif
