--
-- groups: FIFO queues (doc/API.md, "FIFO queues: message groups and
-- deduplication"; issue 3): create_queue/alter_queue fifo, content_dedup and
-- dedup_window, group_id and dedup_id in send and send_batch, delivery order
-- within a group, one group's messages never in flight twice, several
-- messages of a group in one receive, round robin over groups, expired
-- leases and releases, deduplication by dedup_id and by content, the FIFO
-- columns of courier.queues, purge, drop and maintain on FIFO queues, and
-- every bad input of those.
--
-- Leases are made to end at once with visibility_timeout => '0' or
-- change_visibility(..., '0'); nothing sleeps.  Old messages and old dedup
-- ids are made by moving their timestamps back, as the superuser.
--
\set VERBOSITY terse
\set SHOW_CONTEXT never

\i sql/include/sqlstate_of.sql

-- ids returned by send, by label (the body of each message is its label)
CREATE TEMP TABLE sent (label text PRIMARY KEY, id bigint NOT NULL);
-- every delivery, by call
CREATE TEMP TABLE got (call text NOT NULL, ord bigint, label text, msg_id bigint, receipt text,
                       group_id text, receive_count integer);

-- receive into got (leases of 1 hour unless vt says otherwise); show what
-- came, in the order receive returned it
CREATE FUNCTION pg_temp.recv(call text, queue text, n integer DEFAULT 1,
                             vt interval DEFAULT '1 hour')
RETURNS TABLE (label text, group_id text, receive_count integer)
LANGUAGE sql AS $$
	INSERT INTO got
	SELECT recv.call, r.ordinality, r.body_text, r.msg_id, r.receipt, r.group_id, r.receive_count
	  FROM courier.receive(queue, n, vt) WITH ORDINALITY AS r;
	SELECT g.label, g.group_id, g.receive_count FROM got g WHERE g.call = recv.call ORDER BY g.ord;
$$;

-- the receipt of one delivery
CREATE FUNCTION pg_temp.rcpt(c text, l text) RETURNS text
LANGUAGE sql AS $$ SELECT receipt FROM got WHERE call = c AND label = l $$;

-- acknowledge everything one call received; how many were acked
CREATE FUNCTION pg_temp.ack_call(queue text, c text) RETURNS integer
LANGUAGE sql AS $$ SELECT courier.ack_batch(queue, ARRAY(SELECT receipt FROM got WHERE call = c)) $$;

-- the FIFO counts of a queue, as courier.queues shows them
CREATE FUNCTION pg_temp.counts(queue text)
RETURNS TABLE (depth bigint, in_flight bigint, groups bigint, groups_in_flight bigint,
               has_ready_group boolean)
LANGUAGE sql AS $$
	SELECT depth, in_flight, groups, groups_in_flight, oldest_ready_group_age IS NOT NULL
	  FROM courier.queues WHERE queue_name = queue
$$;

-- receive one message at a time and ack it at once, until nothing comes:
-- the bodies in the order they were delivered (jsonb as text, bytea in hex)
CREATE FUNCTION pg_temp.drain(queue text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	seen text[] := '{}';
BEGIN
	LOOP
		SELECT * INTO r FROM courier.receive(queue, 1, '1 hour');
		EXIT WHEN r.msg_id IS NULL;
		seen := seen || coalesce(r.body_text, r.body::text, encode(r.body_bytes, 'hex'));
		PERFORM courier.ack(queue, r.receipt);
	END LOOP;
	RETURN array_to_string(seen, ' ');
END $$;

-- move every timestamp of a FIFO queue's dedup ids (courier.d_<queue_id>)
-- back by 'by', whatever the columns are called: the dedup ids look that old
CREATE FUNCTION pg_temp.age_dedup(queue text, by interval) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	rel text := 'd_' || (SELECT q.queue_id FROM courier.queue q WHERE q.queue_name = queue);
	sets text;
BEGIN
	SELECT string_agg(format('%I = %I - %L::interval', attname, attname, by), ', ')
	  INTO sets
	  FROM pg_attribute
	 WHERE attrelid = format('courier.%I', rel)::regclass AND attnum > 0 AND NOT attisdropped
	   AND atttypid IN ('timestamptz'::regtype, 'timestamp'::regtype);
	IF sets IS NULL THEN
		RAISE EXCEPTION 'courier.% has no timestamp column', rel;
	END IF;
	EXECUTE format('UPDATE courier.%I SET %s', rel, sets);
END $$;

-- the number of dedup ids a FIFO queue stores
CREATE FUNCTION pg_temp.dedup_rows(queue text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM courier.%I',
				   'd_' || (SELECT q.queue_id FROM courier.queue q WHERE q.queue_name = queue))
	   INTO n;
	RETURN n;
END $$;

--
-- create_queue: fifo, content_dedup, dedup_window
--
SELECT courier.create_queue('gt_fifo', fifo => true);
SELECT courier.create_queue('gt_cdedup', fifo => true, content_dedup => true,
                            dedup_window => '1 hour');
SELECT courier.create_queue('gt_std');
-- a standard queue accepts the defaults of the FIFO-only options
SELECT courier.create_queue('gt_std_defaults', fifo => false, content_dedup => false,
                            dedup_window => '5 minutes');
SELECT queue_name, fifo, content_dedup, dedup_window
  FROM courier.queues WHERE queue_name IN ('gt_fifo', 'gt_cdedup') ORDER BY queue_name;
SELECT queue_name, fifo, content_dedup
  FROM courier.queues WHERE queue_name IN ('gt_std', 'gt_std_defaults') ORDER BY queue_name;
-- a new FIFO queue has no groups
SELECT * FROM pg_temp.counts('gt_fifo');
-- its storage: a group table (UNLOGGED) and a dedup table (logged) besides
-- the message and lease tables
SELECT substr(c.relname, 1, 2) AS prefix, c.relkind, c.relpersistence
  FROM courier.queue q
  JOIN pg_class c ON c.relname IN ('g_' || q.queue_id, 'd_' || q.queue_id)
  JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'courier'
 WHERE q.queue_name = 'gt_fifo'
 ORDER BY 1;

-- the bounds of dedup_window
SELECT courier.create_queue('gt_win_min', fifo => true, dedup_window => '1 second');
SELECT courier.create_queue('gt_win_max', fifo => true, dedup_window => '1 day');
SELECT queue_name, dedup_window FROM courier.queues WHERE queue_name LIKE 'gt\_win\_%'
 ORDER BY queue_name;

-- bad input: an error and no queue
SELECT count(*) AS queues_before_bad FROM courier.queue \gset
SELECT courier.create_queue('gt_bad', content_dedup => true);
\echo :SQLSTATE
SELECT courier.create_queue('gt_bad', dedup_window => '1 minute');
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('content_dedup, standard queue', $$SELECT courier.create_queue('gt_bad', content_dedup => true)$$),
    ('content_dedup, fifo false', $$SELECT courier.create_queue('gt_bad', fifo => false, content_dedup => true)$$),
    ('dedup_window, standard queue', $$SELECT courier.create_queue('gt_bad', dedup_window => '1 minute')$$),
    ('both, standard queue', $$SELECT courier.create_queue('gt_bad', content_dedup => true, dedup_window => '1 hour')$$),
    ('dedup_window 0', $$SELECT courier.create_queue('gt_bad', fifo => true, dedup_window => '0')$$),
    ('dedup_window 999 ms', $$SELECT courier.create_queue('gt_bad', fifo => true, dedup_window => '999 milliseconds')$$),
    ('dedup_window -1 minute', $$SELECT courier.create_queue('gt_bad', fifo => true, dedup_window => '-1 minute')$$),
    ('dedup_window 1 day 1 s', $$SELECT courier.create_queue('gt_bad', fifo => true, dedup_window => '1 day 1 second')$$),
    ('dedup_window 1 month', $$SELECT courier.create_queue('gt_bad', fifo => true, dedup_window => '1 mon')$$),
    ('dedup_window NULL', $$SELECT courier.create_queue('gt_bad', fifo => true, dedup_window => NULL)$$),
    ('content_dedup NULL', $$SELECT courier.create_queue('gt_bad', fifo => true, content_dedup => NULL)$$),
    ('fifo NULL', $$SELECT courier.create_queue('gt_bad', fifo => NULL)$$)
  ) AS v(label, stmt);
SELECT count(*) - :queues_before_bad AS queues_created FROM courier.queue;

--
-- alter_queue: fifo cannot change; content_dedup and dedup_window only on FIFO queues
--
SELECT courier.alter_queue('gt_fifo', fifo => false);
\echo :SQLSTATE
SELECT courier.alter_queue('gt_std', fifo => true);
\echo :SQLSTATE
SELECT courier.alter_queue('gt_std', content_dedup => false);
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('fifo true to false', $$SELECT courier.alter_queue('gt_fifo', fifo => false)$$),
    ('fifo false to true', $$SELECT courier.alter_queue('gt_std', fifo => true)$$),
    ('content_dedup true, standard', $$SELECT courier.alter_queue('gt_std', content_dedup => true)$$),
    ('content_dedup false, standard', $$SELECT courier.alter_queue('gt_std', content_dedup => false)$$),
    ('dedup_window, standard', $$SELECT courier.alter_queue('gt_std', dedup_window => '5 minutes')$$),
    ('dedup_window 0', $$SELECT courier.alter_queue('gt_fifo', dedup_window => '0')$$),
    ('dedup_window -1 second', $$SELECT courier.alter_queue('gt_fifo', dedup_window => '-1 second')$$),
    ('dedup_window 1 day 1 s', $$SELECT courier.alter_queue('gt_fifo', dedup_window => '1 day 1 second')$$),
    ('one good, one bad', $$SELECT courier.alter_queue('gt_fifo', content_dedup => true, dedup_window => '0')$$)
  ) AS v(label, stmt);
-- the same fifo value is accepted and changes nothing; NULL leaves everything as it is
SELECT courier.alter_queue('gt_fifo', fifo => true);
SELECT courier.alter_queue('gt_std', fifo => false);
SELECT courier.alter_queue('gt_fifo', fifo => NULL, content_dedup => NULL, dedup_window => NULL);
SELECT queue_name, fifo, content_dedup, dedup_window
  FROM courier.queues WHERE queue_name = 'gt_fifo';
SELECT queue_name, fifo, content_dedup
  FROM courier.queues WHERE queue_name = 'gt_std';
-- a FIFO queue's content_dedup and dedup_window can change
SELECT courier.alter_queue('gt_win_min', content_dedup => true, dedup_window => '10 minutes');
SELECT courier.alter_queue('gt_win_max', dedup_window => '1 second');
SELECT queue_name, fifo, content_dedup, dedup_window FROM courier.queues
 WHERE queue_name LIKE 'gt\_win\_%' ORDER BY queue_name;

--
-- dead-letter queues: a FIFO queue's is a FIFO queue, a standard queue's a standard queue
--
SELECT courier.create_queue('gt_dlq_fifo', fifo => true);
SELECT courier.create_queue('gt_dlq_std');
SELECT courier.create_queue('gt_src_fifo', fifo => true, dead_letter_queue => 'gt_dlq_fifo',
                            max_receives => 3);
SELECT courier.create_queue('gt_src_std', dead_letter_queue => 'gt_dlq_std', max_receives => 3);
SELECT count(*) AS queues_before_bad FROM courier.queue \gset
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('create: FIFO, standard DLQ', $$SELECT courier.create_queue('gt_bad', fifo => true, dead_letter_queue => 'gt_dlq_std', max_receives => 3)$$),
    ('create: standard, FIFO DLQ', $$SELECT courier.create_queue('gt_bad', dead_letter_queue => 'gt_dlq_fifo', max_receives => 3)$$),
    ('alter: FIFO, standard DLQ', $$SELECT courier.alter_queue('gt_src_fifo', dead_letter_queue => 'gt_dlq_std', max_receives => 3)$$),
    ('alter: standard, FIFO DLQ', $$SELECT courier.alter_queue('gt_src_std', dead_letter_queue => 'gt_dlq_fifo', max_receives => 3)$$)
  ) AS v(label, stmt);
SELECT count(*) - :queues_before_bad AS queues_created FROM courier.queue;
SELECT queue_name, fifo, dead_letter_queue, max_receives
  FROM courier.queues WHERE queue_name LIKE 'gt\_src\_%' ORDER BY queue_name;

--
-- send: bad input; nothing is stored
--
SELECT courier.send('gt_fifo', 'x'::text);
\echo :SQLSTATE
SELECT courier.send('gt_fifo', 'x'::text, group_id => '');
\echo :SQLSTATE
SELECT courier.send('gt_std', 'x'::text, dedup_id => 'k');
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('no group_id', $$SELECT courier.send('gt_fifo', 'x'::text)$$),
    ('no group_id, jsonb', $$SELECT courier.send('gt_fifo', '{"a": 1}'::jsonb)$$),
    ('no group_id, bytea', $$SELECT courier.send('gt_fifo', '\x01'::bytea)$$),
    ('group_id NULL', $$SELECT courier.send('gt_fifo', 'x'::text, group_id => NULL)$$),
    ('empty group_id', $$SELECT courier.send('gt_fifo', 'x'::text, group_id => '')$$),
    ('129-char group_id', $$SELECT courier.send('gt_fifo', 'x'::text, group_id => repeat('g', 129))$$),
    ('empty dedup_id', $$SELECT courier.send('gt_fifo', 'x'::text, group_id => 'g', dedup_id => '')$$),
    ('129-char dedup_id', $$SELECT courier.send('gt_fifo', 'x'::text, group_id => 'g', dedup_id => repeat('k', 129))$$),
    ('delay 1 minute, FIFO', $$SELECT courier.send('gt_fifo', 'x'::text, group_id => 'g', delay => '1 minute')$$),
    ('delay 15 minutes, FIFO', $$SELECT courier.send('gt_fifo', 'x'::text, group_id => 'g', delay => '15 minutes')$$),
    ('dedup_id, standard', $$SELECT courier.send('gt_std', 'x'::text, dedup_id => 'k')$$),
    ('dedup_id and group_id, standard', $$SELECT courier.send('gt_std', 'x'::text, group_id => 'g', dedup_id => 'k')$$),
    ('empty group_id, standard', $$SELECT courier.send('gt_std', 'x'::text, group_id => '')$$),
    ('129-char group_id, standard', $$SELECT courier.send('gt_std', 'x'::text, group_id => repeat('g', 129))$$)
  ) AS v(label, stmt);
SELECT queue_name, depth FROM courier.queues WHERE queue_name IN ('gt_fifo', 'gt_std')
 ORDER BY queue_name;

-- 128 characters are allowed, also when they take more bytes
SELECT courier.create_queue('gt_long', fifo => true);
SELECT courier.send('gt_long', 'long'::text, group_id => repeat(chr(233), 128),
                    dedup_id => repeat(chr(233), 128)) IS NOT NULL AS sent;
SELECT courier.send('gt_long', 'ascii'::text, group_id => repeat('g', 128),
                    dedup_id => repeat('k', 128)) IS NOT NULL AS sent;
SELECT body_text, length(group_id) AS chars, octet_length(group_id) AS bytes
  FROM courier.receive('gt_long', 10) ORDER BY msg_id;

--
-- group_id on a standard queue: stored and returned, no effect on delivery
--
INSERT INTO sent VALUES ('s1', courier.send('gt_std', 's1'::text, group_id => 'G'));
INSERT INTO sent VALUES ('s2', courier.send('gt_std', 's2'::text, group_id => 'G'));
INSERT INTO sent VALUES ('s3', courier.send('gt_std', 's3'::text));
SELECT * FROM pg_temp.recv('std a', 'gt_std');
-- s2 is delivered while s1 of the same group is in flight
SELECT * FROM pg_temp.recv('std b', 'gt_std', 10);
SELECT cardinality(courier.send_batch('gt_std', ARRAY['s4', 's5', 's6'],
                                      group_ids => ARRAY['H', 'I', 'H'])) AS sent;
SELECT * FROM pg_temp.recv('std c', 'gt_std', 10);
SELECT pg_temp.ack_call('gt_std', c) FROM unnest(ARRAY['std a', 'std b', 'std c']) AS c;

--
-- send_batch: bad input; nothing is stored
--
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('group_ids shorter', $$SELECT courier.send_batch('gt_fifo', ARRAY['x', 'y'], group_ids => ARRAY['g'])$$),
    ('group_ids longer', $$SELECT courier.send_batch('gt_fifo', ARRAY['x'], group_ids => ARRAY['g', 'h'])$$),
    ('group_ids empty', $$SELECT courier.send_batch('gt_fifo', ARRAY['x'], group_ids => '{}')$$),
    ('dedup_ids shorter', $$SELECT courier.send_batch('gt_fifo', ARRAY['x', 'y'], group_ids => ARRAY['g', 'g'], dedup_ids => ARRAY['k'])$$),
    ('dedup_ids longer', $$SELECT courier.send_batch('gt_fifo', ARRAY['x'], group_ids => ARRAY['g'], dedup_ids => ARRAY['k', 'l'])$$),
    ('no group_ids', $$SELECT courier.send_batch('gt_fifo', ARRAY['x'])$$),
    ('no group_ids, jsonb', $$SELECT courier.send_batch('gt_fifo', ARRAY['{}'::jsonb])$$),
    ('NULL group_ids element', $$SELECT courier.send_batch('gt_fifo', ARRAY['x', 'y'], group_ids => ARRAY['g', NULL])$$),
    ('empty group_ids element', $$SELECT courier.send_batch('gt_fifo', ARRAY['x', 'y'], group_ids => ARRAY['g', ''])$$),
    ('129-char group_ids element', $$SELECT courier.send_batch('gt_fifo', ARRAY['x', 'y'], group_ids => ARRAY['g', repeat('g', 129)])$$),
    ('empty dedup_ids element', $$SELECT courier.send_batch('gt_fifo', ARRAY['x', 'y'], group_ids => ARRAY['g', 'g'], dedup_ids => ARRAY['k', ''])$$),
    ('129-char dedup_ids element', $$SELECT courier.send_batch('gt_fifo', ARRAY['x', 'y'], group_ids => ARRAY['g', 'g'], dedup_ids => ARRAY['k', repeat('k', 129)])$$),
    ('delay, FIFO', $$SELECT courier.send_batch('gt_fifo', ARRAY['x'], delay => '1 minute', group_ids => ARRAY['g'])$$),
    ('dedup_ids, standard', $$SELECT courier.send_batch('gt_std', ARRAY['x'], dedup_ids => ARRAY['k'])$$),
    ('group_ids shorter, standard', $$SELECT courier.send_batch('gt_std', ARRAY['x', 'y'], group_ids => ARRAY['g'])$$)
  ) AS v(label, stmt);
SELECT queue_name, depth FROM courier.queues WHERE queue_name IN ('gt_fifo', 'gt_std')
 ORDER BY queue_name;

--
-- order within a group; a busy group is skipped
--
INSERT INTO sent
SELECT l, courier.send('gt_fifo', l, group_id => left(l, 1))
  FROM unnest(ARRAY['A1', 'B1', 'A2', 'C1', 'A3', 'B2']) AS l;
SELECT * FROM pg_temp.counts('gt_fifo');
-- one message per receive: the head of each group in turn; A2 is not
-- delivered while A1 is in flight, so the second receive gets B's head
SELECT * FROM pg_temp.recv('o1', 'gt_fifo');
SELECT * FROM pg_temp.recv('o2', 'gt_fifo');
SELECT * FROM pg_temp.recv('o3', 'gt_fifo');
-- every group is in flight: nothing more
SELECT * FROM pg_temp.recv('o4', 'gt_fifo', 10);
SELECT * FROM pg_temp.counts('gt_fifo');
-- A1 acked: the rest of group A, in order, and nothing of B or C
SELECT courier.ack('gt_fifo', pg_temp.rcpt('o1', 'A1'));
SELECT * FROM pg_temp.counts('gt_fifo');
SELECT * FROM pg_temp.recv('o5', 'gt_fifo', 10);
SELECT * FROM pg_temp.recv('o6', 'gt_fifo', 10);
-- B1 and C1 acked: B2 comes; group C has no messages any more
SELECT courier.ack('gt_fifo', pg_temp.rcpt('o2', 'B1'));
SELECT courier.ack('gt_fifo', pg_temp.rcpt('o3', 'C1'));
SELECT * FROM pg_temp.counts('gt_fifo');
SELECT * FROM pg_temp.recv('o7', 'gt_fifo', 10);
SELECT pg_temp.ack_call('gt_fifo', c) FROM unnest(ARRAY['o5', 'o7']) AS c;
SELECT * FROM pg_temp.counts('gt_fifo');
-- a group that had no messages left gets new ones
INSERT INTO sent VALUES ('C2', courier.send('gt_fifo', 'C2'::text, group_id => 'C'));
SELECT * FROM pg_temp.recv('o8', 'gt_fifo', 10);
SELECT pg_temp.ack_call('gt_fifo', 'o8');
SELECT * FROM pg_temp.counts('gt_fifo');

--
-- several messages of one group in one receive: consecutive, in order, all
-- in flight together; rows in msg_id order
--
SELECT courier.create_queue('gt_multi', fifo => true);
INSERT INTO sent
SELECT l, courier.send('gt_multi', l, group_id => left(l, 1))
  FROM unnest(ARRAY['P1', 'Q1', 'P2', 'Q2', 'P3', 'P4', 'P5']) AS l;
-- three: the first three of group P (the first group), none of Q
SELECT * FROM pg_temp.recv('m1', 'gt_multi', 3);
SELECT * FROM pg_temp.counts('gt_multi');
-- P is busy: Q's messages, not P4
SELECT * FROM pg_temp.recv('m2', 'gt_multi', 10);
SELECT * FROM pg_temp.recv('m3', 'gt_multi', 10);
-- one of P's three acked: the group is still in flight
SELECT courier.ack('gt_multi', pg_temp.rcpt('m1', 'P1'));
SELECT * FROM pg_temp.recv('m4', 'gt_multi', 10);
SELECT * FROM pg_temp.counts('gt_multi');
SELECT courier.ack_batch('gt_multi', ARRAY[pg_temp.rcpt('m1', 'P2'), pg_temp.rcpt('m1', 'P3')]);
SELECT * FROM pg_temp.recv('m5', 'gt_multi', 10);
SELECT pg_temp.ack_call('gt_multi', c) FROM unnest(ARRAY['m2', 'm5']) AS c;
-- two groups in one receive: every message, in msg_id order (the groups interleaved)
INSERT INTO sent
SELECT l, courier.send('gt_multi', l, group_id => left(l, 1))
  FROM unnest(ARRAY['P6', 'Q3', 'P7', 'Q4', 'P8']) AS l;
SELECT * FROM pg_temp.recv('m6', 'gt_multi', 10);
SELECT count(*) = count(*) FILTER (WHERE ord = id_rank) AS in_msg_id_order
  FROM (SELECT ord, rank() OVER (ORDER BY msg_id) AS id_rank FROM got WHERE call = 'm6') AS s;
SELECT pg_temp.ack_call('gt_multi', 'm6');
SELECT * FROM pg_temp.counts('gt_multi');

--
-- fairness: round robin over groups; a group with a backlog does not starve
-- the others.  F has 5 messages, sent first, G 2, H 1: one receive and ack
-- at a time takes each group's head in turn
--
SELECT courier.create_queue('gt_fair', fifo => true);
INSERT INTO sent
SELECT l, courier.send('gt_fair', l, group_id => left(l, 1))
  FROM unnest(ARRAY['F1', 'F2', 'F3', 'F4', 'F5', 'G1', 'G2', 'H1']) AS l;
SELECT pg_temp.drain('gt_fair') AS delivered;
SELECT * FROM pg_temp.counts('gt_fair');

--
-- expired leases, change_visibility, release: the same message comes back
-- first; a release with a delay keeps its group busy
--
SELECT courier.create_queue('gt_exp', fifo => true);
INSERT INTO sent
SELECT l, courier.send('gt_exp', l, group_id => left(l, 1))
  FROM unnest(ARRAY['E1', 'E2', 'E3']) AS l;
-- a lease that ends at once: E1 again, not E2
SELECT * FROM pg_temp.recv('e1', 'gt_exp', 1, '0');
SELECT * FROM pg_temp.recv('e2', 'gt_exp', 1, '0');
-- also when several are asked for: E1 first, then the rest of the group
SELECT * FROM pg_temp.recv('e3', 'gt_exp', 10, '0');
-- E2 and E3 were in flight with E1 and their leases ended with it: E1 comes first again
SELECT * FROM pg_temp.recv('e4', 'gt_exp', 1);
SELECT * FROM pg_temp.recv('e5', 'gt_exp', 10);
SELECT * FROM pg_temp.counts('gt_exp');
-- a lease shortened to 0 ends now: E1 again
SELECT courier.change_visibility('gt_exp', pg_temp.rcpt('e4', 'E1'), '0');
SELECT * FROM pg_temp.recv('e6', 'gt_exp');
-- released without delay: E1 again
SELECT courier.release('gt_exp', pg_temp.rcpt('e6', 'E1'));
SELECT * FROM pg_temp.recv('e7', 'gt_exp');
-- released with a delay: the group stays busy, E2 is not delivered
SELECT courier.release('gt_exp', pg_temp.rcpt('e7', 'E1'), '10 minutes');
SELECT * FROM pg_temp.recv('e8', 'gt_exp', 10);
SELECT * FROM pg_temp.counts('gt_exp');
-- other groups are delivered meanwhile
INSERT INTO sent VALUES ('D1', courier.send('gt_exp', 'D1'::text, group_id => 'D'));
SELECT * FROM pg_temp.recv('e9', 'gt_exp', 10);
SELECT courier.ack('gt_exp', pg_temp.rcpt('e9', 'D1'));
-- an expired lease that nobody received again can still be acked: then the next one comes
SELECT courier.create_queue('gt_exp2', fifo => true);
INSERT INTO sent
SELECT l, courier.send('gt_exp2', l, group_id => left(l, 1))
  FROM unnest(ARRAY['X1', 'X2']) AS l;
SELECT * FROM pg_temp.recv('x1', 'gt_exp2', 1, '0');
SELECT courier.ack('gt_exp2', pg_temp.rcpt('x1', 'X1'));
SELECT * FROM pg_temp.recv('x2', 'gt_exp2', 10);
-- received again after its lease ended: the earlier receipt is stale and changes nothing
SELECT courier.change_visibility('gt_exp2', pg_temp.rcpt('x2', 'X2'), '0');
SELECT * FROM pg_temp.recv('x3', 'gt_exp2');
SELECT courier.ack('gt_exp2', pg_temp.rcpt('x2', 'X2'));
\echo :SQLSTATE
SELECT * FROM pg_temp.recv('x4', 'gt_exp2', 10);
SELECT courier.ack('gt_exp2', pg_temp.rcpt('x3', 'X2'));
SELECT * FROM pg_temp.counts('gt_exp2');

--
-- deduplication by dedup_id
--
SELECT courier.create_queue('gt_dedup', fifo => true);
SELECT courier.create_queue('gt_dedup2', fifo => true);
INSERT INTO sent VALUES ('k1', courier.send('gt_dedup', 'k1'::text, group_id => 'A', dedup_id => 'k1'));
-- the same dedup_id: accepted, the original's id, nothing enqueued; also with
-- another body, another body type or another group
SELECT courier.send('gt_dedup', 'k1'::text, group_id => 'A', dedup_id => 'k1') = id AS same,
       courier.send('gt_dedup', 'other'::text, group_id => 'A', dedup_id => 'k1') = id AS other_body,
       courier.send('gt_dedup', '{"b": 1}'::jsonb, group_id => 'A', dedup_id => 'k1') = id AS jsonb_body,
       courier.send('gt_dedup', '\x00'::bytea, group_id => 'B', dedup_id => 'k1') = id AS other_group
  FROM sent WHERE label = 'k1';
SELECT * FROM pg_temp.counts('gt_dedup');
-- another dedup_id, or none, enqueues (content_dedup is off: the same body twice is two messages)
INSERT INTO sent VALUES ('k2', courier.send('gt_dedup', 'k2'::text, group_id => 'A', dedup_id => 'k2'));
INSERT INTO sent VALUES ('n1', courier.send('gt_dedup', 'n1'::text, group_id => 'A'));
SELECT courier.send('gt_dedup', 'n1'::text, group_id => 'A') <> id AS new_message
  FROM sent WHERE label = 'n1';
-- the same dedup_id in another queue enqueues there
INSERT INTO sent VALUES ('k1 other queue', courier.send('gt_dedup2', 'k1'::text, group_id => 'A', dedup_id => 'k1'));
SELECT count(DISTINCT id) AS distinct_ids FROM sent WHERE label IN ('k1', 'k2', 'n1', 'k1 other queue');
SELECT queue_name, depth FROM courier.queues WHERE queue_name LIKE 'gt\_dedup%' ORDER BY queue_name;
-- after the original was received and acknowledged, its dedup_id still returns its id
SELECT * FROM pg_temp.recv('k a', 'gt_dedup');
SELECT courier.ack('gt_dedup', pg_temp.rcpt('k a', 'k1'));
SELECT courier.send('gt_dedup', 'k1'::text, group_id => 'A', dedup_id => 'k1') = id AS original_id
  FROM sent WHERE label = 'k1';
SELECT * FROM pg_temp.counts('gt_dedup');
-- a send that rolls back leaves no dedup_id behind
BEGIN;
SELECT courier.send('gt_dedup', 'r'::text, group_id => 'A', dedup_id => 'rolled back') IS NOT NULL AS sent;
ROLLBACK;
INSERT INTO sent VALUES ('r', courier.send('gt_dedup', 'r'::text, group_id => 'A', dedup_id => 'rolled back'));
SELECT courier.send('gt_dedup', 'r'::text, group_id => 'A', dedup_id => 'rolled back') = id AS original_id
  FROM sent WHERE label = 'r';
-- what is in the queue, in order
SELECT pg_temp.drain('gt_dedup') AS delivered;
SELECT * FROM pg_temp.counts('gt_dedup');

-- send_batch with dedup_ids: a duplicate inside the batch gets the earlier
-- element's id, the dedup_id of an earlier message that message's id
CREATE TEMP TABLE batch AS
SELECT courier.send_batch('gt_dedup2', ARRAY['b1', 'b2', 'b3', 'b4', 'b5'],
                          group_ids => ARRAY['A', 'A', 'B', 'B', 'A'],
                          dedup_ids => ARRAY['x1', 'x2', 'x1', 'k1', 'x2']) AS ids;
SELECT cardinality(ids) AS n, ids[1] = ids[3] AS third_is_first, ids[2] = ids[5] AS fifth_is_second,
       ids[1] <> ids[2] AS first_and_second_differ,
       ids[4] = (SELECT id FROM sent WHERE label = 'k1 other queue') AS fourth_is_earlier
  FROM batch;
SELECT * FROM pg_temp.counts('gt_dedup2');
SELECT pg_temp.drain('gt_dedup2') AS delivered;

-- the dedup window (5 minutes here): a dedup_id older than that no longer counts
INSERT INTO sent VALUES ('w1', courier.send('gt_dedup', 'w1'::text, group_id => 'A', dedup_id => 'w'));
SELECT pg_temp.age_dedup('gt_dedup', '10 minutes');
INSERT INTO sent VALUES ('w2', courier.send('gt_dedup', 'w2'::text, group_id => 'A', dedup_id => 'w'));
SELECT (SELECT id FROM sent WHERE label = 'w1') <> (SELECT id FROM sent WHERE label = 'w2')
       AS new_message;
-- from then on the new message is the original
SELECT courier.send('gt_dedup', 'w3'::text, group_id => 'A', dedup_id => 'w') = id AS second_id
  FROM sent WHERE label = 'w2';
-- a longer window keeps dedup ids longer
SELECT courier.alter_queue('gt_dedup', dedup_window => '1 hour');
INSERT INTO sent VALUES ('v1', courier.send('gt_dedup', 'v1'::text, group_id => 'A', dedup_id => 'v'));
SELECT pg_temp.age_dedup('gt_dedup', '10 minutes');
SELECT courier.send('gt_dedup', 'v2'::text, group_id => 'A', dedup_id => 'v') = id AS original_id
  FROM sent WHERE label = 'v1';
SELECT pg_temp.drain('gt_dedup') AS delivered;

--
-- content_dedup: without a dedup_id, the body's SHA-256 is the dedup id
--
INSERT INTO sent VALUES ('c1', courier.send('gt_cdedup', 'same'::text, group_id => 'A'));
SELECT courier.send('gt_cdedup', 'same'::text, group_id => 'A') = id AS same_body,
       courier.send('gt_cdedup', 'same'::text, group_id => 'B') = id AS other_group
  FROM sent WHERE label = 'c1';
INSERT INTO sent VALUES ('c2', courier.send('gt_cdedup', 'other'::text, group_id => 'A'));
INSERT INTO sent VALUES ('c3', courier.send('gt_cdedup', '12'::jsonb, group_id => 'A'));
INSERT INTO sent VALUES ('c4', courier.send('gt_cdedup', '\x0102'::bytea, group_id => 'A'));
SELECT courier.send('gt_cdedup', '12'::jsonb, group_id => 'A') = id AS same_jsonb
  FROM sent WHERE label = 'c3';
SELECT courier.send('gt_cdedup', '\x0102'::bytea, group_id => 'A') = id AS same_bytea
  FROM sent WHERE label = 'c4';
-- a dedup_id takes the place of the body's hash
INSERT INTO sent VALUES ('c5', courier.send('gt_cdedup', 'same'::text, group_id => 'A', dedup_id => 'k'));
SELECT courier.send('gt_cdedup', 'yet-another'::text, group_id => 'A', dedup_id => 'k') = id AS by_dedup_id
  FROM sent WHERE label = 'c5';
SELECT count(DISTINCT id) AS distinct_ids FROM sent WHERE label IN ('c1', 'c2', 'c3', 'c4', 'c5');
SELECT * FROM pg_temp.counts('gt_cdedup');
-- in a batch: the later of two equal bodies gets the earlier one's id
SELECT ids[1] = ids[3] AS third_is_first, ids[1] <> ids[2] AS first_and_second_differ,
       ids[4] = (SELECT id FROM sent WHERE label = 'c2') AS fourth_is_earlier
  FROM (SELECT courier.send_batch('gt_cdedup', ARRAY['p', 'q', 'p', 'other'],
                                  group_ids => ARRAY['E', 'F', 'G', 'H']) AS ids) AS b;
SELECT * FROM pg_temp.counts('gt_cdedup');
SELECT pg_temp.drain('gt_cdedup') AS delivered;
-- content_dedup turned off: equal bodies are separate messages again
SELECT courier.alter_queue('gt_cdedup', content_dedup => false);
SELECT courier.send('gt_cdedup', 'once more'::text, group_id => 'A')
       <> courier.send('gt_cdedup', 'once more'::text, group_id => 'A') AS two_messages;
SELECT * FROM pg_temp.counts('gt_cdedup');

--
-- a FIFO queue with a delay: every message waits for it
--
SELECT courier.create_queue('gt_delay', fifo => true, delay => '10 minutes');
SELECT courier.send('gt_delay', 'd1'::text, group_id => 'A') IS NOT NULL AS sent;
SELECT courier.send('gt_delay', 'd2'::text, group_id => 'A', delay => NULL) IS NOT NULL AS sent;
SELECT * FROM pg_temp.recv('delayed', 'gt_delay', 10);
SELECT depth, in_flight, delayed, groups FROM courier.queues WHERE queue_name = 'gt_delay';

--
-- purge and drop of a FIFO queue
--
SELECT courier.create_queue('gt_purge', fifo => true);
INSERT INTO sent
SELECT l, courier.send('gt_purge', l, group_id => left(l, 1), dedup_id => l)
  FROM unnest(ARRAY['U1', 'U2', 'V1']) AS l;
SELECT * FROM pg_temp.recv('u1', 'gt_purge');
SELECT * FROM pg_temp.counts('gt_purge');
SELECT courier.purge_queue('gt_purge');
SELECT * FROM pg_temp.counts('gt_purge');
-- group U, whose head was in flight, takes new messages at once
INSERT INTO sent VALUES ('U3', courier.send('gt_purge', 'U3'::text, group_id => 'U'));
SELECT * FROM pg_temp.recv('u2', 'gt_purge', 10);
SELECT * FROM pg_temp.counts('gt_purge');
SELECT courier.purge_queue('gt_purge');
-- drop: every table of the queue goes
SELECT queue_id AS purge_id FROM courier.queue WHERE queue_name = 'gt_purge' \gset
SELECT count(*) >= 4 AS has_tables FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'courier' AND c.relname ~ ('^[qlgd]_' || :purge_id || '($|_)');
SELECT courier.drop_queue('gt_purge');
SELECT count(*) AS tables_left FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'courier' AND c.relname ~ ('^[qlgd]_' || :purge_id || '($|_)');
-- the name can be used again, for a standard queue too
SELECT courier.create_queue('gt_purge');
SELECT queue_name, fifo, depth FROM courier.queues WHERE queue_name = 'gt_purge';
SELECT courier.drop_queue('gt_purge');
SELECT count(*) AS left_over FROM courier.queue WHERE queue_name = 'gt_purge';

--
-- maintain on a FIFO queue: old messages go, also a group's head in flight,
-- and the group goes on with its next message; old dedup ids go
--
SELECT courier.create_queue('gt_maint', fifo => true, retention => '1 hour');
SELECT queue_id AS maint_id FROM courier.queue WHERE queue_name = 'gt_maint' \gset
INSERT INTO sent
SELECT l, courier.send('gt_maint', l, group_id => left(l, 1))
  FROM unnest(ARRAY['M1', 'M2', 'N1', 'N2', 'O1']) AS l;
SELECT * FROM pg_temp.recv('mt1', 'gt_maint');
-- M1 (in flight) is 2 hours old: the oldest ready head is still a new one
UPDATE courier.q_:maint_id SET sent_at = sent_at - interval '2 hours'
 WHERE msg_id = (SELECT id FROM sent WHERE label = 'M1');
SELECT oldest_message_age >= interval '2 hours' AS oldest_2_hours,
       oldest_ready_group_age < interval '1 hour' AS oldest_ready_new
  FROM courier.queues WHERE queue_name = 'gt_maint';
-- N1, the head of a group not in flight, and O1 are 2 hours old too
UPDATE courier.q_:maint_id SET sent_at = sent_at - interval '2 hours'
 WHERE msg_id IN (SELECT id FROM sent WHERE label IN ('N1', 'O1'));
SELECT oldest_ready_group_age >= interval '2 hours' AS oldest_ready_2_hours
  FROM courier.queues WHERE queue_name = 'gt_maint';
SELECT * FROM pg_temp.counts('gt_maint');
SELECT courier.maintain();
SELECT * FROM pg_temp.counts('gt_maint');
-- M1 is gone: its receipt is stale
SELECT courier.ack('gt_maint', pg_temp.rcpt('mt1', 'M1'));
\echo :SQLSTATE
SELECT * FROM pg_temp.recv('mt2', 'gt_maint', 10);
SELECT pg_temp.ack_call('gt_maint', 'mt2');
SELECT * FROM pg_temp.counts('gt_maint');
-- dedup ids older than the window are removed by maintain (and not counted:
-- maintain counts messages); newer ones stay and still count
SELECT pg_temp.age_dedup('gt_dedup', '2 days');
INSERT INTO sent VALUES ('fresh', courier.send('gt_dedup', 'fresh'::text, group_id => 'A', dedup_id => 'fresh'));
SELECT courier.maintain();
SELECT pg_temp.dedup_rows('gt_dedup');
SELECT courier.send('gt_dedup', 'fresh'::text, group_id => 'A', dedup_id => 'fresh') = id AS still_deduplicated
  FROM sent WHERE label = 'fresh';

--
-- transactions: a send or a receive that rolls back leaves no trace in the groups
--
SELECT courier.create_queue('gt_tx', fifo => true);
BEGIN;
SELECT courier.send('gt_tx', 't0'::text, group_id => 'T') IS NOT NULL AS sent;
ROLLBACK;
SELECT * FROM pg_temp.counts('gt_tx');
INSERT INTO sent
SELECT l, courier.send('gt_tx', l, group_id => left(l, 1))
  FROM unnest(ARRAY['T1', 'T2']) AS l;
BEGIN;
SELECT * FROM pg_temp.recv('t rolled back', 'gt_tx');
ROLLBACK;
SELECT * FROM pg_temp.counts('gt_tx');
SELECT * FROM pg_temp.recv('t1', 'gt_tx');

--
-- the group line: an ack that empties a group removes the group's row at
-- once (ack and ack_batch); a group that keeps messages keeps its row
--
SELECT courier.create_queue('gt_line', fifo => true);
CREATE FUNCTION pg_temp.line(qname text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	r text;
BEGIN
	EXECUTE format('SELECT string_agg(group_id, '','' ORDER BY group_id) FROM courier.g_%s
					 WHERE group_id <> ''''',
				   (SELECT q.queue_id FROM courier.queue q WHERE q.queue_name = qname)) INTO r;
	RETURN coalesce(r, '-');
END $$;
INSERT INTO sent
SELECT l, courier.send('gt_line', l, group_id => substr(l, 2, 1))
  FROM unnest(ARRAY['LP1', 'LP2', 'LQ1', 'LR1', 'LR2']) AS l;
SELECT pg_temp.line('gt_line');
SELECT * FROM pg_temp.recv('line 1', 'gt_line', 10);
SELECT courier.ack('gt_line', pg_temp.rcpt('line 1', 'LP1'));
SELECT courier.ack('gt_line', pg_temp.rcpt('line 1', 'LQ1'));
SELECT pg_temp.line('gt_line');
SELECT courier.ack_batch('gt_line', ARRAY[pg_temp.rcpt('line 1', 'LP2'),
                                          pg_temp.rcpt('line 1', 'LR1'),
                                          pg_temp.rcpt('line 1', 'LR2')]);
SELECT pg_temp.line('gt_line');

--
-- clean up
--
SELECT courier.drop_queue(q)
  FROM unnest(ARRAY['gt_fifo', 'gt_cdedup', 'gt_std', 'gt_std_defaults', 'gt_win_min',
                    'gt_win_max', 'gt_src_fifo', 'gt_src_std', 'gt_dlq_fifo', 'gt_dlq_std',
                    'gt_long', 'gt_multi', 'gt_fair', 'gt_exp', 'gt_exp2', 'gt_dedup',
                    'gt_dedup2', 'gt_delay', 'gt_maint', 'gt_tx', 'gt_line']) AS q;
SELECT count(*) AS left_over FROM courier.queue WHERE queue_name LIKE 'gt\_%';
