--
-- redrive: redrive policies (dead_letter_queue, max_receives), the move to the
-- dead-letter queue and its dead_letter metadata, retry policies (fixed,
-- exponential, jitter) and release's retry delay, courier.redrive, drop_queue
-- with force, and every bad input of those
--
-- Leases are made to end at once with visibility_timeout => '0' (or
-- change_visibility(..., '0')); retry delays are read from the lease rows
-- (courier.l_<queue_id>, superuser only), never waited for.
--
\set VERBOSITY terse
\set SHOW_CONTEXT never

\i sql/include/sqlstate_of.sql

-- messages by label
CREATE TEMP TABLE sent (label text PRIMARY KEY, id bigint NOT NULL);
-- every delivery, by call and label
CREATE TEMP TABLE got (call text NOT NULL, ord bigint, label text, msg_id bigint, receipt text,
                       body jsonb, body_text text, body_bytes bytea, attributes jsonb,
                       sent_at timestamptz, receive_count integer, dead_letter jsonb);

-- receive (leases end at once unless vt says otherwise) into got; show what came, in order
CREATE FUNCTION pg_temp.recv(call text, queue text, n integer DEFAULT 10, vt interval DEFAULT '0')
RETURNS TABLE (label text, receive_count integer, dead_letter_from text)
LANGUAGE sql AS $$
	INSERT INTO got
	SELECT recv.call, r.ordinality, s.label, r.msg_id, r.receipt, r.body, r.body_text,
	       r.body_bytes, r.attributes, r.sent_at, r.receive_count, r.dead_letter
	  FROM courier.receive(queue, n, vt) WITH ORDINALITY AS r
	  LEFT JOIN sent s ON s.id = r.msg_id;
	SELECT g.label, g.receive_count, g.dead_letter->>'queue'
	  FROM got g WHERE g.call = recv.call ORDER BY g.ord;
$$;

-- the receipt of one delivery
CREATE FUNCTION pg_temp.rcpt(c text, l text) RETURNS text
LANGUAGE sql AS $$ SELECT receipt FROM got WHERE call = c AND label = l $$;

-- counts and policy of a queue, as courier.queues shows them
CREATE FUNCTION pg_temp.counts(queue text)
RETURNS TABLE (depth bigint, visible bigint, in_flight bigint, delayed bigint,
               dead_letter_queue text, max_receives integer, dead_letter_depth bigint)
LANGUAGE sql AS $$
	SELECT depth, visible, in_flight, delayed, dead_letter_queue, max_receives, dead_letter_depth
	  FROM courier.queues WHERE queue_name = queue
$$;

-- the lease row of a message
CREATE FUNCTION pg_temp.lease(queue text, l text)
RETURNS TABLE (token bigint, invisible_until timestamptz, receive_count integer,
               first_received_at timestamptz, last_received_at timestamptz, last_error text)
LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'SELECT token, invisible_until, receive_count, first_received_at, last_received_at,'
		'       last_error FROM courier.%I WHERE msg_id = $1',
		'l_' || (SELECT q.queue_id FROM courier.queue q WHERE q.queue_name = queue))
	  USING (SELECT s.id FROM sent s WHERE s.label = l);
END $$;

-- how long after its delivery a message becomes visible again: lease end
-- (visibility timeout) plus the retry delay that delivery earned
CREATE FUNCTION pg_temp.wait_after(queue text, l text) RETURNS interval
LANGUAGE sql AS $$ SELECT invisible_until - last_received_at FROM pg_temp.lease(queue, l) $$;

-- one delivery of the next message (lease ending at once): its number and the
-- wait after it; then the lease is ended now with change_visibility(..., '0'),
-- which skips that wait, so that the next call makes the next delivery
CREATE FUNCTION pg_temp.deliver(queue text)
RETURNS TABLE (delivery integer, wait_after interval)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	SELECT * INTO r FROM courier.receive(queue, 1, '0');
	IF r.msg_id IS NULL THEN
		RAISE EXCEPTION 'nothing received from %', queue;
	END IF;
	delivery := r.receive_count;
	EXECUTE format('SELECT invisible_until - last_received_at FROM courier.%I WHERE msg_id = $1',
				   'l_' || (SELECT q.queue_id FROM courier.queue q WHERE q.queue_name = queue))
	   INTO wait_after USING r.msg_id;
	PERFORM courier.change_visibility(queue, r.receipt, '0');
	RETURN NEXT;
END $$;

-- n deliveries in a row, as deliver does; the last one's number and wait
CREATE FUNCTION pg_temp.deliver_n(queue text, n integer)
RETURNS TABLE (delivery integer, wait_after interval)
LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..n LOOP
		SELECT d.delivery, d.wait_after INTO delivery, wait_after FROM pg_temp.deliver(queue) d;
	END LOOP;
	RETURN NEXT;
END $$;

-- release a held message; whether it became visible again exactly 'expected'
-- after the release (measured around the call, so no clock is compared)
CREATE FUNCTION pg_temp.release_after(queue text, c text, l text, expected interval,
                                      delay interval DEFAULT NULL, reason text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	before timestamptz := clock_timestamp();
	after timestamptz;
	until timestamptz;
BEGIN
	PERFORM courier.release(queue, pg_temp.rcpt(c, l), delay, reason);
	after := clock_timestamp();
	SELECT invisible_until INTO until FROM pg_temp.lease(queue, l);
	RETURN until BETWEEN before + expected AND after + expected;
END $$;

--
-- a redrive policy: after max_receives deliveries, the next receive moves the
-- message to the dead-letter queue
--
SELECT courier.create_queue('rd_dlq');
SELECT courier.create_queue('rd_src', dead_letter_queue => 'rd_dlq', max_receives => 3);
SELECT queue_id AS src_id FROM courier.queue WHERE queue_name = 'rd_src' \gset
SELECT queue_name, dead_letter_queue, max_receives, dead_letter_depth
  FROM courier.queues WHERE queue_name IN ('rd_src', 'rd_dlq') ORDER BY queue_name;

INSERT INTO sent VALUES ('j', courier.send('rd_src', '{"kind": "json", "n": [1, 2]}'::jsonb,
                                           '{"a": 1, "b": "x"}'::jsonb));
INSERT INTO sent VALUES ('t', courier.send('rd_src', 'text body'::text, '{"t": true}'::jsonb));
INSERT INTO sent VALUES ('b', courier.send('rd_src', '\x00ff10'::bytea));
INSERT INTO sent VALUES ('acked', courier.send('rd_src', 'acked in time'::text));
-- the messages as stored, to compare with what reaches the dead-letter queue
CREATE TEMP TABLE original AS
SELECT s.label, m.msg_id, m.sent_at, m.body, m.body_text, m.body_bytes, m.attributes
  FROM sent s JOIN courier.q_:src_id m ON m.msg_id = s.id;

-- delivery 1: j and t fail with a reason, acked is acknowledged
SELECT * FROM pg_temp.recv('d1', 'rd_src');
SELECT courier.release('rd_src', pg_temp.rcpt('d1', 'j'), reason => 'first failure');
SELECT courier.release('rd_src', pg_temp.rcpt('d1', 't'), reason => 'timeout talking to smtp');
SELECT courier.ack('rd_src', pg_temp.rcpt('d1', 'acked'));
-- delivery 2: t's lease just ends this time
SELECT * FROM pg_temp.recv('d2', 'rd_src');
SELECT courier.release('rd_src', pg_temp.rcpt('d2', 'j'), reason => 'second failure');
-- delivery 3 = max_receives: still delivered
SELECT * FROM pg_temp.recv('d3', 'rd_src');
SELECT courier.release('rd_src', pg_temp.rcpt('d3', 'j'), delay => '0',
                       reason => 'smtp 550: mailbox unavailable');
SELECT label, receive_count, last_error FROM sent, pg_temp.lease('rd_src', label)
 WHERE label IN ('j', 't', 'b') ORDER BY label;
CREATE TEMP TABLE before_move AS
SELECT label, l.* FROM sent, pg_temp.lease('rd_src', label) l WHERE label IN ('j', 't', 'b');
SELECT * FROM pg_temp.counts('rd_src');

-- delivery 4 would exceed max_receives: the receive moves them instead, and
-- still returns the other messages it finds
INSERT INTO sent VALUES ('fresh', courier.send('rd_src', 'fresh'::text));
SELECT * FROM pg_temp.recv('d4', 'rd_src');
SELECT * FROM pg_temp.counts('rd_src');
SELECT * FROM pg_temp.counts('rd_dlq');
SELECT courier.ack('rd_src', pg_temp.rcpt('d4', 'fresh'));
-- their leases went with them
SELECT count(*) AS leases_left FROM sent, pg_temp.lease('rd_src', label)
 WHERE label IN ('j', 't', 'b');

--
-- the dead-letter queue is an ordinary queue: receive, ack, courier.queues
--
SELECT * FROM pg_temp.recv('dlq 1', 'rd_dlq', 10, '1 hour');
-- same id, body, attributes and sent_at as sent to rd_src
SELECT g.label, g.msg_id = o.msg_id AS same_id, g.sent_at = o.sent_at AS same_sent_at,
       g.body, g.body_text, g.body_bytes, g.attributes,
       g.body IS NOT DISTINCT FROM o.body AND g.body_text IS NOT DISTINCT FROM o.body_text
         AND g.body_bytes IS NOT DISTINCT FROM o.body_bytes AS same_body,
       g.attributes IS NOT DISTINCT FROM o.attributes AS same_attributes
  FROM got g JOIN original o USING (label) WHERE g.call = 'dlq 1' ORDER BY g.msg_id;
-- where they came from, how often they were delivered and when, and the reason
-- the last release gave
SELECT g.label, g.dead_letter->>'queue' AS queue,
       (g.dead_letter->>'queue_id')::integer = :src_id AS queue_id_is_rd_src,
       g.dead_letter->'receive_count' AS receive_count,
       (g.dead_letter->>'first_received_at')::timestamptz = b.first_received_at AS first_received_ok,
       (g.dead_letter->>'last_received_at')::timestamptz = b.last_received_at AS last_received_ok,
       b.first_received_at < b.last_received_at AS first_before_last,
       g.dead_letter->'reason' AS reason,
       (g.dead_letter->>'dead_lettered_at')::timestamptz BETWEEN b.last_received_at AND now()
         AS dead_lettered_at_ok
  FROM got g JOIN before_move b USING (label) WHERE g.call = 'dlq 1' ORDER BY g.msg_id;
SELECT DISTINCT (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(g.dead_letter) k)
         AS dead_letter_keys
  FROM got g WHERE g.call = 'dlq 1';
SELECT * FROM pg_temp.counts('rd_dlq');
-- ack one, give one back for an hour, end the lease of one
SELECT courier.ack('rd_dlq', pg_temp.rcpt('dlq 1', 'b'));
SELECT courier.release('rd_dlq', pg_temp.rcpt('dlq 1', 't'), delay => '1 hour');
SELECT courier.change_visibility('rd_dlq', pg_temp.rcpt('dlq 1', 'j'), '0');
SELECT * FROM pg_temp.counts('rd_dlq');
SELECT depth, dead_letter_depth FROM courier.queues WHERE queue_name = 'rd_src';
-- j again: its second delivery from the dead-letter queue, still with its dead_letter
SELECT * FROM pg_temp.recv('dlq 2', 'rd_dlq');
-- a stale receipt of the dead-letter queue is refused as anywhere else
SELECT courier.ack('rd_dlq', pg_temp.rcpt('dlq 1', 'b'));
\echo :SQLSTATE

--
-- max_receives 1: delivered once, moved by the next receive that finds its
-- lease ended
--
SELECT courier.create_queue('rd_dlq2');
SELECT courier.create_queue('rd_once', dead_letter_queue => 'rd_dlq2', max_receives => 1);
INSERT INTO sent VALUES ('o1', courier.send('rd_once', 'o1'::text));
INSERT INTO sent VALUES ('o2', courier.send('rd_once', 'o2'::text));
INSERT INTO sent VALUES ('o3', courier.send('rd_once', 'o3'::text));
SELECT * FROM pg_temp.recv('once 1', 'rd_once', 10, '1 hour');
-- o1's lease ends now; o2 is released for an hour; o3 stays leased: only o1 moves
SELECT courier.change_visibility('rd_once', pg_temp.rcpt('once 1', 'o1'), '0');
SELECT courier.release('rd_once', pg_temp.rcpt('once 1', 'o2'), delay => '1 hour');
SELECT * FROM pg_temp.recv('once 2', 'rd_once');
SELECT * FROM pg_temp.counts('rd_once');
SELECT s.label, r.receive_count, r.dead_letter->'receive_count' AS dead_letter_receive_count,
       r.dead_letter->>'queue' AS queue, r.dead_letter->'reason' AS reason
  FROM courier.receive('rd_dlq2', 10, '0') r JOIN sent s ON s.id = r.msg_id
 ORDER BY r.msg_id;
-- an acknowledged message is never moved
SELECT courier.ack('rd_once', pg_temp.rcpt('once 1', 'o3'));
SELECT * FROM pg_temp.counts('rd_once');

--
-- max_receives => 0 removes the policy; deliveries go on counting
--
SELECT courier.create_queue('rd_off', dead_letter_queue => 'rd_dlq2', max_receives => 1);
INSERT INTO sent VALUES ('off1', courier.send('rd_off', 'off1'::text));
SELECT * FROM pg_temp.recv('off 1', 'rd_off');
SELECT courier.alter_queue('rd_off', max_receives => 0);
SELECT * FROM pg_temp.counts('rd_off');
SELECT * FROM pg_temp.recv('off 2', 'rd_off');
SELECT * FROM pg_temp.recv('off 3', 'rd_off');
SELECT dead_letter IS NULL AS no_dead_letter FROM got WHERE call = 'off 3';
-- removing a policy that is not there changes nothing
SELECT courier.alter_queue('rd_off', max_receives => 0);
SELECT * FROM pg_temp.counts('rd_off');
-- a new policy counts the deliveries made so far
SELECT courier.alter_queue('rd_off', dead_letter_queue => 'rd_dlq2', max_receives => 3);
SELECT * FROM pg_temp.counts('rd_off');
SELECT * FROM pg_temp.recv('off 4', 'rd_off');
SELECT * FROM pg_temp.counts('rd_off');
SELECT s.label, r.dead_letter->'receive_count' AS receive_count, r.dead_letter->>'queue' AS queue
  FROM courier.receive('rd_dlq2', 10, '0') r JOIN sent s ON s.id = r.msg_id
 ORDER BY r.msg_id;
-- other settings leave the policy alone
SELECT courier.alter_queue('rd_src', visibility_timeout => '1 minute', retry_delay => '1 second');
SELECT * FROM pg_temp.counts('rd_src');

--
-- retry policy, fixed: after every delivery whose lease ends, the message
-- waits retry_delay more
--
SELECT courier.create_queue('rd_fixed', retry_delay => '10 minutes');
SELECT retry_delay, retry_backoff, retry_max_delay, retry_jitter
  FROM courier.queues WHERE queue_name = 'rd_fixed';
INSERT INTO sent VALUES ('f1', courier.send('rd_fixed', 'f1'::text));
SELECT * FROM pg_temp.recv('fixed 1', 'rd_fixed');
SELECT pg_temp.wait_after('rd_fixed', 'f1');
-- its lease ended at once, yet it is not visible during the retry delay
SELECT * FROM pg_temp.recv('fixed 1 again', 'rd_fixed');
SELECT visible FROM courier.queues WHERE queue_name = 'rd_fixed';
-- the same wait after every delivery
SELECT courier.change_visibility('rd_fixed', pg_temp.rcpt('fixed 1', 'f1'), '0');
SELECT * FROM pg_temp.deliver('rd_fixed');
SELECT * FROM pg_temp.deliver('rd_fixed');
-- with a visibility timeout, the retry delay comes after the lease's end
SELECT * FROM pg_temp.recv('fixed 4', 'rd_fixed', 1, '1 minute');
SELECT pg_temp.wait_after('rd_fixed', 'f1');
-- release without a delay: the retry delay, from the release on
SELECT pg_temp.release_after('rd_fixed', 'fixed 4', 'f1', '10 minutes') AS released_for_10min;
SELECT token, receive_count, last_error FROM pg_temp.lease('rd_fixed', 'f1');
SELECT visible, in_flight, delayed FROM courier.queues WHERE queue_name = 'rd_fixed';
SELECT * FROM pg_temp.recv('fixed after release', 'rd_fixed');
-- release with a delay: that delay, not the retry delay
INSERT INTO sent VALUES ('f2', courier.send('rd_fixed', 'f2'::text));
SELECT * FROM pg_temp.recv('fixed f2', 'rd_fixed', 1, '1 hour');
SELECT pg_temp.release_after('rd_fixed', 'fixed f2', 'f2', '2 hours', delay => '2 hours')
  AS released_for_2h;
-- retry_delay back to 0: no wait after a delivery, release without delay is immediate
SELECT courier.alter_queue('rd_fixed', retry_delay => '0');
INSERT INTO sent VALUES ('f3', courier.send('rd_fixed', 'f3'::text));
SELECT * FROM pg_temp.recv('fixed f3', 'rd_fixed', 1, '1 hour');
SELECT pg_temp.release_after('rd_fixed', 'fixed f3', 'f3', '0') AS released_for_0;
SELECT * FROM pg_temp.deliver('rd_fixed');

--
-- retry policy, exponential: retry_delay * 2^(n-1) after delivery n, capped at
-- retry_max_delay
--
SELECT courier.create_queue('rd_exp', retry_delay => '1 minute', retry_backoff => 'exponential',
                            retry_max_delay => '5 minutes');
INSERT INTO sent VALUES ('e1', courier.send('rd_exp', 'e1'::text));
SELECT * FROM pg_temp.deliver('rd_exp');
SELECT * FROM pg_temp.deliver('rd_exp');
SELECT * FROM pg_temp.deliver('rd_exp');
SELECT * FROM pg_temp.deliver('rd_exp');
SELECT * FROM pg_temp.deliver('rd_exp');
-- up to 12 hours, however many deliveries
SELECT courier.alter_queue('rd_exp', retry_max_delay => '12 hours');
SELECT * FROM pg_temp.deliver('rd_exp');
SELECT * FROM pg_temp.deliver('rd_exp');
SELECT * FROM pg_temp.deliver_n('rd_exp', 53);
-- release without a delay: the retry delay of the delivery it releases
SELECT courier.purge_queue('rd_exp');
INSERT INTO sent VALUES ('e2', courier.send('rd_exp', 'e2'::text));
SELECT * FROM pg_temp.recv('exp e2 1', 'rd_exp', 1, '1 hour');
SELECT pg_temp.release_after('rd_exp', 'exp e2 1', 'e2', '0', delay => '0', reason => 'retry now')
  AS released_for_0;
SELECT * FROM pg_temp.recv('exp e2 2', 'rd_exp', 1, '1 hour');
SELECT pg_temp.release_after('rd_exp', 'exp e2 2', 'e2', '2 minutes', reason => 'back off')
  AS released_for_2min;
SELECT token, receive_count, last_error FROM pg_temp.lease('rd_exp', 'e2');
SELECT visible, in_flight, delayed FROM courier.queues WHERE queue_name = 'rd_exp';
SELECT * FROM pg_temp.recv('exp e2 3', 'rd_exp');

--
-- retry policy with jitter: a random 50-100% of the delay
--
SELECT courier.create_queue('rd_jit', retry_delay => '100 seconds', retry_jitter => true);
SELECT queue_id AS jit_id FROM courier.queue WHERE queue_name = 'rd_jit' \gset
SELECT cardinality(courier.send_batch('rd_jit', array_agg('j' || i))) AS sent
  FROM generate_series(1, 200) AS i;
CREATE TEMP TABLE jit AS SELECT receipt, receive_count FROM courier.receive('rd_jit', 200, '0');
SELECT count(*) AS received, max(receive_count) AS delivery FROM jit;
SELECT count(*) AS leases,
       bool_and(w BETWEEN '50 seconds' AND '100 seconds') AS all_50_to_100_pct,
       min(w) < '75 seconds' AND max(w) > '75 seconds' AS spread,
       count(DISTINCT w) > 100 AS random
  FROM (SELECT invisible_until - last_received_at AS w FROM courier.l_:jit_id) l;
-- exponential with jitter: 50-100% of 200 seconds after the second delivery
SELECT courier.alter_queue('rd_jit', retry_backoff => 'exponential');
SELECT count(*) AS lease_ended FROM jit, courier.change_visibility('rd_jit', receipt, '0');
DELETE FROM jit;
INSERT INTO jit SELECT receipt, receive_count FROM courier.receive('rd_jit', 200, '1 hour');
SELECT count(*) AS received, max(receive_count) AS delivery FROM jit;
SELECT count(*) AS leases,
       bool_and(w BETWEEN '1 hour 100 seconds' AND '1 hour 200 seconds') AS all_50_to_100_pct,
       min(w) < '1 hour 150 seconds' AND max(w) > '1 hour 150 seconds' AS spread
  FROM (SELECT invisible_until - last_received_at AS w FROM courier.l_:jit_id) l;
-- and release without a delay: jittered too
SELECT clock_timestamp() AS jit_before \gset
SELECT count(*) AS released FROM jit, courier.release('rd_jit', receipt);
SELECT clock_timestamp() AS jit_after \gset
SELECT count(*) AS released,
       bool_and(invisible_until BETWEEN :'jit_before'::timestamptz + '100 seconds'
                                    AND :'jit_after'::timestamptz + '200 seconds')
         AS all_50_to_100_pct,
       min(invisible_until) < :'jit_before'::timestamptz + '150 seconds'
         AND max(invisible_until) > :'jit_after'::timestamptz + '150 seconds' AS spread
  FROM courier.l_:jit_id WHERE token = 0;

--
-- redrive: back to the queues the messages came from
--
SELECT courier.create_queue('rr_dlq');
SELECT courier.create_queue('rr_a', dead_letter_queue => 'rr_dlq', max_receives => 1);
SELECT courier.create_queue('rr_b', dead_letter_queue => 'rr_dlq', max_receives => 1);
SELECT courier.create_queue('rr_other');
INSERT INTO sent SELECT 'a' || i, courier.send('rr_a', 'a' || i, jsonb_build_object('i', i))
  FROM generate_series(1, 4) AS i;
INSERT INTO sent SELECT 'b' || i, courier.send('rr_b', ('\x0' || i)::bytea)
  FROM generate_series(1, 2) AS i;
-- a message sent to the dead-letter queue itself is not a dead letter
INSERT INTO sent VALUES ('direct', courier.send('rr_dlq', '{"direct": true}'::jsonb));
-- dead-letter them out of id order: a3 and a4 first, then b1 and b2, then a1 and a2
SELECT * FROM pg_temp.recv('rr 1', 'rr_a', 10, '1 hour');
SELECT * FROM pg_temp.recv('rr 2', 'rr_b', 10, '0');
SELECT courier.change_visibility('rr_a', pg_temp.rcpt('rr 1', l), '0')
  FROM unnest(ARRAY['a3', 'a4']) AS l;
SELECT * FROM pg_temp.recv('rr 3', 'rr_a');
SELECT * FROM pg_temp.recv('rr 4', 'rr_b');
SELECT courier.change_visibility('rr_a', pg_temp.rcpt('rr 1', l), '0')
  FROM unnest(ARRAY['a1', 'a2']) AS l;
SELECT * FROM pg_temp.recv('rr 5', 'rr_a');
SELECT * FROM pg_temp.counts('rr_dlq');
SELECT * FROM pg_temp.counts('rr_a');
-- a newer message in rr_a
INSERT INTO sent VALUES ('a5', courier.send('rr_a', 'a5'::text, '{"i": 5}'::jsonb));

-- redrive returns how many it moved; the message sent there directly stays
SELECT courier.redrive('rr_dlq');
SELECT * FROM pg_temp.counts('rr_dlq');
SELECT * FROM pg_temp.counts('rr_a');
SELECT * FROM pg_temp.counts('rr_b');
-- they come back in their original order (they kept their ids), before the
-- newer a5, as first deliveries, without dead_letter
SELECT * FROM pg_temp.recv('rr a back', 'rr_a', 1, '1 hour');
SELECT * FROM pg_temp.recv('rr a back 2', 'rr_a', 1, '1 hour');
SELECT * FROM pg_temp.recv('rr a back 3', 'rr_a', 10, '1 hour');
SELECT * FROM pg_temp.recv('rr b back', 'rr_b', 10, '1 hour');
SELECT g.label, g.msg_id = o.msg_id AS same_id, g.sent_at = o.sent_at AS same_sent_at,
       g.body IS NOT DISTINCT FROM o.body AND g.body_text IS NOT DISTINCT FROM o.body_text
         AND g.body_bytes IS NOT DISTINCT FROM o.body_bytes AS same_body,
       g.attributes IS NOT DISTINCT FROM o.attributes AS same_attributes,
       g.dead_letter IS NULL AS no_dead_letter
  FROM got g JOIN got o ON o.label = g.label AND o.call IN ('rr 1', 'rr 2')
 WHERE g.call LIKE 'rr _ back%' ORDER BY g.msg_id;
-- nothing left to move: 0
SELECT courier.redrive('rr_dlq');

-- max_messages: the lowest ids first
SELECT count(*) AS leases_ended
  FROM got, courier.change_visibility(CASE WHEN label LIKE 'a%' THEN 'rr_a' ELSE 'rr_b' END,
                                      receipt, '0')
 WHERE call LIKE 'rr _ back%' AND label <> 'a5';
SELECT * FROM pg_temp.recv('rr 6', 'rr_a');
SELECT * FROM pg_temp.recv('rr 7', 'rr_b');
SELECT depth FROM courier.queues WHERE queue_name = 'rr_dlq';
SELECT courier.redrive('rr_dlq', max_messages => 2);
SELECT * FROM pg_temp.recv('rr 8', 'rr_a', 10, '1 hour');
SELECT depth FROM courier.queues WHERE queue_name = 'rr_dlq';
SELECT courier.redrive('rr_dlq', max_messages => 1000);
SELECT * FROM pg_temp.counts('rr_dlq');
SELECT * FROM pg_temp.recv('rr 9', 'rr_a', 10, '1 hour');

-- to_queue: all of them to one queue, dead letters or not
SELECT * FROM pg_temp.recv('rr 10', 'rr_b', 10, '0');
SELECT * FROM pg_temp.recv('rr 11', 'rr_b', 10, '0');
SELECT courier.send('rr_dlq', 'second direct'::text) IS NOT NULL AS sent;
SELECT * FROM pg_temp.counts('rr_dlq');
SELECT courier.redrive('rr_dlq', to_queue => 'rr_other');
SELECT * FROM pg_temp.counts('rr_dlq');
SELECT s.label, r.body_text, r.receive_count, r.dead_letter IS NULL AS no_dead_letter
  FROM courier.receive('rr_other', 10, '1 hour') r LEFT JOIN sent s ON s.id = r.msg_id
 ORDER BY r.msg_id;

-- a message leased from the dead-letter queue when redrive starts stays; one
-- whose lease there has ended is moved
SELECT courier.purge_queue('rr_a');
DELETE FROM sent WHERE label LIKE 'a_';
INSERT INTO sent SELECT 'a' || i, courier.send('rr_a', 'a' || i) FROM generate_series(1, 3) AS i;
SELECT * FROM pg_temp.recv('rr 12', 'rr_a');
SELECT * FROM pg_temp.recv('rr 13', 'rr_a');
SELECT * FROM pg_temp.recv('rr held', 'rr_dlq', 1, '1 hour');
SELECT * FROM pg_temp.recv('rr ended', 'rr_dlq', 1, '0');
SELECT courier.redrive('rr_dlq');
SELECT * FROM pg_temp.counts('rr_dlq');
SELECT courier.ack('rr_dlq', pg_temp.rcpt('rr held', 'a1'));
SELECT * FROM pg_temp.recv('rr 14', 'rr_a', 10, '1 hour');

-- messages whose queue was dropped stay (rr_dlq is still rr_a's dead-letter queue)
SELECT courier.purge_queue('rr_a');
INSERT INTO sent VALUES ('from a', courier.send('rr_a', 'from a'::text));
INSERT INTO sent VALUES ('from b', courier.send('rr_b', 'from b'::text));
SELECT * FROM pg_temp.recv('rr 15', 'rr_a');
SELECT * FROM pg_temp.recv('rr 16', 'rr_b');
SELECT * FROM pg_temp.recv('rr 17', 'rr_a');
SELECT * FROM pg_temp.recv('rr 18', 'rr_b');
SELECT courier.drop_queue('rr_b');
SELECT * FROM pg_temp.counts('rr_dlq');
SELECT courier.redrive('rr_dlq');
SELECT * FROM pg_temp.recv('rr 19', 'rr_dlq', 10, '0');
SELECT * FROM pg_temp.recv('rr 20', 'rr_a', 10, '1 hour');
-- with to_queue they can go somewhere
SELECT courier.redrive('rr_dlq', to_queue => 'rr_a');
SELECT * FROM pg_temp.recv('rr 21', 'rr_a', 10, '1 hour');

--
-- who may redrive: admin on the dead-letter queue, and send on to_queue
--
CREATE ROLE regress_rd_ops;
CREATE ROLE regress_rd_reader;
SELECT courier.grant('rr_dlq', 'regress_rd_ops', 'admin');
SELECT courier.grant('rr_dlq', 'regress_rd_reader', 'receive');
SELECT courier.purge_queue('rr_a');
INSERT INTO sent SELECT 'p' || i, courier.send('rr_a', 'p' || i) FROM generate_series(1, 2) AS i;
SELECT * FROM pg_temp.recv('rr 22', 'rr_a');
SELECT * FROM pg_temp.recv('rr 23', 'rr_a');
SET ROLE regress_rd_reader;
SELECT courier.redrive('rr_dlq');
\echo :SQLSTATE
SET ROLE regress_rd_ops;
-- back to the queue of origin needs nothing on that queue
SELECT courier.redrive('rr_dlq', max_messages => 1);
SELECT courier.redrive('rr_dlq', to_queue => 'rr_other');
\echo :SQLSTATE
RESET ROLE;
SELECT courier.grant('rr_other', 'regress_rd_ops', 'send');
SET ROLE regress_rd_ops;
SELECT courier.redrive('rr_dlq', to_queue => 'rr_other');
RESET ROLE;
SELECT queue_name, depth FROM courier.queues WHERE queue_name IN ('rr_a', 'rr_other', 'rr_dlq')
 ORDER BY queue_name;

--
-- bad input
--
SELECT count(*) AS queues_before_bad FROM courier.queue \gset
SELECT courier.create_queue('rd_bad', dead_letter_queue => 'rd_nope', max_receives => 3);
\echo :SQLSTATE
SELECT courier.create_queue('rd_bad', max_receives => 3);
\echo :SQLSTATE
SELECT courier.create_queue('rd_bad', dead_letter_queue => 'rd_bad', max_receives => 3);
\echo :SQLSTATE
SELECT courier.create_queue('rd_bad', retry_backoff => 'linear');
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('unknown dead-letter queue', $$SELECT courier.create_queue('rd_bad', dead_letter_queue => 'rd_nope', max_receives => 3)$$),
    ('bad dead-letter queue name', $$SELECT courier.create_queue('rd_bad', dead_letter_queue => 'no such', max_receives => 3)$$),
    ('max_receives 0', $$SELECT courier.create_queue('rd_bad', dead_letter_queue => 'rd_dlq', max_receives => 0)$$),
    ('max_receives 0 alone', $$SELECT courier.create_queue('rd_bad', max_receives => 0)$$),
    ('max_receives -1', $$SELECT courier.create_queue('rd_bad', dead_letter_queue => 'rd_dlq', max_receives => -1)$$),
    ('max_receives 1001', $$SELECT courier.create_queue('rd_bad', dead_letter_queue => 'rd_dlq', max_receives => 1001)$$),
    ('dead_letter_queue alone', $$SELECT courier.create_queue('rd_bad', dead_letter_queue => 'rd_dlq')$$),
    ('max_receives alone', $$SELECT courier.create_queue('rd_bad', max_receives => 3)$$),
    ('its own dead-letter queue', $$SELECT courier.create_queue('rd_bad', dead_letter_queue => 'rd_bad', max_receives => 3)$$),
    ('retry_delay -1 second', $$SELECT courier.create_queue('rd_bad', retry_delay => '-1 second')$$),
    ('retry_delay 12h 1s', $$SELECT courier.create_queue('rd_bad', retry_delay => '12 hours 1 second')$$),
    ('retry_delay 1 day', $$SELECT courier.create_queue('rd_bad', retry_delay => '1 day')$$),
    ('retry_delay 1 month', $$SELECT courier.create_queue('rd_bad', retry_delay => '1 mon')$$),
    ('retry_max_delay -1 second', $$SELECT courier.create_queue('rd_bad', retry_max_delay => '-1 second')$$),
    ('retry_max_delay 12h 1s', $$SELECT courier.create_queue('rd_bad', retry_max_delay => '12 hours 1 second')$$),
    ('retry_backoff linear', $$SELECT courier.create_queue('rd_bad', retry_backoff => 'linear')$$),
    ('retry_backoff Fixed', $$SELECT courier.create_queue('rd_bad', retry_backoff => 'Fixed')$$),
    ('retry_backoff empty', $$SELECT courier.create_queue('rd_bad', retry_backoff => '')$$),
    ('retry_delay NULL', $$SELECT courier.create_queue('rd_bad', retry_delay => NULL)$$),
    ('retry_backoff NULL', $$SELECT courier.create_queue('rd_bad', retry_backoff => NULL)$$),
    ('retry_max_delay NULL', $$SELECT courier.create_queue('rd_bad', retry_max_delay => NULL)$$),
    ('retry_jitter NULL', $$SELECT courier.create_queue('rd_bad', retry_jitter => NULL)$$),
    ('durable_leases NULL', $$SELECT courier.create_queue('rd_bad', durable_leases => NULL)$$)
  ) AS v(label, stmt);
SELECT count(*) - :queues_before_bad AS queues_created FROM courier.queue;
-- the bounds themselves are allowed
SELECT courier.create_queue('rd_bounds', dead_letter_queue => 'rd_dlq', max_receives => 1000,
                            retry_delay => '12 hours', retry_backoff => 'exponential',
                            retry_max_delay => '12 hours', retry_jitter => true,
                            durable_leases => true);
SELECT dead_letter_queue, max_receives, retry_delay, retry_backoff, retry_max_delay,
       retry_jitter, durable_leases
  FROM courier.queues WHERE queue_name = 'rd_bounds';
SELECT courier.alter_queue('rd_bounds', dead_letter_queue => 'rd_dlq', max_receives => 1,
                           retry_delay => '0', retry_max_delay => '0', retry_backoff => 'fixed',
                           retry_jitter => false, durable_leases => false);
SELECT dead_letter_queue, max_receives, retry_delay, retry_backoff, retry_max_delay,
       retry_jitter, durable_leases
  FROM courier.queues WHERE queue_name = 'rd_bounds';
-- NULL leaves every one of them unchanged
SELECT courier.alter_queue('rd_bounds', dead_letter_queue => NULL, max_receives => NULL,
                           retry_delay => NULL, retry_max_delay => NULL, retry_backoff => NULL,
                           retry_jitter => NULL, durable_leases => NULL);
SELECT dead_letter_queue, max_receives, retry_delay, retry_backoff, retry_max_delay,
       retry_jitter, durable_leases
  FROM courier.queues WHERE queue_name = 'rd_bounds';

-- alter_queue: the same rules, and cycles; nothing changes on error
SELECT courier.create_queue('rd_c1');
SELECT courier.create_queue('rd_c2', dead_letter_queue => 'rd_c1', max_receives => 2);
SELECT courier.create_queue('rd_c3', dead_letter_queue => 'rd_c2', max_receives => 2);
SELECT courier.alter_queue('rd_c1', dead_letter_queue => 'rd_c2', max_receives => 2);
\echo :SQLSTATE
SELECT courier.alter_queue('rd_c1', dead_letter_queue => 'rd_c3', max_receives => 2);
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('unknown dead-letter queue', $$SELECT courier.alter_queue('rd_src', dead_letter_queue => 'rd_nope', max_receives => 3)$$),
    ('bad dead-letter queue name', $$SELECT courier.alter_queue('rd_src', dead_letter_queue => 'no such', max_receives => 3)$$),
    ('max_receives -1', $$SELECT courier.alter_queue('rd_src', dead_letter_queue => 'rd_dlq', max_receives => -1)$$),
    ('max_receives 1001', $$SELECT courier.alter_queue('rd_src', dead_letter_queue => 'rd_dlq', max_receives => 1001)$$),
    ('max_receives 0 with a queue', $$SELECT courier.alter_queue('rd_src', dead_letter_queue => 'rd_dlq', max_receives => 0)$$),
    ('dead_letter_queue alone', $$SELECT courier.alter_queue('rd_src', dead_letter_queue => 'rd_dlq2')$$),
    ('max_receives alone', $$SELECT courier.alter_queue('rd_src', max_receives => 5)$$),
    ('its own dead-letter queue', $$SELECT courier.alter_queue('rd_src', dead_letter_queue => 'rd_src', max_receives => 3)$$),
    ('cycle of two', $$SELECT courier.alter_queue('rd_c1', dead_letter_queue => 'rd_c2', max_receives => 2)$$),
    ('cycle of three', $$SELECT courier.alter_queue('rd_c1', dead_letter_queue => 'rd_c3', max_receives => 2)$$),
    ('cycle back from the DLQ', $$SELECT courier.alter_queue('rd_dlq', dead_letter_queue => 'rd_src', max_receives => 2)$$),
    ('retry_delay -1 second', $$SELECT courier.alter_queue('rd_src', retry_delay => '-1 second')$$),
    ('retry_delay 13 hours', $$SELECT courier.alter_queue('rd_src', retry_delay => '13 hours')$$),
    ('retry_max_delay -1 second', $$SELECT courier.alter_queue('rd_src', retry_max_delay => '-1 second')$$),
    ('retry_max_delay 13 hours', $$SELECT courier.alter_queue('rd_src', retry_max_delay => '13 hours')$$),
    ('retry_backoff linear', $$SELECT courier.alter_queue('rd_src', retry_backoff => 'linear')$$),
    ('one good, one bad', $$SELECT courier.alter_queue('rd_src', retry_delay => '5 seconds', dead_letter_queue => 'rd_dlq', max_receives => 1001)$$)
  ) AS v(label, stmt);
SELECT queue_name, dead_letter_queue, max_receives, retry_delay, retry_backoff, retry_max_delay
  FROM courier.queues WHERE queue_name IN ('rd_src', 'rd_c1', 'rd_c2', 'rd_c3', 'rd_dlq')
 ORDER BY queue_name;
-- a longer chain without a cycle is fine, and so is a dead-letter queue shared by two queues
SELECT courier.create_queue('rd_c4');
SELECT courier.alter_queue('rd_c1', dead_letter_queue => 'rd_c4', max_receives => 2);
SELECT courier.alter_queue('rd_once', dead_letter_queue => 'rd_c4', max_receives => 2);
SELECT queue_name, dead_letter_queue, max_receives FROM courier.queues
 WHERE queue_name LIKE 'rd\_c_' OR queue_name = 'rd_once' ORDER BY queue_name;

-- redrive
SELECT courier.redrive('rd_src');
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('unknown queue', $$SELECT courier.redrive('rd_nope')$$),
    ('unknown to_queue', $$SELECT courier.redrive('rd_dlq', to_queue => 'rd_nope')$$),
    ('not a dead-letter queue', $$SELECT courier.redrive('rd_src')$$),
    ('max_messages 0', $$SELECT courier.redrive('rd_dlq', max_messages => 0)$$),
    ('max_messages -1', $$SELECT courier.redrive('rd_dlq', max_messages => -1)$$),
    ('into itself', $$SELECT courier.redrive('rd_dlq', to_queue => 'rd_dlq')$$),
    ('NULL queue', $$SELECT courier.redrive(NULL)$$),
    ('bad queue name', $$SELECT courier.redrive('no such')$$),
    ('bad to_queue name', $$SELECT courier.redrive('rd_dlq', to_queue => 'no such')$$)
  ) AS v(label, stmt);
-- a queue that is nobody's dead-letter queue, with to_queue: allowed
SELECT courier.redrive('rd_src', to_queue => 'rd_c4');

-- release: a NULL delay and a NULL reason are allowed; too long a delay is not
INSERT INTO sent VALUES ('n1', courier.send('rd_c4', 'n1'::text));
SELECT * FROM pg_temp.recv('null release', 'rd_c4', 1, '1 hour');
SELECT courier.release('rd_c4', pg_temp.rcpt('null release', 'n1'), NULL, NULL);
SELECT * FROM pg_temp.recv('null release 2', 'rd_c4', 1, '1 hour');
SELECT label, pg_temp.sqlstate_of(format('SELECT courier.release(%L, %L, %L)', 'rd_c4',
                                         pg_temp.rcpt('null release 2', 'n1'), delay))
         AS sqlstate
  FROM (VALUES ('delay -1 second', '-1 second'), ('delay 12h 1s', '12 hours 1 second'))
       AS v(label, delay);

--
-- drop_queue: a dead-letter queue only with force, which removes the policies
--
SELECT courier.drop_queue('rd_dlq');
\echo :SQLSTATE
SELECT courier.drop_queue('rd_dlq', force => false);
\echo :SQLSTATE
-- NULL is not force
SELECT pg_temp.sqlstate_of($$SELECT courier.drop_queue('rd_dlq', force => NULL)$$) <> 'ok'
  AS null_force_does_not_drop;
SELECT queue_name, dead_letter_queue, max_receives FROM courier.queues
 WHERE dead_letter_queue = 'rd_dlq' ORDER BY queue_name;
SELECT courier.drop_queue('rd_dlq', force => true);
SELECT count(*) AS rd_dlq_exists FROM courier.queue WHERE queue_name = 'rd_dlq';
SELECT queue_name, dead_letter_queue, max_receives, dead_letter_depth FROM courier.queues
 WHERE queue_name IN ('rd_src', 'rd_bounds') ORDER BY queue_name;
-- the queue that lost its policy keeps delivering
SELECT courier.alter_queue('rd_src', retry_delay => '0');
INSERT INTO sent VALUES ('after drop', courier.send('rd_src', 'after drop'::text));
SELECT * FROM pg_temp.recv('after drop 1', 'rd_src');
SELECT * FROM pg_temp.recv('after drop 2', 'rd_src');
SELECT * FROM pg_temp.recv('after drop 3', 'rd_src');
SELECT * FROM pg_temp.recv('after drop 4', 'rd_src');
-- a queue in the middle of a chain
SELECT courier.drop_queue('rd_c2');
\echo :SQLSTATE
-- force on a queue nobody uses as a dead-letter queue is a plain drop
SELECT courier.drop_queue('rd_c3', force => true);
SELECT courier.drop_queue('rd_c2');
SELECT queue_name, dead_letter_queue FROM courier.queues WHERE queue_name LIKE 'rd\_c_'
 ORDER BY queue_name;

--
-- FIFO queues: dead letters keep their group; dead-lettering a group's head
-- lets the group's next message go in the same receive; redrive brings them
-- back into their groups
--
SELECT courier.create_queue('rd_fifo_dlq', fifo => true);
SELECT courier.create_queue('rd_fifo', fifo => true, dead_letter_queue => 'rd_fifo_dlq',
                            max_receives => 1);
SELECT courier.send('rd_fifo', body, group_id => grp) IS NOT NULL AS sent
  FROM (VALUES ('g1', 'G'), ('g2', 'G'), ('h1', 'H')) AS v(body, grp);
-- first delivery of G's head; its lease ends at once
SELECT body_text, group_id, receive_count FROM courier.receive('rd_fifo', 1, '0');
-- g1 has had its one delivery: moved, and g2 (then h1) delivered by the same call
SELECT body_text, group_id, receive_count FROM courier.receive('rd_fifo', 10, '0');
SELECT body_text, group_id, dead_letter->>'queue' AS from_queue
  FROM courier.receive('rd_fifo_dlq', 10, '0') ORDER BY msg_id;
-- g2 and h1 go too: the queue is empty, and so is its group line
SELECT count(*) FROM courier.receive('rd_fifo', 10, '0');
SELECT queue_name, depth, groups FROM courier.queues
 WHERE queue_name IN ('rd_fifo', 'rd_fifo_dlq') ORDER BY queue_name;
SELECT courier.redrive('rd_fifo_dlq');
SELECT queue_name, depth, groups FROM courier.queues
 WHERE queue_name IN ('rd_fifo', 'rd_fifo_dlq') ORDER BY queue_name;
-- back in their groups, in order, with their counts started over
SELECT body_text, group_id, receive_count FROM courier.receive('rd_fifo', 10);
-- no redrive between kinds, no policy between kinds
SELECT courier.create_queue('rd_std_dlq');
SELECT courier.redrive('rd_fifo_dlq', to_queue => 'rd_std_dlq');
\echo :SQLSTATE
SELECT courier.alter_queue('rd_fifo', dead_letter_queue => 'rd_std_dlq', max_receives => 2);
\echo :SQLSTATE

--
-- clean up
--
SELECT courier.drop_queue(queue_name, force => true)
  FROM courier.queue WHERE queue_name LIKE 'rd\_%' OR queue_name LIKE 'rr\_%'
 ORDER BY queue_id DESC;
SELECT count(*) AS left_over FROM courier.queue
 WHERE queue_name LIKE 'rd\_%' OR queue_name LIKE 'rr\_%';
DROP OWNED BY regress_rd_ops, regress_rd_reader;
DROP ROLE regress_rd_ops, regress_rd_reader;
