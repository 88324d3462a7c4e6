-- courier: receive 1 and ack it in the same statement (one transaction, one commit)
SELECT courier.ack(:q, receipt) FROM courier.receive(:q, 1);
