--
-- queue: create_queue, alter_queue, drop_queue, purge_queue, the courier.queues
-- view and the queue name rules
--
\set VERBOSITY terse
\set SHOW_CONTEXT never

\i sql/include/sqlstate_of.sql

-- Queues that exist before this test (none when run on its own)
SELECT count(*) AS queues_before FROM courier.queue \gset

--
-- create_queue with the defaults
--
SELECT courier.create_queue('qt_defaults');
SELECT queue_name, visibility_timeout, delay, retention, max_message_size,
       depth, visible, in_flight, delayed, oldest_message_age IS NULL AS no_oldest,
       created_at BETWEEN now() - interval '1 hour' AND now() AS created_recently
  FROM courier.queues WHERE queue_name = 'qt_defaults';
-- notify is off by default; the channel is courier_<queue_id> all the same
SELECT v.notify, v.notify_channel = 'courier_' || q.queue_id AS channel_is_courier_queue_id
  FROM courier.queues v JOIN courier.queue q USING (queue_name)
 WHERE queue_name = 'qt_defaults';

-- with every setting given
SELECT courier.create_queue('qt_custom', visibility_timeout => '5 minutes', delay => '10 seconds',
                            retention => '2 days', max_message_size => 1024);
-- the smallest and the largest settings allowed
SELECT courier.create_queue('qt_min', visibility_timeout => '0', delay => '0',
                            retention => '1 minute', max_message_size => 1);
SELECT courier.create_queue('qt_max', visibility_timeout => '12 hours', delay => '15 minutes',
                            retention => '14 days', max_message_size => 1048576);
-- the same bounds written in other units
SELECT courier.create_queue('qt_units', visibility_timeout => '720 minutes',
                            delay => '900 seconds', retention => '336 hours');
-- notify on
SELECT courier.create_queue('qt_notify', notify => true);
SELECT queue_name, visibility_timeout, delay, retention, max_message_size, notify
  FROM courier.queues WHERE queue_name LIKE 'qt\_%' ORDER BY queue_name;
-- every queue has its own channel
SELECT count(DISTINCT notify_channel) = count(*) AS channels_distinct,
       bool_and(v.notify_channel = 'courier_' || q.queue_id) AS channels_named_by_id
  FROM courier.queues v JOIN courier.queue q USING (queue_name)
 WHERE queue_name LIKE 'qt\_%';

--
-- queue names: 1-80 characters of [A-Za-z0-9_-]
--
SELECT courier.create_queue('a');
SELECT courier.create_queue(repeat('b', 80));
SELECT courier.create_queue('Mixed-Case_09');
SELECT length(queue_name) AS len, queue_name
  FROM courier.queues WHERE queue_name IN ('a', repeat('b', 80), 'Mixed-Case_09')
 ORDER BY len, queue_name;

SELECT count(*) AS queues_before_names FROM courier.queue \gset
SELECT courier.create_queue('');
\echo :SQLSTATE
SELECT courier.create_queue(repeat('c', 81));
\echo :SQLSTATE
SELECT courier.create_queue('has space');
\echo :SQLSTATE
SELECT courier.create_queue('quote"d');
\echo :SQLSTATE
SELECT courier.create_queue('café');
\echo :SQLSTATE

SELECT label, pg_temp.sqlstate_of(format('SELECT courier.create_queue(%L)', name)) AS sqlstate
  FROM (VALUES ('empty', ''),
               ('81 characters', repeat('c', 81)),
               ('200 characters', repeat('c', 200)),
               ('space inside', 'has space'),
               ('leading space', ' lead'),
               ('trailing space', 'trail '),
               ('only a space', ' '),
               ('double quote', 'quote"d'),
               ('single quote', 'it''s'),
               ('dot', 'a.b'),
               ('slash', 'a/b'),
               ('semicolon', 'x;drop'),
               ('percent', 'a%b'),
               ('tab', E'a\tb'),
               ('trailing newline', E'abc\n'),
               ('unicode letter', 'café'),
               ('unicode only', 'ünïcödé'),
               ('emoji', 'q📨'),
               ('fullwidth digit', 'q１')) AS v(label, name);

-- none of the failed calls created a queue
SELECT count(*) - :queues_before_names AS queues_created FROM courier.queue;

--
-- duplicate names
--
SELECT courier.create_queue('qt_defaults');
\echo :SQLSTATE
SELECT courier.create_queue('qt_defaults', visibility_timeout => '1 minute');
\echo :SQLSTATE
-- the existing queue is untouched
SELECT queue_name, visibility_timeout FROM courier.queues WHERE queue_name = 'qt_defaults';

--
-- settings out of range
--
SELECT courier.create_queue('qt_bad', visibility_timeout => '12 hours 1 second');
\echo :SQLSTATE
SELECT courier.create_queue('qt_bad', max_message_size => 0);
\echo :SQLSTATE

SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('visibility_timeout -1 second', $$SELECT courier.create_queue('qt_bad', visibility_timeout => '-1 second')$$),
    ('visibility_timeout 12h 1s', $$SELECT courier.create_queue('qt_bad', visibility_timeout => '12 hours 1 second')$$),
    ('visibility_timeout 12h 1us', $$SELECT courier.create_queue('qt_bad', visibility_timeout => '12:00:00.000001')$$),
    ('visibility_timeout 1 day', $$SELECT courier.create_queue('qt_bad', visibility_timeout => '1 day')$$),
    ('visibility_timeout 1 month', $$SELECT courier.create_queue('qt_bad', visibility_timeout => '1 mon')$$),
    ('delay -1 second', $$SELECT courier.create_queue('qt_bad', delay => '-1 second')$$),
    ('delay 15min 1s', $$SELECT courier.create_queue('qt_bad', delay => '15 minutes 1 second')$$),
    ('delay 1 day', $$SELECT courier.create_queue('qt_bad', delay => '1 day')$$),
    ('retention 0', $$SELECT courier.create_queue('qt_bad', retention => '0')$$),
    ('retention 59 seconds', $$SELECT courier.create_queue('qt_bad', retention => '59 seconds')$$),
    ('retention -1 day', $$SELECT courier.create_queue('qt_bad', retention => '-1 day')$$),
    ('retention 14d 1s', $$SELECT courier.create_queue('qt_bad', retention => '14 days 1 second')$$),
    ('retention 15 days', $$SELECT courier.create_queue('qt_bad', retention => '15 days')$$),
    ('retention 1 month', $$SELECT courier.create_queue('qt_bad', retention => '1 mon')$$),
    ('max_message_size 0', $$SELECT courier.create_queue('qt_bad', max_message_size => 0)$$),
    ('max_message_size -1', $$SELECT courier.create_queue('qt_bad', max_message_size => -1)$$),
    ('max_message_size 1048577', $$SELECT courier.create_queue('qt_bad', max_message_size => 1048577)$$)
  ) AS v(label, stmt);

-- NULL for any argument
SELECT courier.create_queue(NULL);
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('queue_name', $$SELECT courier.create_queue(NULL)$$),
    ('visibility_timeout', $$SELECT courier.create_queue('qt_bad', visibility_timeout => NULL)$$),
    ('delay', $$SELECT courier.create_queue('qt_bad', delay => NULL)$$),
    ('retention', $$SELECT courier.create_queue('qt_bad', retention => NULL)$$),
    ('max_message_size', $$SELECT courier.create_queue('qt_bad', max_message_size => NULL)$$),
    ('notify', $$SELECT courier.create_queue('qt_bad', notify => NULL)$$)
  ) AS v(label, stmt);

SELECT count(*) AS qt_bad_exists FROM courier.queue WHERE queue_name = 'qt_bad';

--
-- alter_queue: NULL leaves a setting unchanged
--
SELECT courier.alter_queue('qt_custom', visibility_timeout => '1 minute');
SELECT visibility_timeout, delay, retention, max_message_size
  FROM courier.queues WHERE queue_name = 'qt_custom';
SELECT courier.alter_queue('qt_custom', delay => '0', retention => '14 days',
                           max_message_size => 1048576);
SELECT visibility_timeout, delay, retention, max_message_size
  FROM courier.queues WHERE queue_name = 'qt_custom';
SELECT courier.alter_queue('qt_custom');
SELECT visibility_timeout, delay, retention, max_message_size
  FROM courier.queues WHERE queue_name = 'qt_custom';

-- notify, alone or with other settings; NULL keeps it
SELECT courier.alter_queue('qt_custom', notify => true);
SELECT visibility_timeout, delay, retention, max_message_size, notify
  FROM courier.queues WHERE queue_name = 'qt_custom';
SELECT courier.alter_queue('qt_custom', visibility_timeout => '1 minute');
SELECT visibility_timeout, notify FROM courier.queues WHERE queue_name = 'qt_custom';
SELECT courier.alter_queue('qt_custom', notify => false, delay => '0');
SELECT visibility_timeout, delay, notify FROM courier.queues WHERE queue_name = 'qt_custom';
SELECT courier.alter_queue('qt_notify', notify => false);
SELECT courier.alter_queue('qt_notify', notify => NULL);
SELECT notify FROM courier.queues WHERE queue_name = 'qt_notify';

-- out of range: an error, and nothing changes
SELECT courier.alter_queue('qt_custom', retention => '30 seconds');
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('visibility_timeout -1 second', $$SELECT courier.alter_queue('qt_custom', visibility_timeout => '-1 second')$$),
    ('visibility_timeout 12h 1s', $$SELECT courier.alter_queue('qt_custom', visibility_timeout => '12 hours 1 second')$$),
    ('delay -1 second', $$SELECT courier.alter_queue('qt_custom', delay => '-1 second')$$),
    ('delay 16 minutes', $$SELECT courier.alter_queue('qt_custom', delay => '16 minutes')$$),
    ('retention 59 seconds', $$SELECT courier.alter_queue('qt_custom', retention => '59 seconds')$$),
    ('retention 15 days', $$SELECT courier.alter_queue('qt_custom', retention => '15 days')$$),
    ('max_message_size 0', $$SELECT courier.alter_queue('qt_custom', max_message_size => 0)$$),
    ('max_message_size 1048577', $$SELECT courier.alter_queue('qt_custom', max_message_size => 1048577)$$),
    ('one good, one bad', $$SELECT courier.alter_queue('qt_custom', visibility_timeout => '2 minutes', delay => '1 hour')$$),
    ('queue_name NULL', $$SELECT courier.alter_queue(NULL, visibility_timeout => '2 minutes')$$)
  ) AS v(label, stmt);
SELECT visibility_timeout, delay, retention, max_message_size
  FROM courier.queues WHERE queue_name = 'qt_custom';

-- a new max_message_size applies to the next send
SELECT courier.alter_queue('qt_custom', max_message_size => 4);
SELECT courier.send('qt_custom', 'abcde'::text);
\echo :SQLSTATE
SELECT courier.send('qt_custom', 'abcd'::text) IS NOT NULL AS sent;
SELECT depth FROM courier.queues WHERE queue_name = 'qt_custom';
-- so do a new default visibility_timeout and delay
SELECT courier.alter_queue('qt_custom', visibility_timeout => '0', delay => '10 minutes');
SELECT courier.send('qt_custom', 'late'::text) IS NOT NULL AS sent;
SELECT body_text, receive_count FROM courier.receive('qt_custom', 10);
SELECT body_text, receive_count FROM courier.receive('qt_custom', 10);
SELECT depth, visible, in_flight, delayed FROM courier.queues WHERE queue_name = 'qt_custom';
-- an alter that rolls back changes nothing
BEGIN;
SELECT courier.alter_queue('qt_custom', max_message_size => 1, delay => '0');
SELECT courier.send('qt_custom', 'ab'::text);
ROLLBACK;
SELECT visibility_timeout, delay, max_message_size FROM courier.queues WHERE queue_name = 'qt_custom';
SELECT courier.send('qt_custom', 'abcd'::text) IS NOT NULL AS sent;
SELECT depth, visible, delayed FROM courier.queues WHERE queue_name = 'qt_custom';

--
-- unknown queues
--
SELECT courier.alter_queue('qt_nope', delay => '1 second');
\echo :SQLSTATE
SELECT courier.drop_queue('qt_nope');
\echo :SQLSTATE
SELECT courier.purge_queue('qt_nope');
\echo :SQLSTATE
-- names are not folded or trimmed: a valid name that differs is unknown...
SELECT courier.purge_queue('QT_DEFAULTS');
\echo :SQLSTATE
-- ...and a name with a space is invalid
SELECT courier.purge_queue('qt_defaults ');
\echo :SQLSTATE

--
-- an invalid queue name is 22023 in every function that takes one, also for
-- a name that could never have been created
--
SELECT fn, pg_temp.sqlstate_of(format(stmt, bad)) AS sqlstate
  FROM (VALUES
    ('create_queue', $$SELECT courier.create_queue(%L)$$),
    ('alter_queue', $$SELECT courier.alter_queue(%L, delay => '1 second')$$),
    ('drop_queue', $$SELECT courier.drop_queue(%L)$$),
    ('purge_queue', $$SELECT courier.purge_queue(%L)$$),
    ('send jsonb', $$SELECT courier.send(%L, '{}'::jsonb)$$),
    ('send text', $$SELECT courier.send(%L, 'x'::text)$$),
    ('send bytea', $$SELECT courier.send(%L, '\x00'::bytea)$$),
    ('send_batch', $$SELECT courier.send_batch(%L, ARRAY['x']::text[])$$),
    ('receive', $$SELECT * FROM courier.receive(%L)$$),
    ('receive wait', $$SELECT * FROM courier.receive(%L, wait => '1 second')$$),
    ('ack', $$SELECT courier.ack(%L, '1.0000000000000001')$$),
    ('ack_batch', $$SELECT courier.ack_batch(%L, ARRAY['1.0000000000000001'])$$),
    ('change_visibility', $$SELECT courier.change_visibility(%L, '1.0000000000000001', '0')$$),
    ('release', $$SELECT courier.release(%L, '1.0000000000000001')$$),
    ('grant', $$SELECT courier.grant(%L, current_user::regrole, 'send')$$),
    ('revoke', $$SELECT courier.revoke(%L, current_user::regrole)$$),
    ('has_queue_privilege', $$SELECT courier.has_queue_privilege(%L, 'send')$$)
  ) AS f(fn, stmt),
  (VALUES ('qt_defaults '), (''), ('a.b'), (repeat('x', 81))) AS b(bad)
 GROUP BY fn, sqlstate ORDER BY fn, sqlstate;

--
-- the courier.queues view counts messages by state
--
SELECT courier.create_queue('qt_view');
SELECT courier.send('qt_view', m) IS NOT NULL AS sent
  FROM unnest(ARRAY['a', 'b', 'c', 'd']) AS m;
SELECT courier.send('qt_view', 'e'::text, delay => '10 minutes') IS NOT NULL AS sent;
SELECT depth, visible, in_flight, delayed, oldest_message_age >= interval '0' AS has_age
  FROM courier.queues WHERE queue_name = 'qt_view';

CREATE TEMP TABLE receipts (label text PRIMARY KEY, body text, receipt text);
-- leased for an hour: in flight
INSERT INTO receipts SELECT 'r1', body_text, receipt
  FROM courier.receive('qt_view', 1, '1 hour') RETURNING label, body;
INSERT INTO receipts SELECT 'r2', body_text, receipt
  FROM courier.receive('qt_view', 1, '1 hour') RETURNING label, body;
-- released with a delay: delayed
SELECT courier.release('qt_view', receipt, '10 minutes') FROM receipts WHERE label = 'r2';
-- a lease that has already expired: visible again
INSERT INTO receipts SELECT 'r3', body_text, receipt
  FROM courier.receive('qt_view', 1, '0') RETURNING label, body;
-- a, in flight; b, e delayed; c, d visible
SELECT depth, visible, in_flight, delayed FROM courier.queues WHERE queue_name = 'qt_view';
SELECT courier.ack('qt_view', receipt) FROM receipts WHERE label = 'r1';
SELECT depth, visible, in_flight, delayed FROM courier.queues WHERE queue_name = 'qt_view';

--
-- purge_queue removes every message, visible, in flight or delayed
--
SELECT courier.send('qt_defaults', m) IS NOT NULL AS sent
  FROM unnest(ARRAY['p1', 'p2', 'p3']) AS m;
SELECT courier.send('qt_defaults', 'p4'::text, delay => '10 minutes') IS NOT NULL AS sent;
SELECT count(*) AS received FROM courier.receive('qt_defaults', 1, '1 hour');
SELECT depth, visible, in_flight, delayed FROM courier.queues WHERE queue_name = 'qt_defaults';
SELECT courier.purge_queue('qt_defaults');
SELECT depth, visible, in_flight, delayed, oldest_message_age IS NULL AS no_oldest
  FROM courier.queues WHERE queue_name = 'qt_defaults';
SELECT count(*) AS received FROM courier.receive('qt_defaults', 10);
SELECT courier.purge_queue('qt_defaults');
-- the queue still works after a purge
SELECT courier.send('qt_defaults', 'after purge'::text) IS NOT NULL AS sent;
SELECT body_text, receive_count FROM courier.receive('qt_defaults', 10);
-- a purge rolled back removes nothing
BEGIN;
SELECT courier.purge_queue('qt_defaults');
ROLLBACK;
SELECT depth FROM courier.queues WHERE queue_name = 'qt_defaults';
SELECT courier.purge_queue(NULL);
\echo :SQLSTATE

--
-- drop_queue removes the queue, its tables and its messages
--
SELECT queue_id AS view_id FROM courier.queue WHERE queue_name = 'qt_view' \gset
SELECT to_regclass('courier.q_' || :view_id) IS NOT NULL AS q_exists,
       to_regclass('courier.l_' || :view_id) IS NOT NULL AS l_exists;
-- a drop rolled back keeps everything
BEGIN;
SELECT courier.drop_queue('qt_view');
ROLLBACK;
SELECT depth FROM courier.queues WHERE queue_name = 'qt_view';
SELECT body_text FROM courier.receive('qt_view', 10, '0') ORDER BY msg_id;
SELECT courier.drop_queue('qt_view');
SELECT count(*) AS in_view FROM courier.queues WHERE queue_name = 'qt_view';
SELECT count(*) AS in_catalog FROM courier.queue WHERE queue_name = 'qt_view';
SELECT to_regclass('courier.q_' || :view_id) IS NOT NULL AS q_exists,
       to_regclass('courier.l_' || :view_id) IS NOT NULL AS l_exists;
-- a dropped queue is unknown everywhere
SELECT courier.drop_queue('qt_view');
\echo :SQLSTATE
SELECT courier.send('qt_view', 'x'::text);
\echo :SQLSTATE
SELECT * FROM courier.receive('qt_view');
\echo :SQLSTATE
-- the name can be used again, for a new and empty queue
SELECT courier.create_queue('qt_view', visibility_timeout => '1 minute');
SELECT queue_name, visibility_timeout, depth FROM courier.queues WHERE queue_name = 'qt_view';
SELECT count(*) AS received FROM courier.receive('qt_view', 10);
SELECT courier.drop_queue(NULL);
\echo :SQLSTATE

-- a queue created in a transaction that rolls back does not exist
BEGIN;
SELECT courier.create_queue('qt_rolled_back');
ROLLBACK;
SELECT count(*) AS in_catalog FROM courier.queue WHERE queue_name = 'qt_rolled_back';
SELECT courier.send('qt_rolled_back', 'x'::text);
\echo :SQLSTATE

--
-- clean up
--
SELECT courier.drop_queue(queue_name)
  FROM courier.queue
 WHERE queue_name LIKE 'qt\_%' OR queue_name IN ('a', repeat('b', 80), 'Mixed-Case_09');
SELECT count(*) - :queues_before AS queues_left FROM courier.queue;
