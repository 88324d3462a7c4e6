--
-- permissions: no EXECUTE for PUBLIC, courier.grant and courier.revoke per
-- privilege, permission denied paths, message tables closed to granted roles
--
\set VERBOSITY terse
\set SHOW_CONTEXT never

\i sql/include/sqlstate_of.sql

-- receipts, by label; written by several roles
CREATE TEMP TABLE rcpt (label text PRIMARY KEY, body text, receipt text);
GRANT ALL ON rcpt TO PUBLIC;

--
-- PUBLIC may execute nothing in schema courier
--
SELECT p.oid::regprocedure AS executable_by_public
  FROM pg_proc p
 WHERE p.pronamespace = 'courier'::regnamespace
   AND (p.proacl IS NULL
        OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a
                    WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))
 ORDER BY 1;

CREATE ROLE regress_courier_nobody;
CREATE ROLE regress_courier_sender;
CREATE ROLE regress_courier_receiver;
CREATE ROLE regress_courier_admin;
CREATE ROLE regress_courier_creator;

-- a new role may execute none of the functions either
SELECT count(*) > 10 AS has_functions,
       count(*) FILTER (WHERE has_function_privilege('regress_courier_nobody', p.oid, 'EXECUTE'))
         AS executable
  FROM pg_proc p WHERE p.pronamespace = 'courier'::regnamespace;

SELECT courier.create_queue('pt_a');
SELECT courier.create_queue('pt_b');
SELECT courier.send('pt_a', 'a1'::text) IS NOT NULL AS sent;
SELECT courier.send('pt_b', 'b1'::text) IS NOT NULL AS sent;
SELECT queue_id AS a_id FROM courier.queue WHERE queue_name = 'pt_a' \gset
-- a lease on pt_b held by the superuser, to try other roles' acks on
INSERT INTO rcpt SELECT 'b1', body_text, receipt FROM courier.receive('pt_b', 1, '1 hour')
RETURNING label, body;

--
-- a role without grants can do nothing
--
SET ROLE regress_courier_nobody;
SELECT courier.send('pt_a', 'x'::text);
\echo :SQLSTATE
SELECT * FROM courier.receive('pt_a');
\echo :SQLSTATE
SELECT courier.create_queue('pt_nobody');
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('create_queue', $$SELECT courier.create_queue('pt_nobody')$$),
    ('alter_queue', $$SELECT courier.alter_queue('pt_a', delay => '1 second')$$),
    ('purge_queue', $$SELECT courier.purge_queue('pt_a')$$),
    ('drop_queue', $$SELECT courier.drop_queue('pt_a')$$),
    ('send', $$SELECT courier.send('pt_a', 'x'::text)$$),
    ('send_batch', $$SELECT courier.send_batch('pt_a', ARRAY['x']::text[])$$),
    ('receive', $$SELECT * FROM courier.receive('pt_a')$$),
    ('ack', $$SELECT courier.ack('pt_b', (SELECT receipt FROM rcpt WHERE label = 'b1'))$$),
    ('ack_batch', $$SELECT courier.ack_batch('pt_b', ARRAY(SELECT receipt FROM rcpt WHERE label = 'b1'))$$),
    ('change_visibility', $$SELECT courier.change_visibility('pt_b', (SELECT receipt FROM rcpt WHERE label = 'b1'), '0')$$),
    ('release', $$SELECT courier.release('pt_b', (SELECT receipt FROM rcpt WHERE label = 'b1'))$$),
    ('grant', $$SELECT courier.grant('pt_a', 'regress_courier_nobody', 'admin')$$),
    ('revoke', $$SELECT courier.revoke('pt_a', 'regress_courier_sender')$$),
    ('maintain', $$SELECT courier.maintain()$$)
  ) AS v(label, stmt);
RESET ROLE;

--
-- grant: send, receive, admin
--
SELECT courier.grant('pt_a', 'regress_courier_sender', 'send');
SELECT courier.grant('pt_a', 'regress_courier_receiver', 'receive');
SELECT courier.grant('pt_a', 'regress_courier_admin', 'admin');
-- granting again is harmless
SELECT courier.grant('pt_a', 'regress_courier_sender', 'send');

-- the sender may send to pt_a, nothing else
SET ROLE regress_courier_sender;
SELECT courier.send('pt_a', 'from sender'::text) IS NOT NULL AS sent;
SELECT courier.send('pt_a', '{"from": "sender"}'::jsonb, '{"k": "v"}') IS NOT NULL AS sent;
SELECT cardinality(courier.send_batch('pt_a', ARRAY['s1', 's2']::text[])) AS n;
SELECT courier.send('pt_b', 'x'::text);
\echo :SQLSTATE
SELECT cardinality(courier.send_batch('pt_b', ARRAY['x']::text[]));
\echo :SQLSTATE
SELECT * FROM courier.receive('pt_a');
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('send to pt_b', $$SELECT courier.send('pt_b', 'x'::text)$$),
    ('send_batch to pt_b', $$SELECT courier.send_batch('pt_b', ARRAY['x']::bytea[])$$),
    ('receive', $$SELECT * FROM courier.receive('pt_a')$$),
    ('ack', $$SELECT courier.ack('pt_b', (SELECT receipt FROM rcpt WHERE label = 'b1'))$$),
    ('alter_queue', $$SELECT courier.alter_queue('pt_a', delay => '1 second')$$),
    ('purge_queue', $$SELECT courier.purge_queue('pt_a')$$),
    ('drop_queue', $$SELECT courier.drop_queue('pt_a')$$),
    ('grant', $$SELECT courier.grant('pt_a', 'regress_courier_sender', 'receive')$$),
    ('create_queue', $$SELECT courier.create_queue('pt_sender')$$)
  ) AS v(label, stmt);
RESET ROLE;
SELECT depth FROM courier.queues WHERE queue_name = 'pt_a';

-- the receiver may receive from pt_a and settle its leases, nothing else
SET ROLE regress_courier_receiver;
INSERT INTO rcpt SELECT 'ra1', coalesce(body_text, body::text), receipt FROM courier.receive('pt_a', 1, '1 hour')
RETURNING label, body;
INSERT INTO rcpt SELECT 'ra2', coalesce(body_text, body::text), receipt FROM courier.receive('pt_a', 1, '1 hour')
RETURNING label, body;
INSERT INTO rcpt SELECT 'ra3', coalesce(body_text, body::text), receipt FROM courier.receive('pt_a', 1, '1 hour')
RETURNING label, body;
SELECT courier.ack('pt_a', receipt) FROM rcpt WHERE label = 'ra1';
SELECT courier.ack_batch('pt_a', ARRAY(SELECT receipt FROM rcpt WHERE label = 'ra2'));
SELECT courier.change_visibility('pt_a', receipt, '2 hours') FROM rcpt WHERE label = 'ra3';
SELECT courier.release('pt_a', receipt) FROM rcpt WHERE label = 'ra3';
SELECT * FROM courier.receive('pt_b');
\echo :SQLSTATE
SELECT courier.ack('pt_b', receipt) FROM rcpt WHERE label = 'b1';
\echo :SQLSTATE
SELECT courier.send('pt_a', 'x'::text);
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('receive from pt_b', $$SELECT * FROM courier.receive('pt_b')$$),
    ('ack on pt_b', $$SELECT courier.ack('pt_b', (SELECT receipt FROM rcpt WHERE label = 'b1'))$$),
    ('ack_batch on pt_b', $$SELECT courier.ack_batch('pt_b', ARRAY(SELECT receipt FROM rcpt WHERE label = 'b1'))$$),
    ('change_visibility on pt_b', $$SELECT courier.change_visibility('pt_b', (SELECT receipt FROM rcpt WHERE label = 'b1'), '0')$$),
    ('release on pt_b', $$SELECT courier.release('pt_b', (SELECT receipt FROM rcpt WHERE label = 'b1'))$$),
    ('send', $$SELECT courier.send('pt_a', 'x'::text)$$),
    ('alter_queue', $$SELECT courier.alter_queue('pt_a', delay => '1 second')$$),
    ('purge_queue', $$SELECT courier.purge_queue('pt_a')$$),
    ('drop_queue', $$SELECT courier.drop_queue('pt_a')$$),
    ('grant', $$SELECT courier.grant('pt_a', 'regress_courier_receiver', 'send')$$)
  ) AS v(label, stmt);
RESET ROLE;
-- ra1 and ra2 acked; ra3 released; b1 still leased by the superuser
SELECT queue_name, depth, visible, in_flight FROM courier.queues
 WHERE queue_name IN ('pt_a', 'pt_b') ORDER BY queue_name;

-- with the function granted for another queue, the queue check still refuses
SELECT courier.grant('pt_b', 'regress_courier_receiver', 'send');
SELECT courier.grant('pt_b', 'regress_courier_sender', 'receive');
SET ROLE regress_courier_receiver;
SELECT courier.send('pt_a', 'x'::text);
\echo :SQLSTATE
SELECT courier.send('pt_b', 'to b'::text) IS NOT NULL AS sent;
SET ROLE regress_courier_sender;
SELECT * FROM courier.receive('pt_a');
\echo :SQLSTATE
SELECT body_text FROM courier.receive('pt_b', 10, '1 hour');
RESET ROLE;

--
-- has_queue_privilege answers for the current role, directly or through
-- membership; admin implies send and receive
--
SET ROLE regress_courier_sender;
SELECT current_user AS role, q AS queue,
       courier.has_queue_privilege(q, 'send') AS send,
       courier.has_queue_privilege(q, 'receive') AS receive,
       courier.has_queue_privilege(q, 'admin') AS admin
  FROM unnest(ARRAY['pt_a', 'pt_b']) AS q ORDER BY q;
SET ROLE regress_courier_receiver;
SELECT current_user AS role, q AS queue,
       courier.has_queue_privilege(q, 'send') AS send,
       courier.has_queue_privilege(q, 'receive') AS receive,
       courier.has_queue_privilege(q, 'admin') AS admin
  FROM unnest(ARRAY['pt_a', 'pt_b']) AS q ORDER BY q;
SET ROLE regress_courier_admin;
SELECT current_user AS role, q AS queue,
       courier.has_queue_privilege(q, 'send') AS send,
       courier.has_queue_privilege(q, 'receive') AS receive,
       courier.has_queue_privilege(q, 'admin') AS admin
  FROM unnest(ARRAY['pt_a', 'pt_b']) AS q ORDER BY q;
-- a role with no grant at all cannot even ask
SET ROLE regress_courier_nobody;
SELECT current_user AS role, q AS queue,
       courier.has_queue_privilege(q, 'send') AS send,
       courier.has_queue_privilege(q, 'receive') AS receive,
       courier.has_queue_privilege(q, 'admin') AS admin
  FROM unnest(ARRAY['pt_a', 'pt_b']) AS q ORDER BY q;
\echo :SQLSTATE
RESET ROLE;
SELECT pg_temp.sqlstate_of($$SELECT courier.has_queue_privilege('pt_a', 'sned')$$) AS bad_privilege,
       pg_temp.sqlstate_of($$SELECT courier.has_queue_privilege('pt_a', NULL)$$) AS null_privilege,
       pg_temp.sqlstate_of($$SELECT courier.has_queue_privilege(NULL, 'send')$$) AS null_queue,
       pg_temp.sqlstate_of($$SELECT courier.has_queue_privilege('pt_none', 'send')$$) AS unknown_queue;

--
-- admin on pt_a: everything on pt_a, nothing on pt_b
--
SET ROLE regress_courier_admin;
SELECT courier.send('pt_a', 'from admin'::text) IS NOT NULL AS sent;
SELECT count(*) AS received FROM courier.receive('pt_a', 10, '0');
SELECT courier.alter_queue('pt_a', visibility_timeout => '1 minute');
SELECT courier.grant('pt_a', 'regress_courier_nobody', 'send');
SET ROLE regress_courier_nobody;
SELECT courier.send('pt_a', 'from nobody'::text) IS NOT NULL AS sent;
SET ROLE regress_courier_admin;
SELECT courier.revoke('pt_a', 'regress_courier_nobody', 'send');
SET ROLE regress_courier_nobody;
SELECT courier.send('pt_a', 'x'::text);
\echo :SQLSTATE
SET ROLE regress_courier_admin;
SELECT courier.purge_queue('pt_a');
SELECT courier.alter_queue('pt_b', delay => '1 second');
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('alter_queue pt_b', $$SELECT courier.alter_queue('pt_b', delay => '1 second')$$),
    ('purge_queue pt_b', $$SELECT courier.purge_queue('pt_b')$$),
    ('drop_queue pt_b', $$SELECT courier.drop_queue('pt_b')$$),
    ('grant on pt_b', $$SELECT courier.grant('pt_b', 'regress_courier_admin', 'admin')$$),
    ('revoke on pt_b', $$SELECT courier.revoke('pt_b', 'regress_courier_sender')$$),
    ('send to pt_b', $$SELECT courier.send('pt_b', 'x'::text)$$),
    ('receive from pt_b', $$SELECT * FROM courier.receive('pt_b')$$),
    ('ack on pt_b', $$SELECT courier.ack('pt_b', (SELECT receipt FROM rcpt WHERE label = 'b1'))$$),
    ('create_queue', $$SELECT courier.create_queue('pt_admin')$$)
  ) AS v(label, stmt);
RESET ROLE;
SELECT queue_name, visibility_timeout, delay, depth FROM courier.queues
 WHERE queue_name IN ('pt_a', 'pt_b') ORDER BY queue_name;

--
-- message tables are not readable or writable by granted roles
--
SET ROLE regress_courier_admin;
SELECT pg_temp.sqlstate_of('SELECT count(*) FROM courier.q_' || :a_id) AS select_messages,
       pg_temp.sqlstate_of('SELECT count(*) FROM courier.l_' || :a_id) AS select_leases,
       pg_temp.sqlstate_of('INSERT INTO courier.q_' || :a_id || ' DEFAULT VALUES') AS insert_message,
       pg_temp.sqlstate_of('DELETE FROM courier.q_' || :a_id) AS delete_messages,
       pg_temp.sqlstate_of('DELETE FROM courier.l_' || :a_id) AS delete_leases,
       pg_temp.sqlstate_of('TRUNCATE courier.q_' || :a_id) AS truncate_messages;
SET ROLE regress_courier_receiver;
SELECT pg_temp.sqlstate_of('SELECT count(*) FROM courier.q_' || :a_id) AS select_messages,
       pg_temp.sqlstate_of('SELECT count(*) FROM courier.l_' || :a_id) AS select_leases;
SET ROLE regress_courier_sender;
SELECT pg_temp.sqlstate_of('SELECT count(*) FROM courier.q_' || :a_id) AS select_messages,
       pg_temp.sqlstate_of('INSERT INTO courier.q_' || :a_id || ' DEFAULT VALUES') AS insert_message;
RESET ROLE;
SELECT r.rolname, t.kind,
       has_table_privilege(r.oid, format('courier.%s_%s', t.kind, :a_id),
                           'SELECT, INSERT, UPDATE, DELETE, TRUNCATE') AS any_privilege
  FROM pg_roles r CROSS JOIN (VALUES ('q'), ('l')) AS t(kind)
 WHERE r.rolname LIKE 'regress\_courier\_%'
 ORDER BY r.rolname, t.kind;

--
-- create_queue needs EXECUTE on it; the creator gets admin on the new queue
--
SET ROLE regress_courier_creator;
SELECT courier.create_queue('pt_created');
\echo :SQLSTATE
RESET ROLE;
GRANT USAGE ON SCHEMA courier TO regress_courier_creator;
GRANT EXECUTE ON FUNCTION courier.create_queue(text, interval, interval, interval, integer, boolean,
                                               text, integer, interval, text, interval, boolean, boolean,
                                               boolean, boolean, interval, text)
  TO regress_courier_creator;
SET ROLE regress_courier_creator;
SELECT courier.create_queue('pt_created');
SELECT courier.send('pt_created', 'mine'::text) IS NOT NULL AS sent;
SELECT body_text, receive_count FROM courier.receive('pt_created', 10, '0');
SELECT courier.alter_queue('pt_created', delay => '1 second');
SELECT courier.purge_queue('pt_created');
SELECT courier.grant('pt_created', 'regress_courier_nobody', 'receive');
-- but nothing on other queues
SELECT courier.send('pt_a', 'x'::text);
\echo :SQLSTATE
SELECT courier.drop_queue('pt_created');
RESET ROLE;
SELECT count(*) AS pt_created_exists FROM courier.queue WHERE queue_name = 'pt_created';

--
-- revoke
--
-- one privilege
SELECT courier.revoke('pt_a', 'regress_courier_sender', 'send');
SET ROLE regress_courier_sender;
SELECT courier.send('pt_a', 'x'::text);
\echo :SQLSTATE
RESET ROLE;
-- one privilege of two: the other stays
SELECT courier.grant('pt_a', 'regress_courier_receiver', 'send');
SELECT courier.revoke('pt_a', 'regress_courier_receiver', 'send');
SELECT courier.send('pt_a', 'for receiver'::text) IS NOT NULL AS sent;
SET ROLE regress_courier_receiver;
SELECT courier.send('pt_a', 'x'::text);
\echo :SQLSTATE
SELECT count(*) AS received FROM courier.receive('pt_a', 10, '0');
RESET ROLE;
-- NULL revokes all privileges
SELECT courier.grant('pt_a', 'regress_courier_sender', 'send');
SELECT courier.grant('pt_a', 'regress_courier_sender', 'receive');
SELECT courier.revoke('pt_a', 'regress_courier_sender');
SET ROLE regress_courier_sender;
SELECT courier.send('pt_a', 'x'::text);
\echo :SQLSTATE
SELECT * FROM courier.receive('pt_a');
\echo :SQLSTATE
RESET ROLE;
-- admin revoked: no more administration
SELECT courier.revoke('pt_a', 'regress_courier_admin', 'admin');
SET ROLE regress_courier_admin;
SELECT courier.purge_queue('pt_a');
\echo :SQLSTATE
SELECT courier.send('pt_a', 'x'::text);
\echo :SQLSTATE
RESET ROLE;
-- revoking what was never granted is harmless
SELECT courier.revoke('pt_a', 'regress_courier_nobody', 'admin');

--
-- bad arguments to grant and revoke
--
SELECT courier.grant('pt_a', 'regress_courier_nobody', 'publish');
\echo :SQLSTATE
SELECT courier.grant('pt_nope', 'regress_courier_nobody', 'send');
\echo :SQLSTATE
SELECT courier.grant('pt_a', 'regress_courier_ghost', 'send');
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('grant unknown privilege', $$SELECT courier.grant('pt_a', 'regress_courier_nobody', 'publish')$$),
    ('grant empty privilege', $$SELECT courier.grant('pt_a', 'regress_courier_nobody', '')$$),
    ('grant upper-case privilege', $$SELECT courier.grant('pt_a', 'regress_courier_nobody', 'SEND')$$),
    ('grant unknown queue', $$SELECT courier.grant('pt_nope', 'regress_courier_nobody', 'send')$$),
    ('grant NULL queue', $$SELECT courier.grant(NULL, 'regress_courier_nobody', 'send')$$),
    ('grant NULL role', $$SELECT courier.grant('pt_a', NULL, 'send')$$),
    ('grant NULL privilege', $$SELECT courier.grant('pt_a', 'regress_courier_nobody', NULL)$$),
    ('revoke unknown privilege', $$SELECT courier.revoke('pt_a', 'regress_courier_nobody', 'publish')$$),
    ('revoke unknown queue', $$SELECT courier.revoke('pt_nope', 'regress_courier_nobody')$$),
    ('revoke NULL queue', $$SELECT courier.revoke(NULL, 'regress_courier_nobody')$$),
    ('revoke NULL role', $$SELECT courier.revoke('pt_a', NULL)$$)
  ) AS v(label, stmt);
-- none of those granted anything
SET ROLE regress_courier_nobody;
SELECT courier.send('pt_a', 'x'::text);
\echo :SQLSTATE
RESET ROLE;

--
-- grants belong to the queue, not to its name
--
SELECT courier.grant('pt_a', 'regress_courier_sender', 'send');
SELECT courier.drop_queue('pt_a');
SELECT count(*) AS grants_left FROM courier.queue_grant WHERE queue_id = :a_id;
SELECT courier.create_queue('pt_a');
SET ROLE regress_courier_sender;
SELECT courier.send('pt_a', 'x'::text);
\echo :SQLSTATE
RESET ROLE;

--
-- clean up
--
SELECT courier.drop_queue('pt_a');
SELECT courier.drop_queue('pt_b');
DROP OWNED BY regress_courier_nobody, regress_courier_sender, regress_courier_receiver,
              regress_courier_admin, regress_courier_creator;
DROP ROLE regress_courier_nobody, regress_courier_sender, regress_courier_receiver,
          regress_courier_admin, regress_courier_creator;
SELECT count(*) AS left_over FROM courier.queue WHERE queue_name LIKE 'pt\_%';
