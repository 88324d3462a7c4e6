--
-- maintain: courier.maintain() removes messages older than their queue's
-- retention and returns how many it removed
--
-- Messages are made old by moving sent_at back in courier.q_<id>, as the
-- superuser; nothing else in the tests touches the message tables.
--
\set VERBOSITY terse
\set SHOW_CONTEXT never

CREATE TEMP TABLE sent (label text PRIMARY KEY, id bigint NOT NULL);

-- message counts of a queue
CREATE FUNCTION pg_temp.counts(queue text)
RETURNS TABLE (depth bigint, visible bigint, in_flight bigint, delayed bigint)
LANGUAGE sql AS $$
	SELECT depth, visible, in_flight, delayed FROM courier.queues WHERE queue_name = queue
$$;

SELECT courier.create_queue('mt_short', retention => '1 minute');
SELECT courier.create_queue('mt_hour', retention => '1 hour');
SELECT courier.create_queue('mt_long', retention => '14 days');
SELECT queue_id AS short_id FROM courier.queue WHERE queue_name = 'mt_short' \gset
SELECT queue_id AS hour_id FROM courier.queue WHERE queue_name = 'mt_hour' \gset
SELECT queue_id AS long_id FROM courier.queue WHERE queue_name = 'mt_long' \gset

INSERT INTO sent
SELECT 's' || i, courier.send('mt_short', 's' || i) FROM generate_series(1, 4) AS i;
-- s5 is delayed
INSERT INTO sent VALUES ('s5', courier.send('mt_short', 's5'::text, delay => '10 minutes'));
INSERT INTO sent
SELECT 'h' || i, courier.send('mt_hour', 'h' || i) FROM generate_series(1, 2) AS i;
INSERT INTO sent
SELECT 'l' || i, courier.send('mt_long', 'l' || i) FROM generate_series(1, 2) AS i;
-- s2 is in flight
CREATE TEMP TABLE got AS SELECT body_text, receipt FROM courier.receive('mt_short', 2, '1 hour');
SELECT courier.release('mt_short', receipt) FROM got WHERE body_text = 's1';
SELECT receipt AS s2_receipt FROM got WHERE body_text = 's2' \gset
SELECT * FROM pg_temp.counts('mt_short');

-- nothing is old enough yet
SELECT courier.maintain();
SELECT queue_name, depth FROM courier.queues WHERE queue_name LIKE 'mt\_%' ORDER BY queue_name;

-- make messages old: s1, s2 (in flight), s3 and s5 (delayed) by 2 minutes, past the
-- 1 minute retention; h1 by 30 minutes (kept), h2 by 61 minutes (removed);
-- l1 by 13 days (kept), l2 by 15 days (removed)
UPDATE courier.q_:short_id SET sent_at = sent_at - interval '2 minutes'
 WHERE msg_id IN (SELECT id FROM sent WHERE label IN ('s1', 's2', 's3', 's5'));
UPDATE courier.q_:hour_id SET sent_at = sent_at - interval '30 minutes'
 WHERE msg_id = (SELECT id FROM sent WHERE label = 'h1');
UPDATE courier.q_:hour_id SET sent_at = sent_at - interval '61 minutes'
 WHERE msg_id = (SELECT id FROM sent WHERE label = 'h2');
UPDATE courier.q_:long_id SET sent_at = sent_at - interval '13 days'
 WHERE msg_id = (SELECT id FROM sent WHERE label = 'l1');
UPDATE courier.q_:long_id SET sent_at = sent_at - interval '15 days'
 WHERE msg_id = (SELECT id FROM sent WHERE label = 'l2');

-- the view reports the age of the oldest message
SELECT queue_name, oldest_message_age >= interval '2 minutes' AS older_than_2_minutes,
       oldest_message_age >= interval '15 days' AS older_than_15_days
  FROM courier.queues WHERE queue_name LIKE 'mt\_%' ORDER BY queue_name;

-- a maintain that rolls back removes nothing
BEGIN;
SELECT courier.maintain() > 0 AS removed_some;
ROLLBACK;
SELECT queue_name, depth FROM courier.queues WHERE queue_name LIKE 'mt\_%' ORDER BY queue_name;

SELECT courier.maintain();
SELECT queue_name, depth FROM courier.queues WHERE queue_name LIKE 'mt\_%' ORDER BY queue_name;
-- which messages are left
SELECT 'mt_short' AS queue, s.label, r.receive_count
  FROM courier.receive('mt_short', 10) r LEFT JOIN sent s ON s.id = r.msg_id
UNION ALL
SELECT 'mt_hour', s.label, r.receive_count
  FROM courier.receive('mt_hour', 10) r LEFT JOIN sent s ON s.id = r.msg_id
UNION ALL
SELECT 'mt_long', s.label, r.receive_count
  FROM courier.receive('mt_long', 10) r LEFT JOIN sent s ON s.id = r.msg_id
ORDER BY 1, 2;
SELECT * FROM pg_temp.counts('mt_short');
-- the removed in-flight message cannot be acked any more
SELECT courier.ack('mt_short', :'s2_receipt');
\echo :SQLSTATE

-- nothing left to remove
SELECT courier.maintain();

-- a shorter retention applies to messages already stored
SELECT courier.alter_queue('mt_long', retention => '1 day');
SELECT courier.maintain();
SELECT depth FROM courier.queues WHERE queue_name = 'mt_long';

-- more old messages than one pass of maintain handles
SELECT courier.create_queue('mt_bulk', retention => '1 minute');
SELECT queue_id AS bulk_id FROM courier.queue WHERE queue_name = 'mt_bulk' \gset
SELECT cardinality(courier.send_batch('mt_bulk', array_agg('b' || i))) AS n
  FROM generate_series(1, 25001) AS i;
SELECT (courier.send_batch('mt_bulk', ARRAY['new']::text[]))[1] AS new_id \gset
UPDATE courier.q_:bulk_id SET sent_at = sent_at - interval '1 hour' WHERE msg_id < :new_id;
SELECT courier.maintain();
SELECT depth FROM courier.queues WHERE queue_name = 'mt_bulk';
SELECT body_text FROM courier.receive('mt_bulk', 10);

--
-- clean up
--
SELECT courier.drop_queue(q)
  FROM unnest(ARRAY['mt_short', 'mt_hour', 'mt_long', 'mt_bulk']) AS q;
SELECT count(*) AS left_over FROM courier.queue WHERE queue_name LIKE 'mt\_%';
