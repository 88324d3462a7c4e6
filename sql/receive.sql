--
-- receive: receive, max_messages, visibility timeouts, receive_count, ack,
-- ack_batch, change_visibility, release, stale and malformed receipts
--
\set VERBOSITY terse
\set SHOW_CONTEXT never

\i sql/include/sqlstate_of.sql

-- messages by label, and the receipts of each delivery
CREATE TEMP TABLE sent (label text PRIMARY KEY, id bigint NOT NULL);
CREATE TEMP TABLE got (call text NOT NULL, ord bigint, label text, body_text text,
                       receive_count integer, receipt text);

-- receive into got, and show what was received, in the order receive returned it
CREATE FUNCTION pg_temp.recv(call text, queue text, n integer DEFAULT 1, vt interval DEFAULT NULL)
RETURNS TABLE (label text, receive_count integer)
LANGUAGE sql AS $$
	INSERT INTO got
	SELECT recv.call, r.ordinality, s.label, r.body_text, r.receive_count, r.receipt
	  FROM courier.receive(queue, n, vt) WITH ORDINALITY AS r
	  LEFT JOIN sent s ON s.id = r.msg_id;
	SELECT g.label, g.receive_count FROM got g WHERE g.call = recv.call ORDER BY g.ord;
$$;

-- the receipt of one delivery
CREATE FUNCTION pg_temp.rcpt(c text) RETURNS text
LANGUAGE sql AS $$ SELECT receipt FROM got WHERE call = c $$;

-- message counts of a queue
CREATE FUNCTION pg_temp.counts(queue text)
RETURNS TABLE (depth bigint, visible bigint, in_flight bigint, delayed bigint)
LANGUAGE sql AS $$
	SELECT depth, visible, in_flight, delayed FROM courier.queues WHERE queue_name = queue
$$;

SELECT courier.create_queue('rt_main');
INSERT INTO sent
SELECT 'm' || i, courier.send('rt_main', 'm' || i, jsonb_build_object('i', i))
  FROM generate_series(1, 5) AS i;

--
-- receive: one message by default, every column filled
--
INSERT INTO got
SELECT 'first', 1, s.label, r.body_text, r.receive_count, r.receipt
  FROM courier.receive('rt_main') r LEFT JOIN sent s ON s.id = r.msg_id;
SELECT count(*) AS messages FROM got;
SELECT label, body_text, receive_count, length(receipt) > 0 AS has_receipt FROM got;

-- up to max_messages, in message id order
SELECT * FROM pg_temp.recv('three', 'rt_main', 3);
SELECT * FROM pg_temp.recv('rest', 'rt_main', 10);
-- everything is leased now: nothing to receive
SELECT * FROM pg_temp.recv('none', 'rt_main', 10);
SELECT * FROM pg_temp.counts('rt_main');
-- every delivery got its own receipt
SELECT count(DISTINCT receipt) AS receipts FROM got;

--
-- ack
--
SELECT courier.ack('rt_main', pg_temp.rcpt('first'));
SELECT * FROM pg_temp.counts('rt_main');
-- acked twice: stale, nothing changes
SELECT courier.ack('rt_main', pg_temp.rcpt('first'));
\echo :SQLSTATE
SELECT * FROM pg_temp.counts('rt_main');

--
-- ack_batch
--
-- two good receipts and one stale one: two acked
SELECT courier.ack_batch('rt_main', ARRAY(SELECT receipt FROM got
                                           WHERE call = 'first' OR label IN ('m2', 'm3')));
SELECT * FROM pg_temp.counts('rt_main');
-- the same receipt twice counts once
SELECT courier.ack_batch('rt_main', ARRAY(SELECT receipt FROM got, generate_series(1, 2)
                                           WHERE label = 'm4'));
SELECT courier.ack_batch('rt_main', '{}');
-- one malformed receipt fails the whole call: m5 stays
SELECT courier.ack_batch('rt_main', ARRAY[(SELECT receipt FROM got WHERE label = 'm5'), 'garbage']);
\echo :SQLSTATE
SELECT * FROM pg_temp.counts('rt_main');
SELECT courier.ack_batch('rt_main', ARRAY(SELECT receipt FROM got WHERE label = 'm5'));
SELECT * FROM pg_temp.counts('rt_main');
SELECT courier.ack_batch('rt_main', ARRAY(SELECT receipt FROM got));
SELECT count(*) AS received FROM courier.receive('rt_main', 10);

-- the other columns
SELECT courier.create_queue('rt_cols');
INSERT INTO sent VALUES ('c-jsonb', courier.send('rt_cols', '{"k": [1, 2]}'::jsonb, '{"a": "b"}'));
SELECT s.label, r.body, r.body_text, r.body_bytes, r.attributes, r.receive_count,
       r.sent_at BETWEEN now() - interval '1 hour' AND now() AS sent_at_ok
  FROM courier.receive('rt_cols') r LEFT JOIN sent s ON s.id = r.msg_id;

--
-- visibility timeouts: a lease of 0 expires at once, and receive_count grows
-- with each delivery
--
SELECT courier.create_queue('rt_vt');
INSERT INTO sent VALUES ('v1', courier.send('rt_vt', 'v1'::text));
SELECT * FROM pg_temp.recv('v1 a', 'rt_vt', 1, '0');
SELECT * FROM pg_temp.recv('v1 b', 'rt_vt', 1, '0');
SELECT * FROM pg_temp.recv('v1 c', 'rt_vt', 1, '1 hour');
SELECT * FROM pg_temp.recv('v1 d', 'rt_vt', 1);
SELECT * FROM pg_temp.counts('rt_vt');
-- receipts of earlier deliveries are stale: nothing changes
SELECT courier.ack('rt_vt', pg_temp.rcpt('v1 a'));
\echo :SQLSTATE
SELECT courier.ack('rt_vt', pg_temp.rcpt('v1 b'));
\echo :SQLSTATE
SELECT courier.change_visibility('rt_vt', pg_temp.rcpt('v1 b'), '0');
\echo :SQLSTATE
SELECT courier.release('rt_vt', pg_temp.rcpt('v1 a'));
\echo :SQLSTATE
SELECT courier.ack_batch('rt_vt', ARRAY[pg_temp.rcpt('v1 a'), pg_temp.rcpt('v1 b')]);
SELECT * FROM pg_temp.counts('rt_vt');
SELECT * FROM pg_temp.recv('v1 e', 'rt_vt', 1);
-- the current receipt works
SELECT courier.ack('rt_vt', pg_temp.rcpt('v1 c'));
SELECT * FROM pg_temp.counts('rt_vt');

-- an expired lease that nobody received again can still be acked
INSERT INTO sent VALUES ('v2', courier.send('rt_vt', 'v2'::text));
SELECT * FROM pg_temp.recv('v2 a', 'rt_vt', 1, '0');
SELECT courier.ack('rt_vt', pg_temp.rcpt('v2 a'));
SELECT * FROM pg_temp.counts('rt_vt');
SELECT * FROM pg_temp.recv('v2 b', 'rt_vt', 1, '0');

-- NULL visibility_timeout is the queue's default
SELECT courier.create_queue('rt_zero', visibility_timeout => '0');
INSERT INTO sent VALUES ('z1', courier.send('rt_zero', 'z1'::text));
SELECT * FROM pg_temp.recv('z1 a', 'rt_zero');
SELECT * FROM pg_temp.recv('z1 b', 'rt_zero', 1, NULL);
SELECT * FROM pg_temp.recv('z1 c', 'rt_zero', 1, '12 hours');
SELECT * FROM pg_temp.recv('z1 d', 'rt_zero');

-- delayed messages are not received
INSERT INTO sent VALUES ('delayed', courier.send('rt_vt', 'delayed'::text, delay => '10 minutes'));
SELECT * FROM pg_temp.recv('delayed', 'rt_vt', 10);

--
-- bad max_messages and visibility_timeout: an error and no lease
--
INSERT INTO sent VALUES ('w', courier.send('rt_main', 'w'::text));
SELECT * FROM courier.receive('rt_main', 0);
\echo :SQLSTATE
SELECT * FROM courier.receive('rt_main', 1001);
\echo :SQLSTATE
SELECT * FROM courier.receive('rt_main', 1, '-1 second');
\echo :SQLSTATE
SELECT * FROM courier.receive('rt_main', 1, '12 hours 1 second');
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('max_messages 0', $$SELECT * FROM courier.receive('rt_main', 0)$$),
    ('max_messages -1', $$SELECT * FROM courier.receive('rt_main', -1)$$),
    ('max_messages 1001', $$SELECT * FROM courier.receive('rt_main', 1001)$$),
    ('max_messages NULL', $$SELECT * FROM courier.receive('rt_main', NULL)$$),
    ('visibility_timeout -1 second', $$SELECT * FROM courier.receive('rt_main', 1, '-1 second')$$),
    ('visibility_timeout 12h 1s', $$SELECT * FROM courier.receive('rt_main', 1, '12 hours 1 second')$$),
    ('visibility_timeout 1 day', $$SELECT * FROM courier.receive('rt_main', 1, '1 day')$$),
    ('visibility_timeout 1 month', $$SELECT * FROM courier.receive('rt_main', 1, '1 mon')$$),
    ('unknown queue', $$SELECT * FROM courier.receive('rt_nope')$$),
    ('NULL queue', $$SELECT * FROM courier.receive(NULL)$$)
  ) AS v(label, stmt);
SELECT * FROM pg_temp.recv('w', 'rt_main', 1000, '12 hours');
SELECT * FROM pg_temp.counts('rt_main');

-- max_messages 1000, the most one call returns: the oldest 1000, in id order
SELECT courier.create_queue('rt_many');
SELECT cardinality(courier.send_batch('rt_many', array_agg('n' || i ORDER BY i))) AS n
  FROM generate_series(1, 1001) AS i;
CREATE TEMP TABLE many AS
SELECT * FROM courier.receive('rt_many', 1000, '1 hour') WITH ORDINALITY;
SELECT count(*) AS received, count(DISTINCT msg_id) AS distinct_ids,
       bool_and(ordinality = id_rank) AS in_id_order,
       bool_and(receive_count = 1) AS first_delivery
  FROM (SELECT ordinality, msg_id, receive_count, rank() OVER (ORDER BY msg_id) AS id_rank
          FROM many) AS s;
SELECT * FROM pg_temp.counts('rt_many');
SELECT courier.ack_batch('rt_many', ARRAY(SELECT receipt FROM many));
SELECT body_text, receive_count FROM courier.receive('rt_many', 1000);
SELECT * FROM pg_temp.counts('rt_many');

--
-- change_visibility
--
SELECT courier.create_queue('rt_cv');
INSERT INTO sent VALUES ('c1', courier.send('rt_cv', 'c1'::text));
SELECT * FROM pg_temp.recv('c1 a', 'rt_cv', 1, '1 hour');
SELECT * FROM pg_temp.recv('c1 none', 'rt_cv');
-- a lease shortened to 0 ends now: the message can be received again
SELECT courier.change_visibility('rt_cv', pg_temp.rcpt('c1 a'), '0');
SELECT * FROM pg_temp.counts('rt_cv');
SELECT * FROM pg_temp.recv('c1 b', 'rt_cv', 1, '1 hour');
-- the old receipt is stale now
SELECT courier.change_visibility('rt_cv', pg_temp.rcpt('c1 a'), '1 hour');
\echo :SQLSTATE
-- a lease extended from 0 keeps the message in flight
INSERT INTO sent VALUES ('c2', courier.send('rt_cv', 'c2'::text));
SELECT * FROM pg_temp.recv('c2 a', 'rt_cv', 1, '0');
SELECT courier.change_visibility('rt_cv', pg_temp.rcpt('c2 a'), '12 hours');
SELECT * FROM pg_temp.counts('rt_cv');
SELECT * FROM pg_temp.recv('c2 none', 'rt_cv');
-- out of range
SELECT courier.change_visibility('rt_cv', pg_temp.rcpt('c1 b'), '12 hours 1 second');
\echo :SQLSTATE
SELECT courier.change_visibility('rt_cv', pg_temp.rcpt('c1 b'), '-1 second');
\echo :SQLSTATE
-- the receipt still works after those errors and after change_visibility
SELECT courier.ack('rt_cv', pg_temp.rcpt('c1 b'));
SELECT courier.ack('rt_cv', pg_temp.rcpt('c2 a'));
SELECT * FROM pg_temp.counts('rt_cv');
-- acked: stale
SELECT courier.change_visibility('rt_cv', pg_temp.rcpt('c1 b'), '1 minute');
\echo :SQLSTATE

--
-- release
--
SELECT courier.create_queue('rt_rel');
INSERT INTO sent VALUES ('r1', courier.send('rt_rel', 'r1'::text));
SELECT * FROM pg_temp.recv('r1 a', 'rt_rel', 1, '1 hour');
-- released without delay: visible at once
SELECT courier.release('rt_rel', pg_temp.rcpt('r1 a'));
SELECT * FROM pg_temp.counts('rt_rel');
SELECT * FROM pg_temp.recv('r1 b', 'rt_rel', 1, '1 hour');
SELECT courier.release('rt_rel', pg_temp.rcpt('r1 a'));
\echo :SQLSTATE
-- released with a delay: delayed, not received
SELECT courier.release('rt_rel', pg_temp.rcpt('r1 b'), '10 minutes');
SELECT * FROM pg_temp.counts('rt_rel');
SELECT * FROM pg_temp.recv('r1 none', 'rt_rel');
-- release delays go up to 12 hours, longer than send delays
INSERT INTO sent VALUES ('r2', courier.send('rt_rel', 'r2'::text));
SELECT * FROM pg_temp.recv('r2 a', 'rt_rel', 1, '1 hour');
SELECT courier.release('rt_rel', pg_temp.rcpt('r2 a'), '-1 second');
\echo :SQLSTATE
SELECT courier.release('rt_rel', pg_temp.rcpt('r2 a'), '12 hours 1 second');
\echo :SQLSTATE
SELECT courier.release('rt_rel', pg_temp.rcpt('r2 a'), '12 hours');
SELECT * FROM pg_temp.counts('rt_rel');
-- acked, then released: stale
INSERT INTO sent VALUES ('r3', courier.send('rt_rel', 'r3'::text));
SELECT * FROM pg_temp.recv('r3 a', 'rt_rel', 1, '1 hour');
SELECT courier.ack('rt_rel', pg_temp.rcpt('r3 a'));
SELECT courier.release('rt_rel', pg_temp.rcpt('r3 a'));
\echo :SQLSTATE
SELECT * FROM pg_temp.counts('rt_rel');

-- released messages come back in message id order, not in release order
SELECT courier.create_queue('rt_order');
INSERT INTO sent
SELECT 'o' || i, courier.send('rt_order', 'o' || i) FROM generate_series(1, 3) AS i;
SELECT * FROM pg_temp.recv('o a', 'rt_order', 3, '1 hour');
SELECT courier.release('rt_order', receipt) FROM got WHERE call = 'o a' AND label = 'o3';
SELECT courier.release('rt_order', receipt) FROM got WHERE call = 'o a' AND label = 'o1';
SELECT * FROM pg_temp.recv('o b', 'rt_order', 10, '1 hour');
-- also when newer messages are visible too
SELECT courier.create_queue('rt_order2');
INSERT INTO sent
SELECT 'p' || i, courier.send('rt_order2', 'p' || i) FROM generate_series(1, 4) AS i;
SELECT * FROM pg_temp.recv('p a', 'rt_order2', 3, '1 hour');
SELECT courier.release('rt_order2', receipt) FROM got WHERE call = 'p a' AND label IN ('p1', 'p3');
SELECT * FROM pg_temp.recv('p b', 'rt_order2', 10, '1 hour');
-- one receive delivers a message once, even with a lease that ends at once
SELECT courier.release('rt_order2', receipt) FROM got WHERE call = 'p b' AND label = 'p1';
INSERT INTO sent VALUES ('p5', courier.send('rt_order2', 'p5'::text));
SELECT * FROM pg_temp.recv('p c', 'rt_order2', 10, '0');

--
-- malformed receipts
--
SELECT courier.ack('rt_main', 'garbage');
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('ack empty', $$SELECT courier.ack('rt_main', '')$$),
    ('ack garbage', $$SELECT courier.ack('rt_main', 'garbage')$$),
    ('ack digits', $$SELECT courier.ack('rt_main', '12345')$$),
    ('ack very long', $$SELECT courier.ack('rt_main', repeat('x', 10000))$$),
    ('ack_batch empty string', $$SELECT courier.ack_batch('rt_main', ARRAY[''])$$),
    ('change_visibility garbage', $$SELECT courier.change_visibility('rt_main', 'garbage', '1 minute')$$),
    ('release garbage', $$SELECT courier.release('rt_main', 'garbage')$$)
  ) AS v(label, stmt);
-- a receipt with one character changed is malformed or stale, never accepted
SELECT pg_temp.sqlstate_of(format('SELECT courier.ack(%L, %L)', 'rt_order',
           overlay(receipt placing CASE WHEN substr(receipt, length(receipt), 1) = '0'
                                        THEN '1' ELSE '0' END
                   from length(receipt) for 1))) IN ('22P02', '55000') AS refused
  FROM got WHERE call = 'o b' AND label = 'o1';
SELECT * FROM pg_temp.counts('rt_order');

--
-- unknown queues and NULL arguments
--
SELECT * FROM courier.receive('rt_nope');
\echo :SQLSTATE
SELECT courier.ack('rt_nope', pg_temp.rcpt('r2 a'));
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('ack unknown queue', $$SELECT courier.ack('rt_nope', pg_temp.rcpt('r2 a'))$$),
    ('ack_batch unknown queue', $$SELECT courier.ack_batch('rt_nope', ARRAY[pg_temp.rcpt('r2 a')])$$),
    ('change_visibility unknown queue', $$SELECT courier.change_visibility('rt_nope', pg_temp.rcpt('r2 a'), '0')$$),
    ('release unknown queue', $$SELECT courier.release('rt_nope', pg_temp.rcpt('r2 a'))$$),
    ('ack NULL queue', $$SELECT courier.ack(NULL, pg_temp.rcpt('r2 a'))$$),
    ('ack NULL receipt', $$SELECT courier.ack('rt_rel', NULL)$$),
    ('ack_batch NULL queue', $$SELECT courier.ack_batch(NULL, ARRAY[pg_temp.rcpt('r2 a')])$$),
    ('ack_batch NULL receipts', $$SELECT courier.ack_batch('rt_rel', NULL)$$),
    ('change_visibility NULL queue', $$SELECT courier.change_visibility(NULL, pg_temp.rcpt('r2 a'), '0')$$),
    ('change_visibility NULL receipt', $$SELECT courier.change_visibility('rt_rel', NULL, '0')$$),
    ('change_visibility NULL timeout', $$SELECT courier.change_visibility('rt_rel', pg_temp.rcpt('r2 a'), NULL)$$),
    ('release NULL queue', $$SELECT courier.release(NULL, pg_temp.rcpt('r2 a'))$$),
    ('release NULL receipt', $$SELECT courier.release('rt_rel', NULL)$$),
    -- a NULL delay is allowed (it means the queue's retry delay): this receipt is stale
    ('release NULL delay, stale', $$SELECT courier.release('rt_rel', pg_temp.rcpt('r2 a'), NULL)$$)
  ) AS v(label, stmt);
-- none of that changed r2, still released for 12 hours
SELECT * FROM pg_temp.counts('rt_rel');

--
-- transactions: a receive or an ack that rolls back did not happen
--
SELECT courier.create_queue('rt_tx');
INSERT INTO sent VALUES ('t1', courier.send('rt_tx', 't1'::text));
BEGIN;
SELECT * FROM pg_temp.recv('t1 rolled back', 'rt_tx', 1, '1 hour');
ROLLBACK;
SELECT * FROM pg_temp.counts('rt_tx');
SELECT * FROM pg_temp.recv('t1 a', 'rt_tx', 1, '1 hour');
BEGIN;
SELECT courier.ack('rt_tx', pg_temp.rcpt('t1 a'));
ROLLBACK;
SELECT * FROM pg_temp.counts('rt_tx');
SELECT courier.ack('rt_tx', pg_temp.rcpt('t1 a'));
SELECT * FROM pg_temp.counts('rt_tx');

--
-- clean up
--
SELECT courier.drop_queue(q)
  FROM unnest(ARRAY['rt_main', 'rt_cols', 'rt_vt', 'rt_zero', 'rt_cv', 'rt_rel', 'rt_order', 'rt_order2',
                    'rt_many', 'rt_tx']) AS q;
SELECT count(*) AS left_over FROM courier.queue WHERE queue_name LIKE 'rt\_%';
