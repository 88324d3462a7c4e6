-- pg_courier security: no function is executable by PUBLIC, SECURITY DEFINER
-- functions pin search_path, and a role that holds only 'send' or 'receive'
-- on a queue can neither read nor write the queue's tables directly
-- (doc/API.md, "Maintenance and permissions").
--
-- Run with pg_prove in a database where pgtap and pg_courier are installed.
BEGIN;
SELECT plan(40);

-- Runs sql as role r and returns 'ok' or the SQLSTATE it failed with, so the
-- pgTAP bookkeeping itself keeps running as the calling superuser.
CREATE FUNCTION pg_temp.as_role(r text, sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  result text;
BEGIN
  EXECUTE format('SET LOCAL ROLE %I', r);
  BEGIN
    EXECUTE sql;
    result := 'ok';
  EXCEPTION WHEN OTHERS THEN
    result := SQLSTATE;
  END;
  RESET ROLE;
  RETURN result;
END $$;

-- 1. EXECUTE is not granted to PUBLIC on any function of schema courier
--    (a NULL proacl means the default, which does grant it to PUBLIC).
SELECT isnt_empty(
  $$SELECT 1 FROM pg_proc WHERE pronamespace = 'courier'::regnamespace$$,
  'schema courier has functions');
SELECT is_empty(
  $$SELECT p.oid::regprocedure::text
      FROM pg_proc p,
           LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
     WHERE p.pronamespace = 'courier'::regnamespace
       AND a.grantee = 0 AND a.privilege_type = 'EXECUTE'$$,
  'no courier function is executable by PUBLIC');

-- 2. Every SECURITY DEFINER function pins search_path, with pg_temp last
--    (left out, pg_temp would be searched first).
SELECT is_empty(
  $$SELECT p.oid::regprocedure::text
      FROM pg_proc p
     WHERE p.pronamespace = 'courier'::regnamespace AND p.prosecdef
       AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')$$,
  'every SECURITY DEFINER function in courier sets search_path');
SELECT is_empty(
  $$SELECT p.oid::regprocedure::text || ': ' || c
      FROM pg_proc p, unnest(p.proconfig) c
     WHERE p.pronamespace = 'courier'::regnamespace AND p.prosecdef
       AND c LIKE 'search\_path=%'
       AND (c NOT LIKE 'search\_path=pg\_catalog%' OR c NOT LIKE '%pg\_temp')$$,
  'SECURITY DEFINER search_path starts with pg_catalog and ends with pg_temp');

-- Roles and a queue for the privilege tests (rolled back at the end).
CREATE ROLE regress_courier_sender;
CREATE ROLE regress_courier_receiver;
CREATE ROLE regress_courier_admin;
CREATE ROLE regress_courier_nobody;
DO $$
BEGIN
  PERFORM courier.create_queue('pgtap_sec');
  PERFORM courier.create_queue('pgtap_sec_other');
  PERFORM courier.send('pgtap_sec', 'seed');
END $$;
SELECT lives_ok(format($$SELECT courier.grant('pgtap_sec', %L, %L)$$, r, p),
                format('grant %s on a queue', p))
  FROM (VALUES ('regress_courier_sender', 'send'),
               ('regress_courier_receiver', 'receive'),
               ('regress_courier_admin', 'admin')) AS t(r, p);

CREATE TEMP TABLE sec_tables AS
  SELECT format('courier.q_%s', queue_id) AS tab FROM courier.queue WHERE queue_name = 'pgtap_sec'
  UNION ALL
  SELECT format('courier.l_%s', queue_id) FROM courier.queue WHERE queue_name = 'pgtap_sec';

SELECT is((SELECT count(*) FROM sec_tables WHERE to_regclass(tab) IS NOT NULL), 2::bigint,
          'the queue has a message table and a lease table');

-- 3. No privilege at all on the queue's tables for send/receive/admin roles.
SELECT is_empty(
  $$SELECT r || ' ' || priv || ' ' || tab
      FROM sec_tables,
           unnest(ARRAY['regress_courier_sender', 'regress_courier_receiver',
                        'regress_courier_admin', 'regress_courier_nobody']) r,
           unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) priv
     WHERE has_table_privilege(r, tab, priv)$$,
  'queue tables grant nothing to roles holding send, receive or admin');
-- The catalog is not writable by them either.
SELECT is_empty(
  $$SELECT r || ' ' || priv || ' ' || tab
      FROM unnest(ARRAY['courier.queue', 'courier.queue_grant']) tab,
           unnest(ARRAY['regress_courier_sender', 'regress_courier_receiver',
                        'regress_courier_admin', 'regress_courier_nobody']) r,
           unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) priv
     WHERE has_table_privilege(r, tab, priv)$$,
  'the catalog tables are not writable by courier users');

-- 4. What each role can actually do.
-- sender
SELECT is(pg_temp.as_role('regress_courier_sender', format('SELECT * FROM %s', tab)), '42501',
          'sender cannot SELECT from ' || left(split_part(tab, '.', 2), 2) || '<queue_id>' || ' directly')
  FROM sec_tables ORDER BY tab;
SELECT is(pg_temp.as_role('regress_courier_sender', format('DELETE FROM %s', tab)), '42501',
          'sender cannot DELETE from ' || left(split_part(tab, '.', 2), 2) || '<queue_id>' || ' directly')
  FROM sec_tables ORDER BY tab;
SELECT is(pg_temp.as_role('regress_courier_sender', $$SELECT courier.send('pgtap_sec', 'hello')$$),
          'ok', 'sender can send');
SELECT is(pg_temp.as_role('regress_courier_sender', $$SELECT * FROM courier.receive('pgtap_sec')$$),
          '42501', 'sender cannot receive');
SELECT is(pg_temp.as_role('regress_courier_sender', $$SELECT courier.purge_queue('pgtap_sec')$$),
          '42501', 'sender cannot purge the queue');
SELECT is(pg_temp.as_role('regress_courier_sender',
            $$SELECT courier.grant('pgtap_sec', 'regress_courier_sender', 'admin')$$),
          '42501', 'sender cannot grant itself admin');
SELECT is(pg_temp.as_role('regress_courier_sender', $$SELECT courier.create_queue('pgtap_sec_2')$$),
          '42501', 'sender cannot create queues without EXECUTE on create_queue');

-- receiver
SELECT is(pg_temp.as_role('regress_courier_receiver', format('SELECT * FROM %s', tab)), '42501',
          'receiver cannot SELECT from ' || left(split_part(tab, '.', 2), 2) || '<queue_id>' || ' directly')
  FROM sec_tables ORDER BY tab;
SELECT is(pg_temp.as_role('regress_courier_receiver', format('UPDATE %s SET %I = %I', tab, a.attname, a.attname)),
          '42501', 'receiver cannot UPDATE ' || left(split_part(tab, '.', 2), 2) || '<queue_id>' || ' directly')
  FROM sec_tables,
       LATERAL (SELECT attname FROM pg_attribute
                 WHERE attrelid = to_regclass(tab) AND attnum > 0 AND NOT attisdropped
                 ORDER BY attnum LIMIT 1) a
 ORDER BY tab;
SELECT is(pg_temp.as_role('regress_courier_receiver', $$SELECT courier.send('pgtap_sec', 'nope')$$),
          '42501', 'receiver cannot send');
SELECT is(pg_temp.as_role('regress_courier_receiver',
            $$SELECT * FROM courier.receive('pgtap_sec', 10, '0')$$),
          'ok', 'receiver can receive');
SELECT is(pg_temp.as_role('regress_courier_receiver', $$SELECT courier.drop_queue('pgtap_sec')$$),
          '42501', 'receiver cannot drop the queue');

-- admin: everything through the API, still no direct table access
SELECT is(pg_temp.as_role('regress_courier_admin', format('SELECT * FROM %s', tab)), '42501',
          'admin cannot SELECT from ' || left(split_part(tab, '.', 2), 2) || '<queue_id>' || ' directly')
  FROM sec_tables ORDER BY tab;
SELECT is(pg_temp.as_role('regress_courier_admin', $$SELECT courier.send('pgtap_sec', 'adm')$$),
          'ok', 'admin can send');
SELECT is(pg_temp.as_role('regress_courier_admin', $$SELECT * FROM courier.receive('pgtap_sec', 10, '0')$$),
          'ok', 'admin can receive');
SELECT is(pg_temp.as_role('regress_courier_admin', $$SELECT courier.alter_queue('pgtap_sec', delay => '1 second')$$),
          'ok', 'admin can alter the queue');

-- a role with no grant at all
SELECT is(pg_temp.as_role('regress_courier_nobody', $$SELECT courier.send('pgtap_sec', 'x')$$),
          '42501', 'a role without grants cannot send');
SELECT is(pg_temp.as_role('regress_courier_nobody', $$SELECT * FROM courier.receive('pgtap_sec')$$),
          '42501', 'a role without grants cannot receive');

-- A sender of one queue has no rights on another queue.
SELECT is(pg_temp.as_role('regress_courier_sender', $$SELECT courier.send('pgtap_sec_other', 'x')$$),
          '42501', 'a send grant is per queue');
SELECT is(pg_temp.as_role('regress_courier_admin', $$SELECT courier.purge_queue('pgtap_sec_other')$$),
          '42501', 'an admin grant is per queue');

-- A role allowed to create queues gets admin on the queues it creates, and
-- nothing on the others.
CREATE ROLE regress_courier_creator;
GRANT USAGE ON SCHEMA courier TO regress_courier_creator;
GRANT EXECUTE ON FUNCTION courier.create_queue(text, interval, interval, interval, integer, boolean,
                                               text, integer, interval, text, interval, boolean, boolean,
                                               boolean, boolean, interval, text)
  TO regress_courier_creator;
SELECT is(pg_temp.as_role('regress_courier_creator', $$SELECT courier.create_queue('pgtap_sec_mine')$$),
          'ok', 'a role with EXECUTE on create_queue can create a queue');
SELECT is(pg_temp.as_role('regress_courier_creator',
            $$SELECT courier.send('pgtap_sec_mine', 'x'), courier.purge_queue('pgtap_sec_mine')$$),
          'ok', 'the creator can send to and purge its own queue');
SELECT is(pg_temp.as_role('regress_courier_creator', $$SELECT courier.send('pgtap_sec', 'x')$$),
          '42501', 'the creator has no rights on queues it did not create');

-- revoke takes effect
SELECT lives_ok($$SELECT courier.revoke('pgtap_sec', 'regress_courier_sender', 'send')$$,
                'revoke send');
SELECT is(pg_temp.as_role('regress_courier_sender', $$SELECT courier.send('pgtap_sec', 'after revoke')$$),
          '42501', 'after revoke the sender cannot send');

SELECT * FROM finish();
ROLLBACK;
