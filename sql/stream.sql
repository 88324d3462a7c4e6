--
-- stream: streams within one session (issue 7): creation and bounds, append
-- and key partitioning, consumer groups, reading and commit, leases and
-- rebalancing, seek, retention, privileges, bad input.  Out-of-order commits
-- are proven in test/isolation/specs/stream_out_of_order.spec, many
-- producers and consumers in test/t/012_streams.pl.
--
\set VERBOSITY terse
\set SHOW_CONTEXT never

\i sql/include/sqlstate_of.sql

--
-- create_stream: defaults, bounds, names
--
SELECT courier.create_stream('st_main', partitions => 4, retention => '1 minute');
SELECT stream_name, partitions, retention, max_message_size, messages, groups
  FROM courier.streams;
SELECT courier.create_stream('st_main');
SELECT courier.create_stream('st_defaults');
SELECT partitions, retention, max_message_size FROM courier.streams
 WHERE stream_name = 'st_defaults';
-- partitions 1..256, retention 1 minute..90 days, max_message_size 1..1048576
SELECT courier.create_stream('st_bad', partitions => 0);
SELECT courier.create_stream('st_bad', partitions => 257);
SELECT courier.create_stream('st_bad', partitions => NULL);
SELECT courier.create_stream('st_bad', retention => '59 seconds');
SELECT courier.create_stream('st_bad', retention => '91 days');
SELECT courier.create_stream('st_bad', retention => NULL);
SELECT courier.create_stream('st_bad', max_message_size => 0);
SELECT courier.create_stream(NULL);
SELECT courier.create_stream('bad name');
SELECT courier.create_stream('');
SELECT courier.create_stream('st_256', partitions => 256);
SELECT partitions FROM courier.streams WHERE stream_name = 'st_256';
SELECT courier.drop_stream('st_256');
SELECT count(*) AS left_over FROM courier.stream WHERE stream_name IN ('st_bad', 'st_256');

-- unknown streams: 42704 everywhere
SELECT label, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
	('append', $$SELECT courier.append('st_none', 'x'::text)$$),
	('append_batch', $$SELECT courier.append_batch('st_none', ARRAY['x'])$$),
	('create_group', $$SELECT courier.create_group('st_none', 'g')$$),
	('read', $$SELECT * FROM courier.read('st_none', 'g', 'c')$$),
	('commit', $$SELECT courier.commit('st_none', 'g', 'c')$$),
	('seek', $$SELECT courier.seek('st_none', 'g', 'earliest')$$),
	('drop_stream', $$SELECT courier.drop_stream('st_none')$$),
	('drop_group', $$SELECT courier.drop_group('st_none', 'g')$$),
	('grant_stream', $$SELECT courier.grant_stream('st_none', 'public', 'read')$$),
	('has_stream_privilege', $$SELECT courier.has_stream_privilege('st_none', 'read')$$)
  ) AS t(label, stmt);
SELECT courier.append('st_none', 'x'::text);

--
-- append: positions, keys, bodies, attributes
--
SELECT courier.create_group('st_main', 'g_all', 'earliest');
-- positions grow within a transaction, in append order
BEGIN;
SELECT courier.append('st_main', '{"n": 1}'::jsonb, key => 'alice') AS p1 \gset
SELECT courier.append('st_main', 'two'::text, key => 'bob') AS p2 \gset
SELECT courier.append('st_main', '\x0304'::bytea, key => 'carol',
					  attributes => '{"type": "bin", "v": 2, "ok": true}') AS p3 \gset
COMMIT;
SELECT :p2 = :p1 + 1 AS consecutive, :p3 = :p1 + 2 AS consecutive;
-- positions of a later transaction are higher
SELECT courier.append('st_main', 'four'::text, key => 'alice') > :p3 AS higher;
SELECT courier.append_batch('st_main', ARRAY['{"n": 5}', '{"n": 6}']::jsonb[],
							ARRAY['dave', NULL]) IS NOT NULL AS appended;
-- the key decides the partition: FNV-1a-64 of the key's bytes mod partitions, plus 1
-- (alice 4, bob 1, carol 3, dave 4 for 4 partitions); no key: round robin from
-- a start that differs per session (not shown)
SELECT CASE WHEN key IS NOT NULL THEN partition END AS partition, key, body, body_text,
	   body_bytes, attributes
  FROM courier.read('st_main', 'g_all', 'c1', 100)
 ORDER BY position;
-- a keyless batch spreads over all partitions evenly
SELECT courier.create_group('st_main', 'g_spread', 'latest');
SELECT cardinality(courier.append_batch('st_main', array_fill('x'::text, ARRAY[40])));
SELECT partition, count(*) FROM courier.read('st_main', 'g_spread', 'c1', 100)
 GROUP BY partition ORDER BY partition;

-- bad input: nothing is appended
SELECT courier.create_group('st_main', 'g_bad', 'latest');
SELECT courier.append('st_main', NULL::text);
SELECT courier.append('st_main', 1);
SELECT courier.append('st_main', 'x'::text, attributes => '[1]');
SELECT courier.append('st_main', 'x'::text, attributes => '{"a": {"b": 1}}');
SELECT courier.append('st_main', 'x'::text, attributes => '{"a": null}');
SELECT courier.append('st_main', 'x'::text,
	attributes => (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 11) i));
SELECT courier.create_stream('st_small', max_message_size => 4);
SELECT courier.append('st_small', 'abcd'::text) > 0 AS fits;
SELECT courier.append('st_small', 'abcde'::text);
SELECT courier.append_batch('st_small', ARRAY['a', 'abcde']);
SELECT courier.append_batch('st_main', ARRAY['a', NULL]);
SELECT courier.append_batch('st_main', ARRAY['a', 'b'], ARRAY['k']);
SELECT courier.append_batch('st_main', ARRAY['a'], attributes => ARRAY['{"a": 1}', '{}']::jsonb[]);
SELECT courier.append_batch('st_main', ARRAY[['a'], ['b']]);
SELECT courier.append_batch('st_main', NULL::text[]);
SELECT courier.append_batch('st_main', ARRAY[]::text[]);
SELECT count(*) AS appended FROM courier.read('st_main', 'g_bad', 'c1');

--
-- groups: each sees every message; groups are independent
--
SELECT courier.create_group('st_main', 'g_all', 'earliest');
SELECT courier.create_group('st_main', 'bad group');
SELECT courier.create_group('st_main', 'g_x', 'yesterday');
SELECT courier.create_group('st_main', 'g_x', NULL::text);
SELECT courier.create_group('st_main', 'g_x', -1::bigint);
SELECT courier.create_group('st_main', 'g_two', 'earliest');
SELECT count(*) AS all_messages FROM courier.read('st_main', 'g_two', 'c1', 1000);
SELECT count(*) AS again FROM courier.read('st_main', 'g_two', 'c1', 1000);
SELECT count(*) AS g_all_new FROM courier.read('st_main', 'g_all', 'c1', 1000);

-- read: bad input
SELECT * FROM courier.read('st_main', 'g_none', 'c1');
SELECT * FROM courier.read('st_main', 'g_all', NULL);
SELECT * FROM courier.read('st_main', 'g_all', '');
SELECT * FROM courier.read('st_main', NULL, 'c1');
SELECT * FROM courier.read('st_main', 'g_all', 'c1', 0);
SELECT * FROM courier.read('st_main', 'g_all', 'c1', 10001);
SELECT * FROM courier.read('st_main', 'g_all', 'c1', NULL);
SELECT * FROM courier.read('st_main', 'g_all', 'c1', lease => '-1 second');
SELECT * FROM courier.read('st_main', 'g_all', 'c1', lease => '61 minutes');
SELECT * FROM courier.read('st_main', 'g_all', 'c1', lease => NULL);
SELECT * FROM courier.read('st_main', 'g_all', 'c1', lease => '5 seconds', wait => '5 seconds');
SELECT * FROM courier.read('st_main', 'g_all', 'c1', wait => '21 seconds');
SELECT courier.read('st_main', 'g_all', 'c1');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM courier.read('st_main', 'g_all', 'c1');
ROLLBACK;
-- a wait that ends returns nothing
SELECT count(*) FROM courier.read('st_main', 'g_all', 'c1', wait => '100 milliseconds');

--
-- commit on next read, explicit commit, rollback
--
SELECT courier.create_stream('st_c', partitions => 2);
SELECT courier.create_group('st_c', 'g', 'earliest');
SELECT courier.append_batch('st_c', ARRAY['m1', 'm2', 'm3', 'm4'], ARRAY['bob', 'bob', 'bob', 'bob'])
	IS NOT NULL AS appended;
CREATE FUNCTION pg_temp.cursors(s text, g text)
RETURNS TABLE (part integer, committed boolean, holder text, lost bigint)
LANGUAGE sql AS $$
	SELECT c.part, c.committed_pos = c.delivered_pos AND c.committed_pending = c.delivered_pending,
		   c.holder, c.lost
	  FROM courier.stream_cursor c
	  JOIN courier.stream_group sg USING (group_id)
	  JOIN courier.stream st USING (stream_id)
	 WHERE st.stream_name = s AND sg.group_name = g ORDER BY c.part
$$;
SELECT body_text FROM courier.read('st_c', 'g', 'c1', 2);
SELECT * FROM pg_temp.cursors('st_c', 'g');
-- the next read commits what the previous one returned
SELECT body_text FROM courier.read('st_c', 'g', 'c1', 1);
SELECT * FROM pg_temp.cursors('st_c', 'g');
SELECT courier.commit('st_c', 'g', 'c1') AS moved;
SELECT courier.commit('st_c', 'g', 'c1') AS moved;
SELECT * FROM pg_temp.cursors('st_c', 'g');
-- a read rolled back did not happen
BEGIN;
SELECT body_text FROM courier.read('st_c', 'g', 'c1', 1);
ROLLBACK;
SELECT body_text FROM courier.read('st_c', 'g', 'c1', 1);
-- a consumer that holds nothing cannot commit
SELECT courier.commit('st_c', 'g', 'c_never');

--
-- leases: taken over only after they end; a stale consumer cannot commit
--
SELECT courier.create_stream('st_l', partitions => 2);
SELECT courier.create_group('st_l', 'g', 'earliest');
-- bob goes to partition 1, alice to 2
SELECT courier.append_batch('st_l', ARRAY['b1', 'b2'], ARRAY['bob', 'alice']) IS NOT NULL AS appended;
-- c1 holds both partitions for an hour: c2 joins, its fair share is 1,
-- but nothing is free until c1 reads again and gives one up
SELECT partition, body_text FROM courier.read('st_l', 'g', 'c1', 10, '1 hour') ORDER BY partition;
SELECT count(*) AS c2_got FROM courier.read('st_l', 'g', 'c2', 10, '1 hour');
SELECT * FROM pg_temp.cursors('st_l', 'g');
-- c1 reads again: commits, gives partition 2 up; c2 takes it, reads nothing new
SELECT count(*) AS c1_got FROM courier.read('st_l', 'g', 'c1', 10, '1 hour');
SELECT count(*) AS c2_got FROM courier.read('st_l', 'g', 'c2', 10, '1 hour');
SELECT * FROM pg_temp.cursors('st_l', 'g');
-- c1 reads a new message of partition 1 with a lease that ends at once;
-- c3 takes partition 1 over and reads the message again (at-least-once)
SELECT courier.append('st_l', 'b3'::text, key => 'bob') > 0 AS appended;
SELECT body_text FROM courier.read('st_l', 'g', 'c1', 10, '0');
SELECT body_text FROM courier.read('st_l', 'g', 'c3', 10, '1 hour');
SELECT * FROM pg_temp.cursors('st_l', 'g');
-- c1 is stale now: its commit is refused, and cannot move c3's position
SELECT courier.commit('st_l', 'g', 'c1');
SELECT courier.commit('st_l', 'g', 'c3') AS moved;
SELECT * FROM pg_temp.cursors('st_l', 'g');

--
-- seek: earliest, latest, a position, a time; one partition
--
SELECT courier.create_stream('st_s', partitions => 2);
SELECT courier.create_group('st_s', 'g', 'earliest');
SELECT courier.append('st_s', 's1'::text, key => 'bob') AS s1 \gset
SELECT courier.append('st_s', 's2'::text, key => 'bob') AS s2 \gset
SELECT clock_timestamp() AS t3 \gset
SELECT courier.append('st_s', 's3'::text, key => 'alice') AS s3 \gset
SELECT body_text FROM courier.read('st_s', 'g', 'c1') ORDER BY position;
SELECT courier.seek('st_s', 'g', 'earliest');
SELECT body_text FROM courier.read('st_s', 'g', 'c1') ORDER BY position;
SELECT courier.seek('st_s', 'g', :s2);
SELECT body_text FROM courier.read('st_s', 'g', 'c1') ORDER BY position;
SELECT courier.seek('st_s', 'g', :'t3'::timestamptz);
SELECT body_text FROM courier.read('st_s', 'g', 'c1') ORDER BY position;
-- partition 1 only: bob's
SELECT courier.seek('st_s', 'g', 'earliest', partition => 1);
SELECT body_text FROM courier.read('st_s', 'g', 'c1') ORDER BY position;
SELECT courier.seek('st_s', 'g', 'latest');
SELECT courier.append('st_s', 's4'::text, key => 'bob') > 0 AS appended;
SELECT body_text FROM courier.read('st_s', 'g', 'c1') ORDER BY position;
-- a new group may start at a position or a time
SELECT courier.create_group('st_s', 'g_pos', :s2);
SELECT body_text FROM courier.read('st_s', 'g_pos', 'c1') ORDER BY position;
SELECT courier.create_group('st_s', 'g_time', :'t3'::timestamptz);
SELECT body_text FROM courier.read('st_s', 'g_time', 'c1') ORDER BY position;
-- a position no transaction of this cluster has reached (as after a restore into
-- another cluster): read refuses rather than skip what comes
SELECT courier.seek('st_s', 'g', 4611686018427387904);
SELECT * FROM courier.read('st_s', 'g', 'c1');
SELECT courier.seek('st_s', 'g', 'latest');
SELECT count(*) FROM courier.read('st_s', 'g', 'c1');
-- bad input
SELECT courier.seek('st_s', 'g', 'newest');
SELECT courier.seek('st_s', 'g', NULL::text);
SELECT courier.seek('st_s', 'g', -5::bigint);
SELECT courier.seek('st_s', 'g', 'earliest', partition => 0);
SELECT courier.seek('st_s', 'g', 'earliest', partition => 3);
SELECT courier.seek('st_s', 'g_none', 'earliest');

--
-- retention: maintain empties whole slots; a group behind resumes at the
-- oldest retained message and the view counts what it lost
--
SELECT courier.create_stream('st_r', partitions => 2, retention => '1 minute');
SELECT courier.create_group('st_r', 'g_behind', 'earliest');
SELECT courier.create_group('st_r', 'g_done', 'earliest');
SELECT courier.append_batch('st_r', ARRAY['r1', 'r2', 'r3', 'r4'], ARRAY['bob', 'bob', 'carol', 'carol'])
	IS NOT NULL AS appended;
SELECT count(*) FROM courier.read('st_r', 'g_done', 'c1');
SELECT courier.commit('st_r', 'g_done', 'c1') AS moved;
SELECT body_text FROM courier.read('st_r', 'g_behind', 'c1', 1);
SELECT courier.commit('st_r', 'g_behind', 'c1') AS moved;
SELECT group_name, lag, lost FROM courier.stream_groups WHERE stream_name = 'st_r' ORDER BY 1;
-- now is too early: nothing to empty yet that holds data
SELECT messages FROM courier.streams WHERE stream_name = 'st_r';
-- as time passes (one segment = 15 s), each segment's maintain empties the next slot;
-- after a full round of six, everything appended now has gone
SELECT sum(courier._maintain_streams(clock_timestamp() + k * interval '15 seconds')) > 0 AS emptied
  FROM generate_series(1, 7) k;
SELECT messages FROM courier.streams WHERE stream_name = 'st_r';
SELECT group_name, lag, lost FROM courier.stream_groups WHERE stream_name = 'st_r' ORDER BY 1;
-- a slot is emptied once per round
SELECT courier._maintain_streams(clock_timestamp() + interval '105 seconds') AS emptied_again;
-- the group behind goes on with what comes next
SELECT courier.append('st_r', 'r5'::text, key => 'bob') > 0 AS appended;
SELECT body_text FROM courier.read('st_r', 'g_behind', 'c1');
-- maintain() includes streams
SELECT courier.maintain() >= 0 AS ran;

--
-- privileges: append, read, admin per role
--
CREATE ROLE regress_st_admin;
CREATE ROLE regress_st_app;
CREATE ROLE regress_st_reader;
GRANT USAGE ON SCHEMA courier TO regress_st_admin;
GRANT EXECUTE ON FUNCTION courier.create_stream(text, integer, interval, integer) TO regress_st_admin;
SET ROLE regress_st_admin;
SELECT courier.create_stream('st_p', partitions => 2);
SELECT courier.has_stream_privilege('st_p', 'admin') AS admin;
SELECT courier.grant_stream('st_p', 'regress_st_app', 'append');
SELECT courier.grant_stream('st_p', 'regress_st_reader', 'read');
SELECT courier.grant_stream('st_p', 'regress_st_reader', 'owner');
SELECT courier.create_group('st_p', 'g', 'earliest');
-- another stream it holds nothing on
SELECT courier.append('st_main', 'x'::text);
SELECT courier.drop_stream('st_main');
SET ROLE regress_st_app;
SELECT courier.append('st_p', 'p1'::text, key => 'k') > 0 AS appended;
SELECT courier.has_stream_privilege('st_p', 'read') AS can_read;
SELECT * FROM courier.read('st_p', 'g', 'c1');
SELECT stream_name, messages FROM courier.streams;
SET ROLE regress_st_reader;
SELECT courier.append('st_p', 'p2'::text);
SELECT body_text FROM courier.read('st_p', 'g', 'c1');
SELECT courier.commit('st_p', 'g', 'c1') AS moved;
SELECT courier.seek('st_p', 'g', 'earliest');
SELECT courier.create_group('st_p', 'g_reader', 'earliest');
SELECT courier.drop_group('st_p', 'g_reader');
SELECT courier.grant_stream('st_p', 'regress_st_reader', 'admin');
SELECT courier.drop_stream('st_p');
-- tables are not reachable directly
SELECT count(*) FROM courier.stream_cursor;
RESET ROLE;
SELECT format('courier.s_%s', stream_id) AS st_p_table FROM courier.stream
 WHERE stream_name = 'st_p' \gset
SET ROLE regress_st_reader;
SELECT pg_temp.sqlstate_of(format('SELECT count(*) FROM %s', :'st_p_table')) AS select_data;
SELECT pg_temp.sqlstate_of(format('SELECT count(*) FROM %s_0', :'st_p_table')) AS select_slot;
SET ROLE regress_st_app;
SELECT pg_temp.sqlstate_of(format('INSERT INTO %s (slot, part, position, appended_at)'
								  ' VALUES (0, 1, 1, now())', :'st_p_table')) AS insert_data;
RESET ROLE;
SELECT courier.revoke_stream('st_p', 'regress_st_reader', 'read');
SELECT courier.revoke_stream('st_p', 'regress_st_reader', 'nope');
SET ROLE regress_st_reader;
SELECT * FROM courier.read('st_p', 'g', 'c1');
SELECT stream_name FROM courier.streams;
SET ROLE regress_st_admin;
SELECT courier.drop_group('st_p', 'g');
SELECT courier.drop_stream('st_p');
RESET ROLE;

--
-- drop_stream removes everything
--
SELECT courier.drop_stream(s) FROM unnest(ARRAY['st_main', 'st_defaults', 'st_small', 'st_c', 'st_l',
											  'st_s', 'st_r']) s;
SELECT (SELECT count(*) FROM courier.stream) AS streams,
	   (SELECT count(*) FROM courier.stream_group) AS groups,
	   (SELECT count(*) FROM courier.stream_cursor) AS cursors,
	   (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = 'courier' AND c.relname ~ '^s_[0-9]') AS tables;
DROP OWNED BY regress_st_admin, regress_st_app, regress_st_reader;
DROP ROLE regress_st_admin, regress_st_app, regress_st_reader;
