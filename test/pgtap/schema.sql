-- pg_courier schema: the objects doc/API.md documents exist with the
-- documented signatures, parameter names and defaults, and the catalog is
-- registered for pg_dump.
--
-- Run with pg_prove in a database where pgtap and pg_courier are installed.
BEGIN;
SELECT plan(89);

SELECT has_schema('courier');
-- The extension script creates the schema (the control file names none), so the
-- schema is a member of the extension.
SELECT is((SELECT schema FROM pg_available_extension_versions
            WHERE name = 'pg_courier' AND version = '0.1'), NULL::name,
          'the control file does not name a schema');
SELECT is_empty(
  $$SELECT pg_describe_object(d.classid, d.objid, 0)
      FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
      LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
      LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
      LEFT JOIN pg_type t ON d.classid = 'pg_type'::regclass AND t.oid = d.objid
     WHERE e.extname = 'pg_courier' AND d.refclassid = 'pg_extension'::regclass
       AND d.deptype = 'e'
       AND coalesce(p.pronamespace, c.relnamespace, t.typnamespace) <> 'courier'::regnamespace$$,
  'every function, table, view, sequence and type of the extension is in schema courier');
SELECT is((SELECT count(*) FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
            WHERE e.extname = 'pg_courier' AND d.refclassid = 'pg_extension'::regclass
              AND d.classid = 'pg_namespace'::regclass
              AND d.objid = 'courier'::regnamespace AND d.deptype = 'e'),
          1::bigint, 'schema courier is a member of the extension');

-- Every documented function, with its argument types and return type.
SELECT has_function('courier', f, a, format('courier.%s(%s) exists', f, array_to_string(a, ', ')))
  FROM (VALUES
    ('create_queue', ARRAY['text', 'interval', 'interval', 'interval', 'integer', 'boolean', 'text', 'integer', 'interval', 'text', 'interval', 'boolean', 'boolean', 'boolean', 'boolean', 'interval', 'text']),
    ('alter_queue', ARRAY['text', 'interval', 'interval', 'interval', 'integer', 'boolean', 'text', 'integer', 'interval', 'text', 'interval', 'boolean', 'boolean', 'boolean', 'boolean', 'interval', 'text']),
    ('drop_queue', ARRAY['text', 'boolean']),
    ('purge_queue', ARRAY['text']),
    ('send', ARRAY['text', 'jsonb', 'jsonb', 'interval', 'text', 'text']),
    ('send', ARRAY['text', 'text', 'jsonb', 'interval', 'text', 'text']),
    ('send', ARRAY['text', 'bytea', 'jsonb', 'interval', 'text', 'text']),
    ('send_batch', ARRAY['text', 'jsonb[]', 'jsonb[]', 'interval', 'text[]', 'text[]']),
    ('send_batch', ARRAY['text', 'text[]', 'jsonb[]', 'interval', 'text[]', 'text[]']),
    ('send_batch', ARRAY['text', 'bytea[]', 'jsonb[]', 'interval', 'text[]', 'text[]']),
    ('receive', ARRAY['text', 'integer', 'interval', 'interval']),
    ('ack', ARRAY['text', 'text']),
    ('ack_batch', ARRAY['text', 'text[]']),
    ('change_visibility', ARRAY['text', 'text', 'interval']),
    ('release', ARRAY['text', 'text', 'interval', 'text']),
    ('redrive', ARRAY['text', 'text', 'integer']),
    ('maintain', ARRAY[]::text[]),
    ('grant', ARRAY['text', 'regrole', 'text']),
    ('revoke', ARRAY['text', 'regrole', 'text'])
  ) AS t(f, a);

SELECT function_returns('courier', f, a, r, format('courier.%s(%s) returns %s', f, array_to_string(a, ', '), r))
  FROM (VALUES
    ('create_queue', ARRAY['text', 'interval', 'interval', 'interval', 'integer', 'boolean', 'text', 'integer', 'interval', 'text', 'interval', 'boolean', 'boolean', 'boolean', 'boolean', 'interval', 'text'], 'void'),
    ('alter_queue', ARRAY['text', 'interval', 'interval', 'interval', 'integer', 'boolean', 'text', 'integer', 'interval', 'text', 'interval', 'boolean', 'boolean', 'boolean', 'boolean', 'interval', 'text'], 'void'),
    ('drop_queue', ARRAY['text', 'boolean'], 'void'),
    ('purge_queue', ARRAY['text'], 'bigint'),
    ('send', ARRAY['text', 'jsonb', 'jsonb', 'interval', 'text', 'text'], 'bigint'),
    ('send', ARRAY['text', 'text', 'jsonb', 'interval', 'text', 'text'], 'bigint'),
    ('send', ARRAY['text', 'bytea', 'jsonb', 'interval', 'text', 'text'], 'bigint'),
    ('send_batch', ARRAY['text', 'jsonb[]', 'jsonb[]', 'interval', 'text[]', 'text[]'], 'bigint[]'),
    ('send_batch', ARRAY['text', 'text[]', 'jsonb[]', 'interval', 'text[]', 'text[]'], 'bigint[]'),
    ('send_batch', ARRAY['text', 'bytea[]', 'jsonb[]', 'interval', 'text[]', 'text[]'], 'bigint[]'),
    ('receive', ARRAY['text', 'integer', 'interval', 'interval'], 'setof record'),
    ('ack', ARRAY['text', 'text'], 'void'),
    ('ack_batch', ARRAY['text', 'text[]'], 'integer'),
    ('change_visibility', ARRAY['text', 'text', 'interval'], 'void'),
    ('release', ARRAY['text', 'text', 'interval', 'text'], 'void'),
    ('redrive', ARRAY['text', 'text', 'integer'], 'bigint'),
    ('maintain', ARRAY[]::text[], 'bigint'),
    ('grant', ARRAY['text', 'regrole', 'text'], 'void'),
    ('revoke', ARRAY['text', 'regrole', 'text'], 'void')
  ) AS t(f, a, r);

-- Parameter names (callers use named notation: max_messages => 10) and how
-- many trailing parameters have defaults.
SELECT is(
         (SELECT format('%s/%s', p.proargnames, p.pronargdefaults)
            FROM pg_proc p WHERE p.oid = to_regprocedure(sig)),
         expected,
         sig || ': parameter names / number of defaults')
  FROM (VALUES
    ('courier.create_queue(text,interval,interval,interval,integer,boolean,text,integer,interval,text,interval,boolean,boolean,boolean,boolean,interval,text)',
     '{queue_name,visibility_timeout,delay,retention,max_message_size,notify,dead_letter_queue,max_receives,retry_delay,retry_backoff,retry_max_delay,retry_jitter,durable_leases,fifo,content_dedup,dedup_window,encryption_key}/16'),
    ('courier.alter_queue(text,interval,interval,interval,integer,boolean,text,integer,interval,text,interval,boolean,boolean,boolean,boolean,interval,text)',
     '{queue_name,visibility_timeout,delay,retention,max_message_size,notify,dead_letter_queue,max_receives,retry_delay,retry_backoff,retry_max_delay,retry_jitter,durable_leases,fifo,content_dedup,dedup_window,encryption_key}/16'),
    ('courier.drop_queue(text,boolean)', '{queue_name,force}/1'),
    ('courier.purge_queue(text)', '{queue_name}/0'),
    ('courier.send(text,jsonb,jsonb,interval,text,text)', '{queue_name,body,attributes,delay,group_id,dedup_id}/4'),
    ('courier.send(text,text,jsonb,interval,text,text)', '{queue_name,body,attributes,delay,group_id,dedup_id}/4'),
    ('courier.send(text,bytea,jsonb,interval,text,text)', '{queue_name,body,attributes,delay,group_id,dedup_id}/4'),
    ('courier.send_batch(text,jsonb[],jsonb[],interval,text[],text[])', '{queue_name,bodies,attributes,delay,group_ids,dedup_ids}/4'),
    ('courier.send_batch(text,text[],jsonb[],interval,text[],text[])', '{queue_name,bodies,attributes,delay,group_ids,dedup_ids}/4'),
    ('courier.send_batch(text,bytea[],jsonb[],interval,text[],text[])', '{queue_name,bodies,attributes,delay,group_ids,dedup_ids}/4'),
    ('courier.receive(text,integer,interval,interval)',
     '{queue_name,max_messages,visibility_timeout,wait,msg_id,receipt,body,body_text,body_bytes,attributes,sent_at,receive_count,dead_letter,group_id}/3'),
    ('courier.ack(text,text)', '{queue_name,receipt}/0'),
    ('courier.ack_batch(text,text[])', '{queue_name,receipts}/0'),
    ('courier.change_visibility(text,text,interval)', '{queue_name,receipt,visibility_timeout}/0'),
    ('courier.release(text,text,interval,text)', '{queue_name,receipt,delay,reason}/2'),
    ('courier.redrive(text,text,integer)', '{dead_letter_queue,to_queue,max_messages}/2'),
    ('courier.grant(text,regrole,text)', '{queue_name,role_name,privilege}/0'),
    ('courier.revoke(text,regrole,text)', '{queue_name,role_name,privilege}/1')
  ) AS t(sig, expected);

SELECT is(pg_get_function_result('courier.receive(text,integer,interval,interval)'::regprocedure),
          'TABLE(msg_id bigint, receipt text, body jsonb, body_text text, body_bytes bytea, '
          'attributes jsonb, sent_at timestamp with time zone, receive_count integer, dead_letter jsonb, '
          'group_id text)',
          'courier.receive returns the documented columns');

-- The documented defaults take effect.
SELECT lives_ok($$SELECT courier.create_queue('pgtap_schema_defaults')$$,
                'create_queue with only a name');
SELECT results_eq(
  $$SELECT visibility_timeout, delay, retention, max_message_size, notify
      FROM courier.queues WHERE queue_name = 'pgtap_schema_defaults'$$,
  $$VALUES ('30 seconds'::interval, '0'::interval, '4 days'::interval, 262144, false)$$,
  'create_queue defaults: 30 s visibility, no delay, 4 days retention, 256 KiB, no notify');
SELECT results_eq(
  $$SELECT dead_letter_queue, max_receives, dead_letter_depth, retry_delay, retry_backoff,
           retry_max_delay, retry_jitter, durable_leases
      FROM courier.queues WHERE queue_name = 'pgtap_schema_defaults'$$,
  $$VALUES (NULL::text, NULL::integer, NULL::bigint, '0'::interval, 'fixed'::text,
            '15 minutes'::interval, false, false)$$,
  'create_queue defaults: no redrive policy, no retry delay (fixed, capped at 15 minutes, no jitter), leases not durable');

-- The setting long polling is bounded by: superuser-only, 20 s by default.
SELECT is(current_setting('courier.max_wait'), '20s', 'courier.max_wait defaults to 20 s');
SELECT is((SELECT context FROM pg_settings WHERE name = 'courier.max_wait'), 'superuser',
          'only a superuser may change courier.max_wait');

-- The monitoring view.
SELECT has_view('courier', 'queues', 'view courier.queues exists');
SELECT columns_are('courier', 'queues',
  ARRAY['queue_name', 'visibility_timeout', 'delay', 'retention', 'max_message_size',
        'notify', 'notify_channel', 'dead_letter_queue', 'max_receives', 'dead_letter_depth',
        'retry_delay', 'retry_backoff', 'retry_max_delay', 'retry_jitter', 'durable_leases',
        'fifo', 'content_dedup', 'dedup_window',
        'created_at', 'depth', 'visible', 'in_flight', 'delayed', 'oldest_message_age',
        'groups', 'groups_in_flight', 'oldest_ready_group_age', 'encryption_key'],
  'courier.queues has the documented columns');
SELECT col_type_is('courier', 'queues', 'oldest_message_age', 'interval',
                   'courier.queues.oldest_message_age is an interval');
SELECT is((SELECT oldest_message_age FROM courier.queues WHERE queue_name = 'pgtap_schema_defaults'),
          NULL::interval, 'oldest_message_age is NULL for an empty queue');
SELECT col_type_is('courier', 'queues', 'notify', 'boolean', 'courier.queues.notify is a boolean');
SELECT col_type_is('courier', 'queues', 'notify_channel', 'text',
                   'courier.queues.notify_channel is text');
SELECT is(v.notify_channel, 'courier_' || q.queue_id,
          'the notify channel of a queue is courier_<queue_id>')
  FROM courier.queues v JOIN courier.queue q USING (queue_name)
 WHERE queue_name = 'pgtap_schema_defaults';

-- Catalog tables, registered with pg_extension_config_dump so pg_dump
-- carries queues and grants.
SELECT has_table('courier', 'queue', 'catalog courier.queue exists');
SELECT has_table('courier', 'queue_grant', 'catalog courier.queue_grant exists');
SELECT has_column('courier', 'queue', 'queue_id', 'courier.queue has queue_id');
SELECT has_column('courier', 'queue', 'queue_name', 'courier.queue has queue_name');
SELECT ok((SELECT 'courier.queue'::regclass = ANY (extconfig)
             FROM pg_extension WHERE extname = 'pg_courier'),
          'courier.queue is registered with pg_extension_config_dump');
SELECT ok((SELECT 'courier.queue_grant'::regclass = ANY (extconfig)
             FROM pg_extension WHERE extname = 'pg_courier'),
          'courier.queue_grant is registered with pg_extension_config_dump');
-- A member table or sequence left out of extconfig would be lost (or reset,
-- for a message id sequence) by pg_dump / pg_restore.
SELECT is_empty(
  $$SELECT c.oid::regclass::text
      FROM pg_depend d
      JOIN pg_class c ON c.oid = d.objid AND d.classid = 'pg_class'::regclass
      JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass
     WHERE e.extname = 'pg_courier' AND d.deptype = 'e'
       AND c.relkind IN ('r', 'p', 'S')
       AND c.relpersistence = 'p'
       AND NOT c.oid = ANY (e.extconfig)$$,
  'every logged table and sequence of the extension is registered for pg_dump');

-- Per-queue storage: messages logged, leases unlogged.
SELECT has_table('courier', 'q_' || queue_id, 'message table courier.q_<queue_id> exists')
  FROM courier.queue WHERE queue_name = 'pgtap_schema_defaults';
SELECT has_table('courier', 'l_' || queue_id, 'lease table courier.l_<queue_id> exists')
  FROM courier.queue WHERE queue_name = 'pgtap_schema_defaults';
SELECT is((SELECT relpersistence FROM pg_class
            WHERE oid = to_regclass(format('courier.q_%s', queue_id))), 'p'::"char",
          'the message table is logged')
  FROM courier.queue WHERE queue_name = 'pgtap_schema_defaults';
SELECT is((SELECT relpersistence FROM pg_class
            WHERE oid = to_regclass(format('courier.l_%s', queue_id))), 'u'::"char",
          'the lease table is unlogged')
  FROM courier.queue WHERE queue_name = 'pgtap_schema_defaults';
-- durable_leases => true: a logged lease table; switched off again: unlogged
DO $$ BEGIN PERFORM courier.create_queue('pgtap_schema_durable', durable_leases => true); END $$;
SELECT is((SELECT relpersistence FROM pg_class
            WHERE oid = to_regclass(format('courier.l_%s', queue_id))), 'p'::"char",
          'with durable_leases the lease table is logged')
  FROM courier.queue WHERE queue_name = 'pgtap_schema_durable';
DO $$ BEGIN PERFORM courier.alter_queue('pgtap_schema_durable', durable_leases => false); END $$;
SELECT is((SELECT relpersistence FROM pg_class
            WHERE oid = to_regclass(format('courier.l_%s', queue_id))), 'u'::"char",
          'alter_queue(durable_leases => false) makes the lease table unlogged again')
  FROM courier.queue WHERE queue_name = 'pgtap_schema_durable';

-- DROP EXTENSION ... CASCADE takes the schema with it, and with the schema the
-- per-queue tables, which are not members of the extension.
CREATE TEMP TABLE queue_tables AS
  SELECT format('courier.%s_%s', k, queue_id) AS tab
    FROM courier.queue, unnest(ARRAY['q', 'l']) AS k;
SET LOCAL client_min_messages = warning;
SELECT lives_ok('DROP EXTENSION pg_courier CASCADE', 'DROP EXTENSION pg_courier CASCADE');
SELECT hasnt_schema('courier', 'schema courier is gone with the extension');
SELECT is((SELECT count(*) FROM queue_tables WHERE to_regclass(tab) IS NOT NULL), 0::bigint,
          'the per-queue tables are gone with the extension');

SELECT * FROM finish();
ROLLBACK;
