--
-- topic: create/drop topics, subscribe/unsubscribe, publish with fan-out in the
-- publishing transaction, raw and enveloped delivery, attributes, subscriber
-- isolation, drop_queue/drop_topic and subscriptions, topic privileges
--
\set VERBOSITY terse
\set SHOW_CONTEXT never

\i sql/include/sqlstate_of.sql

SELECT courier.create_topic('bookings');
SELECT courier.create_topic('bookings');
SELECT courier.create_topic('bad name!');
SELECT courier.create_topic(NULL);
SELECT courier.create_queue('t_email');
SELECT courier.create_queue('t_finance');
SELECT courier.create_queue('t_partner');
SELECT courier.create_queue('t_audit');

-- email: bookings only (envelope); finance: amounts over 100 (raw);
-- partner: body scope, country DE (envelope); audit: everything (raw)
SELECT courier.subscribe('bookings', 't_email', '{"event": ["booking.created"]}') AS email \gset
SELECT courier.subscribe('bookings', 't_finance', '{"amount": [{"numeric": [">", 100]}]}',
                         raw => true) AS finance \gset
SELECT courier.subscribe('bookings', 't_partner', '{"guest": {"country": ["DE"]}}',
                         filter_scope => 'body') AS partner \gset
SELECT courier.subscribe('bookings', 't_audit', raw => true) AS audit \gset

-- subscribing again with the same settings returns the same id; other settings are refused
SELECT courier.subscribe('bookings', 't_email', '{"event": ["booking.created"]}') = :email AS same_id;
SELECT courier.subscribe('bookings', 't_email', '{"event": ["booking.cancelled"]}');
SELECT courier.subscribe('bookings', 't_nowhere');
SELECT courier.subscribe('nowhere', 't_email');
SELECT courier.unsubscribe(-1);
SELECT courier.unsubscribe(NULL);

SELECT topic_name, subscriptions FROM courier.topics;
SELECT topic_name, queue_name, filter_policy, filter_scope, raw
  FROM courier.subscriptions ORDER BY subscription_id;

-- Depth of each subscriber queue.
CREATE FUNCTION pg_temp.depths() RETURNS TABLE (queue_name text, depth bigint)
LANGUAGE sql AS $$
  SELECT queue_name, depth FROM courier.queues WHERE queue_name LIKE 't\_%' ORDER BY queue_name
$$;

--
-- rollback delivers nothing anywhere
--
BEGIN;
SELECT courier.publish('bookings', '{"guest": {"country": "DE"}}'::jsonb,
                       '{"event": "booking.created", "amount": 250}') > 0 AS published;
SELECT * FROM pg_temp.depths();
ROLLBACK;
SELECT * FROM pg_temp.depths();

--
-- commit delivers to exactly the matching subscribers, once each
--
BEGIN;
SELECT courier.publish('bookings', '{"guest": {"country": "DE"}, "nights": 3}'::jsonb,
                       '{"event": "booking.created", "amount": 250}') AS pub1 \gset
SELECT courier.publish('bookings', '{"guest": {"country": "FR"}}'::jsonb,
                       '{"event": "booking.cancelled", "amount": 50}') AS pub2 \gset
COMMIT;
SELECT :pub2 > :pub1 AS ids_increase;
SELECT * FROM pg_temp.depths();

-- what each subscriber got: envelopes for email and partner, the body as published for
-- the raw ones; every delivery carries courier.publish_id and courier.topic
SELECT (attributes->>'courier.publish_id')::bigint = :pub1 AS pub1,
       attributes - 'courier.publish_id' AS attributes,
       body - 'published_at' - 'publish_id' AS envelope,
       (body->>'publish_id')::bigint = :pub1 AS envelope_id,
       (body->>'published_at')::timestamptz <= now() AS published_at
  FROM courier.receive('t_email', 10);
SELECT (attributes->>'courier.publish_id')::bigint = :pub1 AS pub1, body
  FROM courier.receive('t_finance', 10);
SELECT (attributes->>'courier.publish_id')::bigint = :pub1 AS pub1,
       body->'body' AS body, body->'attributes' AS published_attributes
  FROM courier.receive('t_partner', 10);
SELECT (attributes->>'courier.publish_id')::bigint IN (:pub1, :pub2) AS pub, body
  FROM courier.receive('t_audit', 10) ORDER BY msg_id;

--
-- text and bytea bodies: as published when raw, a JSON string (text) or
-- base64 string (bytea) in the envelope
--
SELECT courier.publish('bookings', 'plain text'::text, '{"event": "booking.created", "amount": 1000}') > 0;
SELECT courier.publish('bookings', '\x00ff10'::bytea, '{"event": "booking.created"}') > 0;
SELECT body->>'body' AS body, body->>'body_type' AS body_type, body_text, body_bytes
  FROM courier.receive('t_email', 10) ORDER BY msg_id;
SELECT body, body_text, body_bytes FROM courier.receive('t_finance', 10);
SELECT body, body_text, body_bytes FROM courier.receive('t_audit', 10) ORDER BY msg_id;
-- a text body never matches a body-scope policy
SELECT depth FROM courier.queues WHERE queue_name = 't_partner';
-- a scalar jsonb body is enveloped as that scalar
SELECT courier.publish('bookings', '"just a string"'::jsonb, '{"event": "booking.created"}') > 0;
SELECT body->'body' AS body, body->>'body_type' AS body_type FROM courier.receive('t_email', 10);

--
-- published attributes: at most 8, none named courier.*, scalar values;
-- checked even when no subscriber matches
--
SELECT courier.publish('bookings', '{}'::jsonb,
  '{"a1": 1, "a2": 2, "a3": 3, "a4": 4, "a5": 5, "a6": 6, "a7": 7, "a8": 8, "a9": 9}');
SELECT courier.publish('bookings', '{}'::jsonb, '{"courier.topic": "forged"}');
SELECT courier.publish('bookings', '{}'::jsonb, '{"x": {"nested": 1}}');
SELECT courier.publish('bookings', '{}'::jsonb, '[1]');
SELECT courier.publish('bookings', NULL::jsonb);
SELECT courier.publish(NULL, '{}'::jsonb);
SELECT courier.publish('nowhere', '{}'::jsonb);
-- a body larger than one subscriber queue's limit fails the whole publish
SELECT courier.alter_queue('t_audit', max_message_size => 10);
SELECT courier.publish('bookings', 'more than ten bytes'::text, '{"event": "booking.created"}');
SELECT courier.alter_queue('t_audit', max_message_size => 262144);
SELECT * FROM pg_temp.depths();

--
-- subscribers are isolated: a backlog, messages in flight, or a purge of one
-- subscriber queue changes nothing for the others
--
SELECT count(*) FROM (SELECT courier.publish('bookings', '{}'::jsonb,
                                             '{"event": "booking.created", "amount": 500}')
                        FROM generate_series(1, 50)) p;
SELECT count(*) AS leased FROM courier.receive('t_audit', 20, '1 hour');
SELECT courier.purge_queue('t_email');
SELECT courier.publish('bookings', '{}'::jsonb, '{"event": "booking.created", "amount": 500}') > 0;
SELECT * FROM pg_temp.depths();

--
-- alter_subscription: a new policy, scope or delivery applies to the next
-- publish; the policy that results must be valid for the scope that results
--
SELECT courier.alter_subscription(:email, filter => '{"event": ["booking.cancelled"]}');
SELECT courier.publish('bookings', '{}'::jsonb, '{"event": "booking.cancelled", "amount": 5}') > 0;
SELECT courier.alter_subscription(:partner, filter_scope => 'attributes');
SELECT courier.alter_subscription(:partner, filter => '{"country": ["DE"]}',
                                  filter_scope => 'attributes', raw => true);
SELECT courier.publish('bookings', 'to partner'::text, '{"country": "DE"}') > 0;
SELECT body, body_text FROM courier.receive('t_partner', 10) ORDER BY msg_id;
SELECT courier.alter_subscription(:email, filter => '{"event": [{"prefix": 1}]}');
SELECT courier.alter_subscription(:email, filter_scope => 'payload');
SELECT courier.alter_subscription(-1, raw => true);
SELECT courier.alter_subscription(NULL);
SELECT queue_name, filter_policy, filter_scope, raw FROM courier.subscriptions
 ORDER BY subscription_id;
SELECT * FROM pg_temp.depths();
SELECT courier.alter_subscription(:email, filter => '{"event": ["booking.created"]}');
-- subscribing with the settings it now has returns the same subscription
SELECT courier.subscribe('bookings', 't_email', '{"event": ["booking.created"]}') = :email AS same_id;

--
-- unsubscribe: later publishes skip that queue, even in the same transaction
--
BEGIN;
SELECT courier.unsubscribe(:finance);
SELECT courier.publish('bookings', '{}'::jsonb, '{"event": "booking.created", "amount": 500}') > 0;
SELECT * FROM pg_temp.depths();
COMMIT;
SELECT courier.unsubscribe(:finance);

--
-- dropping a queue drops its subscriptions (with a NOTICE); dropping a topic
-- drops its subscriptions and leaves delivered messages where they are
--
SELECT courier.drop_queue('t_partner');
SELECT queue_name FROM courier.subscriptions ORDER BY subscription_id;
SELECT courier.drop_topic('bookings');
SELECT count(*) AS subscriptions FROM courier.subscriptions;
SELECT count(*) AS topics FROM courier.topics;
SELECT * FROM pg_temp.depths();
SELECT courier.publish('bookings', '{}'::jsonb);
SELECT courier.drop_topic('bookings');

--
-- FIFO topics: FIFO queues only, group_id required and passed on, dedup_id
-- applied by each subscriber queue; standard topics take standard queues only
--
SELECT courier.create_topic('f_orders', fifo => true);
SELECT courier.create_topic('f_null', fifo => NULL);
SELECT courier.create_queue('f_raw', fifo => true);
SELECT courier.create_queue('f_env', fifo => true, content_dedup => true);
SELECT courier.create_queue('f_standard');
SELECT courier.subscribe('f_orders', 'f_raw', raw => true);
SELECT courier.subscribe('f_orders', 'f_env', '{"kind": ["order"]}');
SELECT courier.subscribe('f_orders', 'f_standard');
SELECT courier.create_topic('f_plain');
SELECT courier.subscribe('f_plain', 'f_raw');
SELECT topic_name, fifo, subscriptions FROM courier.topics ORDER BY topic_name;

SELECT courier.publish('f_orders', 'no group'::text);
SELECT courier.publish('f_orders', 'bad group'::text, group_id => '');
SELECT courier.publish('f_orders', 'bad dedup'::text, group_id => 'g', dedup_id => repeat('x', 129));
SELECT courier.publish('f_plain', 'dedup on standard'::text, dedup_id => 'd1');
-- a standard topic passes group_id on like send does (no ordering effect)
SELECT courier.publish('f_plain', 'grouped'::text, group_id => 'g') > 0 AS published;

-- two groups interleaved: in each queue, the ids of a group follow publish order
SELECT count(courier.publish('f_orders', format('%s-%s', g, n), '{"kind": "order"}', group_id => g))
  FROM (VALUES ('g1', 1), ('g2', 1), ('g1', 2), ('g2', 2), ('g1', 3)) AS v(g, n);
-- a duplicate dedup_id adds nothing; the same body without dedup_id adds to f_raw
-- (no content_dedup) but not to f_env (content_dedup, by the published body)
SELECT courier.publish('f_orders', 'once'::text, '{"kind": "order"}', group_id => 'g3',
                       dedup_id => 'd-1') > 0 AS first,
       courier.publish('f_orders', 'once'::text, '{"kind": "order"}', group_id => 'g3',
                       dedup_id => 'd-1') > 0 AS duplicate;
SELECT courier.publish('f_orders', 'same body'::text, '{"kind": "order"}', group_id => 'g4') > 0 AS first,
       courier.publish('f_orders', 'same body'::text, '{"kind": "order"}', group_id => 'g4') > 0 AS again;
SELECT group_id, body_text FROM courier.receive('f_raw', 20) ORDER BY group_id, msg_id;
SELECT group_id, body->>'body' AS body FROM courier.receive('f_env', 20) ORDER BY group_id, msg_id;
SELECT courier.drop_topic('f_orders');
SELECT courier.drop_topic('f_plain');
SELECT courier.drop_queue('f_raw');
SELECT courier.drop_queue('f_env');
SELECT courier.drop_queue('f_standard');

--
-- privileges: publish, subscribe, admin per topic; subscribe also needs send
-- on the queue; publishing does not look at the subscriber queues' grants
--
CREATE ROLE regress_topic_publisher;
CREATE ROLE regress_topic_subscriber;
CREATE ROLE regress_topic_admin;
CREATE ROLE regress_topic_nobody;
CREATE ROLE regress_topic_creator;
SELECT courier.create_topic('pt_orders');
SELECT courier.create_queue('pt_q1');
SELECT courier.create_queue('pt_q2');
SELECT courier.subscribe('pt_orders', 'pt_q1') AS pt_sub1 \gset

SET ROLE regress_topic_nobody;
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('create_topic', $$SELECT courier.create_topic('pt_mine')$$),
    ('drop_topic', $$SELECT courier.drop_topic('pt_orders')$$),
    ('publish', $$SELECT courier.publish('pt_orders', '{}'::jsonb)$$),
    ('subscribe', $$SELECT courier.subscribe('pt_orders', 'pt_q2')$$),
    ('unsubscribe', $$SELECT courier.unsubscribe($$ || :pt_sub1 || $$)$$),
    ('grant_topic', $$SELECT courier.grant_topic('pt_orders', 'regress_topic_nobody', 'admin')$$),
    ('has_topic_privilege', $$SELECT courier.has_topic_privilege('pt_orders', 'publish')$$),
    ('topics', $$SELECT * FROM courier.topics$$)
  ) AS v(label, stmt);
RESET ROLE;

SELECT courier.grant_topic('pt_orders', 'regress_topic_publisher', 'publish');
SELECT courier.grant_topic('pt_orders', 'regress_topic_subscriber', 'subscribe');
SELECT courier.grant_topic('pt_orders', 'regress_topic_admin', 'admin');
SELECT courier.grant_topic('pt_orders', 'regress_topic_nobody', 'read');
SELECT courier.grant_topic('pt_orders', 'regress_topic_nobody', NULL);
SELECT courier.revoke_topic('pt_orders', 'regress_topic_nobody', 'read');

-- the publisher publishes; it holds no privilege on pt_q1, which still gets the message
SET ROLE regress_topic_publisher;
SELECT courier.has_topic_privilege('pt_orders', 'publish') AS publish,
       courier.has_topic_privilege('pt_orders', 'subscribe') AS subscribe,
       courier.has_topic_privilege('pt_orders', 'admin') AS admin;
SELECT courier.has_topic_privilege('pt_orders', 'read');
SELECT courier.publish('pt_orders', 'hello'::text) > 0 AS published;
SELECT pg_temp.sqlstate_of($$SELECT courier.subscribe('pt_orders', 'pt_q2')$$) AS subscribe;
SELECT pg_temp.sqlstate_of($$SELECT courier.send('pt_q1', 'x'::text)$$) AS send_to_subscriber_queue;
-- the topic catalog itself stays closed: only the views show it
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
    ('select subscription', $$SELECT * FROM courier.subscription$$),
    ('insert subscription', $$INSERT INTO courier.subscription (topic_id, queue_id) VALUES (1, 1)$$),
    ('select topic_grant', $$SELECT * FROM courier.topic_grant$$),
    ('_subscribe', $$SELECT courier._subscribe(1, 1, NULL, 'attributes', true)$$)
  ) AS v(label, stmt);
SELECT topic_name FROM courier.topics;
SELECT count(*) AS visible_subscriptions FROM courier.subscriptions;
RESET ROLE;
SELECT depth FROM courier.queues WHERE queue_name = 'pt_q1';

-- the subscriber needs send on the queue it subscribes
SET ROLE regress_topic_subscriber;
SELECT courier.subscribe('pt_orders', 'pt_q2');
SELECT pg_temp.sqlstate_of($$SELECT courier.publish('pt_orders', '{}'::jsonb)$$) AS publish;
RESET ROLE;
SELECT courier.grant('pt_q2', 'regress_topic_subscriber', 'send');
SET ROLE regress_topic_subscriber;
SELECT courier.subscribe('pt_orders', 'pt_q2') AS pt_sub2 \gset
SELECT queue_name FROM courier.subscriptions ORDER BY subscription_id;
-- it may change or remove its own subscription, not one into a queue it cannot send to
SELECT courier.alter_subscription(:pt_sub1, raw => true);
SELECT courier.alter_subscription(:pt_sub2, raw => true);
SELECT courier.unsubscribe(:pt_sub1);
SELECT courier.unsubscribe(:pt_sub2);
RESET ROLE;

-- the admin may do everything on the topic, including removing any subscription
SET ROLE regress_topic_admin;
SELECT courier.subscribe('pt_orders', 'pt_q1');
SELECT courier.unsubscribe(:pt_sub1);
SELECT courier.grant_topic('pt_orders', 'regress_topic_nobody', 'publish');
SELECT courier.revoke_topic('pt_orders', 'regress_topic_nobody');
SELECT courier.revoke_topic('pt_orders', 'regress_topic_publisher', 'publish');
RESET ROLE;
SET ROLE regress_topic_publisher;
SELECT courier.publish('pt_orders', 'hello'::text);
RESET ROLE;

-- a role allowed to create topics becomes admin of those it creates
GRANT EXECUTE ON FUNCTION courier.create_topic(text, boolean) TO regress_topic_creator;
GRANT USAGE ON SCHEMA courier TO regress_topic_creator;
SET ROLE regress_topic_creator;
SELECT courier.create_topic('pt_mine');
SELECT courier.has_topic_privilege('pt_mine', 'admin');
SELECT courier.publish('pt_mine', 'mine'::text) > 0 AS published;
SELECT courier.drop_topic('pt_mine');
RESET ROLE;

SELECT courier.drop_topic('pt_orders');
SELECT courier.drop_queue('pt_q1');
SELECT courier.drop_queue('pt_q2');
SELECT courier.drop_queue('t_email');
SELECT courier.drop_queue('t_finance');
SELECT courier.drop_queue('t_audit');
REVOKE ALL ON FUNCTION courier.create_topic(text, boolean) FROM regress_topic_creator;
REVOKE ALL ON SCHEMA courier FROM regress_topic_publisher, regress_topic_subscriber,
  regress_topic_admin, regress_topic_nobody, regress_topic_creator;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA courier FROM regress_topic_publisher,
  regress_topic_subscriber, regress_topic_admin, regress_topic_nobody, regress_topic_creator;
REVOKE ALL ON ALL TABLES IN SCHEMA courier FROM regress_topic_publisher,
  regress_topic_subscriber, regress_topic_admin, regress_topic_nobody, regress_topic_creator;
DROP ROLE regress_topic_publisher, regress_topic_subscriber, regress_topic_admin,
  regress_topic_nobody, regress_topic_creator;
