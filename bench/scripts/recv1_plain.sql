-- baseline: one-row DELETE consumer, SKIP LOCKED (one transaction per message)
DELETE FROM bench.plain_recv
 WHERE msg_id = (SELECT msg_id FROM bench.plain_recv ORDER BY msg_id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING *;
