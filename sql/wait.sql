--
-- wait: the wait argument of courier.receive (long polling) within one
-- session: its bounds and courier.max_wait, waits that end at once or at
-- their end, and the READ COMMITTED requirement.  Wake-ups by other sessions
-- (commit of a send, a release, statement_timeout, pg_cancel_backend, NOTIFY)
-- are proven in test/t/005_long_poll.pl.
--
\set VERBOSITY terse
\set SHOW_CONTEXT never

\i sql/include/sqlstate_of.sql

-- message counts of a queue
CREATE FUNCTION pg_temp.counts(queue text)
RETURNS TABLE (depth bigint, visible bigint, in_flight bigint, delayed bigint)
LANGUAGE sql AS $$
	SELECT depth, visible, in_flight, delayed FROM courier.queues WHERE queue_name = queue
$$;

SELECT courier.create_queue('wt_empty');
SELECT courier.create_queue('wt_main');

-- the documented default of the setting
SHOW courier.max_wait;

--
-- no wait, or a wait that ends: an empty set
--
SELECT count(*) AS received FROM courier.receive('wt_empty', wait => '0');
SELECT count(*) AS received FROM courier.receive('wt_empty', wait => NULL);
SELECT count(*) AS received FROM courier.receive('wt_empty', 10, NULL, '200 milliseconds');
-- a delayed message and a message in flight do not end a wait before they are due
SELECT courier.send('wt_empty', 'later'::text, delay => '10 minutes') IS NOT NULL AS sent;
SELECT courier.send('wt_empty', 'held'::text) IS NOT NULL AS sent;
SELECT body_text FROM courier.receive('wt_empty', 1, '1 hour');
SELECT count(*) AS received FROM courier.receive('wt_empty', 10, NULL, '300 milliseconds');
SELECT * FROM pg_temp.counts('wt_empty');
SELECT courier.purge_queue('wt_empty');

--
-- a wait on a queue with visible messages returns them at once, in id order,
-- without waiting for max_messages: statement_timeout, half the wait, would
-- cancel a receive that waited until the end of its wait
--
SELECT courier.send_batch('wt_main', ARRAY['w1', 'w2']) IS NOT NULL AS sent;
SET statement_timeout = '10s';
SELECT body_text, receive_count FROM courier.receive('wt_main', 10, '0', '20 seconds');
-- those leases ended at once (visibility_timeout 0): w1 is visible again
SELECT body_text, receive_count FROM courier.receive('wt_main', 1, '1 hour', wait => '20 seconds');
RESET statement_timeout;
SELECT * FROM pg_temp.counts('wt_main');

--
-- bounds: 0 .. courier.max_wait, else 22023, and nothing is received
--
SELECT * FROM courier.receive('wt_main', 1, '1 hour', '20 seconds 1 microsecond');
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(format('SELECT * FROM courier.receive(%L, 1, %L, %L)',
                                         'wt_main', '1 hour', w)) AS sqlstate
  FROM (VALUES ('-1 microsecond', '-00:00:00.000001'),
               ('-1 second', '-1 second'),
               ('20 seconds 1 microsecond', '20.000001 seconds'),
               ('21 seconds', '21 seconds'),
               ('1 hour', '1 hour'),
               ('1 day', '1 day'),
               ('1 month', '1 mon')) AS v(label, w);
-- an invalid wait is refused before anything is leased (w1 still in flight, w2 visible)
SELECT * FROM pg_temp.counts('wt_main');
SELECT * FROM courier.receive('wt_empty', 1, NULL, '1 year');
\echo :SQLSTATE

-- courier.max_wait moves the upper bound
SET courier.max_wait = '1s';
SHOW courier.max_wait;
SELECT * FROM courier.receive('wt_main', 1, '1 hour', '2 seconds');
\echo :SQLSTATE
SELECT body_text, receive_count FROM courier.receive('wt_main', 1, '0', '1 second');
SET courier.max_wait = 0;
SELECT pg_temp.sqlstate_of($$SELECT * FROM courier.receive('wt_main', 1, '0', '1 millisecond')$$)
       AS one_millisecond;
SELECT body_text, receive_count FROM courier.receive('wt_main', 1, '0', '0');
SET courier.max_wait = '1min';
SET statement_timeout = '20s';
SELECT body_text, receive_count FROM courier.receive('wt_main', 1, '0', '1 minute');
RESET statement_timeout;
SELECT pg_temp.sqlstate_of($$SELECT * FROM courier.receive('wt_main', 1, '0', '61 seconds')$$)
       AS sixty_one_seconds;
RESET courier.max_wait;
SHOW courier.max_wait;

-- only a superuser may change courier.max_wait
CREATE ROLE regress_courier_waiter;
SELECT courier.grant('wt_main', 'regress_courier_waiter', 'receive');
SET ROLE regress_courier_waiter;
SET courier.max_wait = '1min';
\echo :SQLSTATE
SHOW courier.max_wait;
-- a role with 'receive' may wait
SELECT body_text, receive_count FROM courier.receive('wt_main', 1, '0', '1 second');
SELECT * FROM courier.receive('wt_main', 1, '0', '21 seconds');
\echo :SQLSTATE
RESET ROLE;

--
-- READ COMMITTED only: refused under REPEATABLE READ and SERIALIZABLE, with or
-- without wait (0A000)
--
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM courier.receive('wt_main', 1, NULL, '1 second');
\echo :SQLSTATE
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('wait', $$SELECT * FROM courier.receive('wt_main', 1, NULL, '1 second')$$),
    ('wait 0', $$SELECT * FROM courier.receive('wt_main', 1, NULL, '0')$$),
    ('no wait', $$SELECT * FROM courier.receive('wt_main')$$),
    ('empty queue, wait', $$SELECT * FROM courier.receive('wt_empty', 1, NULL, '1 second')$$)
  ) AS v(label, stmt);
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT * FROM courier.receive('wt_main', 1, NULL, '1 second');
\echo :SQLSTATE
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT * FROM courier.receive('wt_empty');
\echo :SQLSTATE
ROLLBACK;
-- the refused calls leased nothing
SELECT * FROM pg_temp.counts('wt_main');

--
-- in a READ COMMITTED transaction a wait works, and once it ends it holds no
-- lock for the rest of the transaction
--
BEGIN;
SELECT count(*) AS received FROM courier.receive('wt_empty', 1, NULL, '200 milliseconds');
SELECT count(*) AS advisory_locks FROM pg_locks
 WHERE pid = pg_backend_pid() AND locktype = 'advisory';
SELECT body_text, receive_count FROM courier.receive('wt_main', 1, '1 hour', '1 second');
COMMIT;
SELECT * FROM pg_temp.counts('wt_main');

--
-- NULL and unknown queues
--
SELECT * FROM courier.receive('wt_nope', 1, NULL, '1 second');
\echo :SQLSTATE
SELECT * FROM courier.receive(NULL, 1, NULL, '1 second');
\echo :SQLSTATE

--
-- clean up
--
SELECT courier.drop_queue(q) FROM unnest(ARRAY['wt_empty', 'wt_main']) AS q;
DROP OWNED BY regress_courier_waiter;
DROP ROLE regress_courier_waiter;
SELECT count(*) AS left_over FROM courier.queue WHERE queue_name LIKE 'wt\_%';
