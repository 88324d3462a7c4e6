--
-- send: send and send_batch with jsonb, text and bytea bodies, attributes,
-- delays, size limits, and transactions
--
\set VERBOSITY terse
\set SHOW_CONTEXT never

\i sql/include/sqlstate_of.sql

SELECT courier.create_queue('st_main');
SELECT courier.create_queue('st_other');

-- ids returned by send, by label
CREATE TEMP TABLE sent (label text PRIMARY KEY, id bigint NOT NULL);

--
-- one message of each body type
--
INSERT INTO sent VALUES ('jsonb', courier.send('st_main', '{"a": 1, "b": [true, null]}'::jsonb));
INSERT INTO sent VALUES ('text', courier.send('st_main', 'plain text'::text));
INSERT INTO sent VALUES ('bytea', courier.send('st_main', '\x00ff10'::bytea));
-- an untyped literal is a text body
INSERT INTO sent VALUES ('untyped', courier.send('st_main', '{"a":1}'));
-- empty bodies are bodies
INSERT INTO sent VALUES ('empty text', courier.send('st_main', ''::text));
INSERT INTO sent VALUES ('empty bytea', courier.send('st_main', ''::bytea));
INSERT INTO sent VALUES ('jsonb null', courier.send('st_main', 'null'::jsonb));
-- ids are unique across queues and grow in the order of sending
INSERT INTO sent VALUES ('other queue', courier.send('st_other', 'x'::text));
INSERT INTO sent VALUES ('after other', courier.send('st_main', 'y'::text));
SELECT label FROM sent ORDER BY id;
SELECT count(*) AS ids, count(DISTINCT id) AS distinct_ids FROM sent;
SELECT depth FROM courier.queues WHERE queue_name IN ('st_main', 'st_other') ORDER BY queue_name;

-- each message comes back in the column of its type, under the id send returned
SELECT s.label, r.body, r.body_text, r.body_bytes,
       num_nonnulls(r.body, r.body_text, r.body_bytes) AS bodies, r.attributes, r.receive_count
  FROM courier.receive('st_main', 1000) r LEFT JOIN sent s ON s.id = r.msg_id
 ORDER BY r.msg_id;
SELECT s.label, r.body_text
  FROM courier.receive('st_other', 1000) r LEFT JOIN sent s ON s.id = r.msg_id;

--
-- attributes
--
SELECT courier.create_queue('st_attr');
TRUNCATE sent;
INSERT INTO sent VALUES ('none', courier.send('st_attr', 'm'::text));
INSERT INTO sent VALUES ('null', courier.send('st_attr', 'm'::text, NULL));
INSERT INTO sent VALUES ('empty object', courier.send('st_attr', 'm'::text, '{}'));
INSERT INTO sent VALUES ('scalars', courier.send('st_attr', '{"x":1}'::jsonb,
    '{"s": "x", "n": 1.5, "i": -3, "t": true, "f": false, "e": ""}'));
INSERT INTO sent VALUES ('10 keys', courier.send('st_attr', '\x01'::bytea,
    (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 10) i)));
INSERT INTO sent VALUES ('256-char key', courier.send('st_attr', 'm'::text,
    jsonb_build_object(repeat('k', 256), 'v')));
SELECT s.label, r.attributes IS NULL AS is_null,
       (SELECT count(*) FROM jsonb_object_keys(r.attributes)) AS keys,
       CASE WHEN s.label = '256-char key' THEN NULL ELSE r.attributes END AS attributes,
       (SELECT max(length(k)) FROM jsonb_object_keys(r.attributes) k) AS longest_key
  FROM courier.receive('st_attr', 1000) r LEFT JOIN sent s ON s.id = r.msg_id
 ORDER BY r.msg_id;

-- invalid attributes
SELECT courier.send('st_attr', 'm'::text, '[1, 2]');
\echo :SQLSTATE
SELECT courier.send('st_attr', 'm'::text, '{"a": {"b": 1}}');
\echo :SQLSTATE
SELECT courier.send('st_attr', 'm'::text, '{"a": null}');
\echo :SQLSTATE
SELECT courier.send('st_attr', 'm'::text,
    (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 11) i));
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(format('SELECT courier.send(%L, %L::text, %L::jsonb)',
                                         'st_attr', 'm', attrs)) AS sqlstate
  FROM (VALUES ('array', '[1, 2]'),
               ('empty array', '[]'),
               ('string', '"a"'),
               ('number', '1'),
               ('boolean', 'true'),
               ('json null', 'null'),
               ('nested object', '{"a": {"b": 1}}'),
               ('array value', '{"a": [1]}'),
               ('empty array value', '{"a": []}'),
               ('null value', '{"a": null}'),
               ('null among good values', '{"a": "x", "b": null}'),
               ('11 keys', (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 11) i)::text),
               ('empty key', '{"": "x"}'),
               ('257-char key', jsonb_build_object(repeat('k', 257), 'v')::text)) AS v(label, attrs);
-- nothing was stored by the failed sends
SELECT depth FROM courier.queues WHERE queue_name = 'st_attr';

--
-- delay
--
SELECT courier.create_queue('st_delay', delay => '10 minutes');
TRUNCATE sent;
INSERT INTO sent VALUES ('queue default', courier.send('st_delay', 'm'::text));
INSERT INTO sent VALUES ('NULL = queue default', courier.send('st_delay', 'm'::text, delay => NULL));
INSERT INTO sent VALUES ('0 overrides', courier.send('st_delay', 'm'::text, delay => '0'));
INSERT INTO sent VALUES ('5 minutes', courier.send('st_delay', 'm'::text, delay => '5 minutes'));
INSERT INTO sent VALUES ('15 minutes', courier.send('st_delay', 'm'::text, delay => '15 minutes'));
SELECT depth, visible, in_flight, delayed FROM courier.queues WHERE queue_name = 'st_delay';
-- only the message sent without delay can be received
SELECT s.label FROM courier.receive('st_delay', 1000) r LEFT JOIN sent s ON s.id = r.msg_id;
-- a delay on a queue without a default delay
SELECT courier.send('st_other', 'later'::text, delay => '1 minute') IS NOT NULL AS sent;
SELECT count(*) AS received FROM courier.receive('st_other', 1000);
SELECT visible, delayed FROM courier.queues WHERE queue_name = 'st_other';

SELECT courier.send('st_delay', 'm'::text, delay => '15 minutes 1 second');
\echo :SQLSTATE
SELECT courier.send('st_delay', 'm'::text, delay => '-1 second');
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(format('SELECT courier.send(%L, %L::text, delay => %L)',
                                         'st_delay', 'm', d)) AS sqlstate
  FROM (VALUES ('-1 second', '-1 second'),
               ('-15 minutes', '-15 minutes'),
               ('15 minutes 1 second', '15 minutes 1 second'),
               ('1 hour', '1 hour'),
               ('1 day', '1 day'),
               ('1 month', '1 mon')) AS v(label, d);
SELECT depth FROM courier.queues WHERE queue_name = 'st_delay';

--
-- size limits: a body may be as large as max_message_size bytes
--
SELECT courier.create_queue('st_small', max_message_size => 10);
SELECT courier.send('st_small', repeat('x', 10)) IS NOT NULL AS sent;
SELECT courier.send('st_small', repeat('x', 11));
\echo :SQLSTATE
SELECT courier.send('st_small', '\x00010203040506070809'::bytea) IS NOT NULL AS sent;
SELECT courier.send('st_small', '\x000102030405060708090a'::bytea);
\echo :SQLSTATE
-- bytes, not characters: 5 two-byte characters fit, 6 do not
SELECT courier.send('st_small', 'ééééé'::text) IS NOT NULL AS sent;
SELECT courier.send('st_small', 'éééééé'::text);
\echo :SQLSTATE
-- jsonb: the smaller of the stored size and the JSON text length counts
SELECT courier.send('st_small', '1'::jsonb) IS NOT NULL AS sent;
SELECT courier.send('st_small', to_jsonb(repeat('x', 100)));
\echo :SQLSTATE
-- JSON text of 10 bytes (stored in more) fits; 11 bytes do not
SELECT courier.send('st_small', '"12345678"'::jsonb) IS NOT NULL AS sent;
SELECT courier.send('st_small', '"123456789"'::jsonb);
\echo :SQLSTATE
-- the limit applies to the body only, not to the attributes
SELECT courier.send('st_small', 'x'::text, '{"long": "attribute value longer than ten bytes"}')
       IS NOT NULL AS sent;
SELECT depth FROM courier.queues WHERE queue_name = 'st_small';
SELECT octet_length(body_text) AS text_bytes, octet_length(body_bytes) AS bytea_bytes,
       body::text AS body
  FROM courier.receive('st_small', 1000) ORDER BY msg_id;

-- the default limit is 262144 bytes
SELECT courier.send('st_main', repeat('x', 262144)) IS NOT NULL AS sent;
SELECT courier.send('st_main', repeat('x', 262145));
\echo :SQLSTATE
SELECT courier.send('st_main', decode(repeat('00', 262145), 'hex'));
\echo :SQLSTATE
-- the largest limit is 1048576 bytes
SELECT courier.create_queue('st_big', max_message_size => 1048576);
SELECT courier.send('st_big', repeat('x', 1048576)) IS NOT NULL AS sent;
SELECT courier.send('st_big', repeat('x', 1048577));
\echo :SQLSTATE
SELECT octet_length(body_text) AS bytes FROM courier.receive('st_big', 10);

--
-- send_batch
--
SELECT courier.create_queue('st_batch');
CREATE TEMP TABLE batch (label text PRIMARY KEY, ids bigint[]);
INSERT INTO batch VALUES ('text',
    courier.send_batch('st_batch', ARRAY['t1', 't2', 't3']::text[]));
INSERT INTO batch VALUES ('jsonb',
    courier.send_batch('st_batch', ARRAY['{"n": 1}', '{"n": 2}']::jsonb[],
                       ARRAY['{"k": "a"}', '{"k": "b"}']::jsonb[]));
INSERT INTO batch VALUES ('bytea',
    courier.send_batch('st_batch', ARRAY['\x01', '\x0202']::bytea[],
                       ARRAY[NULL, '{"k": true}']::jsonb[]));
-- one id per body, unique and growing
SELECT label, cardinality(ids) AS n FROM batch ORDER BY label;
SELECT count(*) AS ids, count(DISTINCT id) AS distinct_ids,
       bool_and(id > prev) AS growing
  FROM (SELECT id, lag(id, 1, 0) OVER (ORDER BY label <> 'text', label <> 'jsonb', ord) AS prev
          FROM batch, unnest(ids) WITH ORDINALITY AS u(id, ord)) AS s;
-- element i of the batch is the message with id ids[i]
CREATE TEMP TABLE got AS SELECT * FROM courier.receive('st_batch', 1000);
SELECT b.label, u.ord, g.body, g.body_text, g.body_bytes, g.attributes, g.receive_count
  FROM batch b CROSS JOIN unnest(b.ids) WITH ORDINALITY AS u(id, ord)
  LEFT JOIN got g ON g.msg_id = u.id
 ORDER BY u.id;
SELECT count(*) AS received FROM got;

-- an empty batch sends nothing
SELECT courier.send_batch('st_batch', '{}'::text[]);
SELECT courier.send_batch('st_batch', '{}'::jsonb[], '{}'::jsonb[]);
-- a batch with a delay
SELECT cardinality(courier.send_batch('st_batch', ARRAY['d1', 'd2']::text[],
                                      delay => '10 minutes')) AS n;
SELECT count(*) AS received FROM courier.receive('st_batch', 1000);
SELECT depth, delayed FROM courier.queues WHERE queue_name = 'st_batch';
SELECT courier.purge_queue('st_batch');

-- a failing batch stores nothing, even when only its last element is bad
SELECT courier.send_batch('st_batch', ARRAY['a', 'b', NULL]::text[]);
\echo :SQLSTATE
SELECT courier.send_batch('st_small', ARRAY['ok', 'ok', repeat('x', 11)]::text[]);
\echo :SQLSTATE
SELECT courier.send_batch('st_batch', ARRAY['{"a": 1}', '{"a": 2}']::jsonb[],
                          ARRAY['{"k": 1}', '{"k": {"nested": 1}}']::jsonb[]);
\echo :SQLSTATE
SELECT courier.send_batch('st_batch', ARRAY['a', 'b']::text[], ARRAY['{"k": 1}']::jsonb[]);
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('NULL element', $$SELECT courier.send_batch('st_batch', ARRAY['a', 'b', NULL]::text[])$$),
    ('NULL jsonb element', $$SELECT courier.send_batch('st_batch', ARRAY['1', NULL]::jsonb[])$$),
    ('NULL bytea element', $$SELECT courier.send_batch('st_batch', ARRAY['\x01', NULL]::bytea[])$$),
    ('last body too large', $$SELECT courier.send_batch('st_small', ARRAY['ok', 'ok', repeat('x', 11)]::text[])$$),
    ('last bytea too large', $$SELECT courier.send_batch('st_small', ARRAY['\x01', '\x000102030405060708090a']::bytea[])$$),
    ('nested attribute', $$SELECT courier.send_batch('st_batch', ARRAY['a', 'b']::text[], ARRAY['{"k": 1}', '{"k": {"n": 1}}']::jsonb[])$$),
    ('attribute not an object', $$SELECT courier.send_batch('st_batch', ARRAY['a', 'b']::text[], ARRAY['{"k": 1}', '[1]']::jsonb[])$$),
    ('fewer attributes', $$SELECT courier.send_batch('st_batch', ARRAY['a', 'b']::text[], ARRAY['{"k": 1}']::jsonb[])$$),
    ('more attributes', $$SELECT courier.send_batch('st_batch', ARRAY['a']::text[], ARRAY['{"k": 1}', '{"k": 2}']::jsonb[])$$),
    ('delay too long', $$SELECT courier.send_batch('st_batch', ARRAY['a', 'b']::text[], delay => '16 minutes')$$),
    ('negative delay', $$SELECT courier.send_batch('st_batch', ARRAY['a', 'b']::text[], delay => '-1 second')$$),
    ('unknown queue', $$SELECT courier.send_batch('st_nope', ARRAY['a', 'b']::text[])$$),
    ('NULL bodies', $$SELECT courier.send_batch('st_batch', NULL::text[])$$),
    ('NULL queue', $$SELECT courier.send_batch(NULL, ARRAY['a']::text[])$$)
  ) AS v(label, stmt);
SELECT queue_name, depth FROM courier.queues
 WHERE queue_name IN ('st_batch', 'st_small') ORDER BY queue_name;

--
-- bad arguments to send
--
SELECT courier.send('st_nope', 'x'::text);
\echo :SQLSTATE
SELECT courier.send('st_main', NULL::text);
\echo :SQLSTATE
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('unknown queue', $$SELECT courier.send('st_nope', 'x'::text)$$),
    ('NULL queue', $$SELECT courier.send(NULL, 'x'::text)$$),
    ('NULL jsonb body', $$SELECT courier.send('st_main', NULL::jsonb)$$),
    ('NULL text body', $$SELECT courier.send('st_main', NULL::text)$$),
    ('NULL bytea body', $$SELECT courier.send('st_main', NULL::bytea)$$)
  ) AS v(label, stmt);

--
-- transactions: a send that rolls back leaves nothing behind
--
SELECT courier.create_queue('st_tx');
BEGIN;
SELECT courier.send('st_tx', 'rolled back'::text) IS NOT NULL AS sent;
SELECT cardinality(courier.send_batch('st_tx', ARRAY['rb1', 'rb2']::text[])) AS n;
SELECT depth FROM courier.queues WHERE queue_name = 'st_tx';
ROLLBACK;
SELECT depth FROM courier.queues WHERE queue_name = 'st_tx';
SELECT count(*) AS received FROM courier.receive('st_tx', 1000);

-- a statement that fails after its send rolls the send back too
SELECT courier.send('st_tx', 'lost'::text) / 0 AS fails;
SELECT depth FROM courier.queues WHERE queue_name = 'st_tx';

-- a transaction that fails after a good send commits nothing
BEGIN;
SELECT courier.send('st_tx', 'first'::text) IS NOT NULL AS sent;
SELECT courier.send('st_tx', repeat('x', 262145));
COMMIT;
SELECT depth FROM courier.queues WHERE queue_name = 'st_tx';

-- savepoints
BEGIN;
SELECT courier.send('st_tx', 'kept'::text) IS NOT NULL AS sent;
SAVEPOINT s1;
SELECT courier.send('st_tx', 'discarded'::text) IS NOT NULL AS sent;
ROLLBACK TO SAVEPOINT s1;
SELECT cardinality(courier.send_batch('st_tx', ARRAY['kept too']::text[])) AS n;
COMMIT;
SELECT body_text FROM courier.receive('st_tx', 1000) ORDER BY msg_id;

--
-- clean up
--
SELECT courier.drop_queue(q)
  FROM unnest(ARRAY['st_main', 'st_other', 'st_attr', 'st_delay', 'st_small', 'st_big',
                    'st_batch', 'st_tx']) AS q;
SELECT count(*) AS left_over FROM courier.queue WHERE queue_name LIKE 'st\_%';
