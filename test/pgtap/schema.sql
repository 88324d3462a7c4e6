-- pg_courier schema: the objects doc/API.md documents exist with the
-- documented signatures, parameter names and defaults, and the catalog is
-- registered for pg_dump.
--
-- Run with pg_prove in a database where pgtap and pg_courier are installed.
BEGIN;
SELECT plan(72);

SELECT has_schema('courier');

-- Every documented function, with its argument types and return type.
SELECT has_function('courier', f, a, format('courier.%s(%s) exists', f, array_to_string(a, ', ')))
  FROM (VALUES
    ('create_queue', ARRAY['text', 'interval', 'interval', 'interval', 'integer']),
    ('alter_queue', ARRAY['text', 'interval', 'interval', 'interval', 'integer']),
    ('drop_queue', ARRAY['text']),
    ('purge_queue', ARRAY['text']),
    ('send', ARRAY['text', 'jsonb', 'jsonb', 'interval']),
    ('send', ARRAY['text', 'text', 'jsonb', 'interval']),
    ('send', ARRAY['text', 'bytea', 'jsonb', 'interval']),
    ('send_batch', ARRAY['text', 'jsonb[]', 'jsonb[]', 'interval']),
    ('send_batch', ARRAY['text', 'text[]', 'jsonb[]', 'interval']),
    ('send_batch', ARRAY['text', 'bytea[]', 'jsonb[]', 'interval']),
    ('receive', ARRAY['text', 'integer', 'interval']),
    ('ack', ARRAY['text', 'text']),
    ('ack_batch', ARRAY['text', 'text[]']),
    ('change_visibility', ARRAY['text', 'text', 'interval']),
    ('release', ARRAY['text', 'text', 'interval']),
    ('maintain', ARRAY[]::text[]),
    ('grant', ARRAY['text', 'regrole', 'text']),
    ('revoke', ARRAY['text', 'regrole', 'text'])
  ) AS t(f, a);

SELECT function_returns('courier', f, a, r, format('courier.%s(%s) returns %s', f, array_to_string(a, ', '), r))
  FROM (VALUES
    ('create_queue', ARRAY['text', 'interval', 'interval', 'interval', 'integer'], 'void'),
    ('alter_queue', ARRAY['text', 'interval', 'interval', 'interval', 'integer'], 'void'),
    ('drop_queue', ARRAY['text'], 'void'),
    ('purge_queue', ARRAY['text'], 'bigint'),
    ('send', ARRAY['text', 'jsonb', 'jsonb', 'interval'], 'bigint'),
    ('send', ARRAY['text', 'text', 'jsonb', 'interval'], 'bigint'),
    ('send', ARRAY['text', 'bytea', 'jsonb', 'interval'], 'bigint'),
    ('send_batch', ARRAY['text', 'jsonb[]', 'jsonb[]', 'interval'], 'bigint[]'),
    ('send_batch', ARRAY['text', 'text[]', 'jsonb[]', 'interval'], 'bigint[]'),
    ('send_batch', ARRAY['text', 'bytea[]', 'jsonb[]', 'interval'], 'bigint[]'),
    ('receive', ARRAY['text', 'integer', 'interval'], 'setof record'),
    ('ack', ARRAY['text', 'text'], 'void'),
    ('ack_batch', ARRAY['text', 'text[]'], 'integer'),
    ('change_visibility', ARRAY['text', 'text', 'interval'], 'void'),
    ('release', ARRAY['text', 'text', 'interval'], 'void'),
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
    ('courier.create_queue(text,interval,interval,interval,integer)',
     '{queue_name,visibility_timeout,delay,retention,max_message_size}/4'),
    ('courier.alter_queue(text,interval,interval,interval,integer)',
     '{queue_name,visibility_timeout,delay,retention,max_message_size}/4'),
    ('courier.drop_queue(text)', '{queue_name}/0'),
    ('courier.purge_queue(text)', '{queue_name}/0'),
    ('courier.send(text,jsonb,jsonb,interval)', '{queue_name,body,attributes,delay}/2'),
    ('courier.send(text,text,jsonb,interval)', '{queue_name,body,attributes,delay}/2'),
    ('courier.send(text,bytea,jsonb,interval)', '{queue_name,body,attributes,delay}/2'),
    ('courier.send_batch(text,jsonb[],jsonb[],interval)', '{queue_name,bodies,attributes,delay}/2'),
    ('courier.send_batch(text,text[],jsonb[],interval)', '{queue_name,bodies,attributes,delay}/2'),
    ('courier.send_batch(text,bytea[],jsonb[],interval)', '{queue_name,bodies,attributes,delay}/2'),
    ('courier.receive(text,integer,interval)',
     '{queue_name,max_messages,visibility_timeout,msg_id,receipt,body,body_text,body_bytes,attributes,sent_at,receive_count}/2'),
    ('courier.ack(text,text)', '{queue_name,receipt}/0'),
    ('courier.ack_batch(text,text[])', '{queue_name,receipts}/0'),
    ('courier.change_visibility(text,text,interval)', '{queue_name,receipt,visibility_timeout}/0'),
    ('courier.release(text,text,interval)', '{queue_name,receipt,delay}/1'),
    ('courier.grant(text,regrole,text)', '{queue_name,role_name,privilege}/0'),
    ('courier.revoke(text,regrole,text)', '{queue_name,role_name,privilege}/1')
  ) AS t(sig, expected);

SELECT is(pg_get_function_result('courier.receive(text,integer,interval)'::regprocedure),
          'TABLE(msg_id bigint, receipt text, body jsonb, body_text text, body_bytes bytea, '
          'attributes jsonb, sent_at timestamp with time zone, receive_count integer)',
          'courier.receive returns the documented columns');

-- The documented defaults take effect.
SELECT lives_ok($$SELECT courier.create_queue('pgtap_schema_defaults')$$,
                'create_queue with only a name');
SELECT results_eq(
  $$SELECT visibility_timeout, delay, retention, max_message_size
      FROM courier.queues WHERE queue_name = 'pgtap_schema_defaults'$$,
  $$VALUES ('30 seconds'::interval, '0'::interval, '4 days'::interval, 262144)$$,
  'create_queue defaults: 30 s visibility, no delay, 4 days retention, 256 KiB');

-- The monitoring view.
SELECT has_view('courier', 'queues', 'view courier.queues exists');
SELECT columns_are('courier', 'queues',
  ARRAY['queue_name', 'visibility_timeout', 'delay', 'retention', 'max_message_size',
        'created_at', 'depth', 'visible', 'in_flight', 'delayed', 'oldest_message_age'],
  'courier.queues has the documented columns');
SELECT col_type_is('courier', 'queues', 'oldest_message_age', 'interval',
                   'courier.queues.oldest_message_age is an interval');
SELECT is((SELECT oldest_message_age FROM courier.queues WHERE queue_name = 'pgtap_schema_defaults'),
          NULL::interval, 'oldest_message_age is NULL for an empty queue');

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

SELECT * FROM finish();
ROLLBACK;
