-- baseline: :n-row DELETE consumer, SKIP LOCKED (one transaction per batch)
DELETE FROM bench.plain_recv
 WHERE msg_id = ANY (ARRAY(SELECT msg_id FROM bench.plain_recv ORDER BY msg_id
                           LIMIT :n FOR UPDATE SKIP LOCKED))
RETURNING *;
