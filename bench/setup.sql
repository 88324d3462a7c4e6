-- bench/setup.sql: helpers for bench/run (loaded after CREATE EXTENSION pg_courier, pgq).
-- Everything lives in schema bench; the runner calls these between pgbench runs, never during one.

CREATE SCHEMA bench;

-- reset_plain(tbl): a fresh baseline table with the columns of courier's message table
-- (courier.q_<id>): bigint identity primary key, sent_at, visible_at, body jsonb, body_text,
-- body_bytes, attributes.  Default storage parameters: what a user would write by hand.
CREATE PROCEDURE bench.reset_plain(tbl text) LANGUAGE plpgsql AS $$
BEGIN
	IF to_regclass(format('bench.%I', tbl)) IS NOT NULL THEN
		EXECUTE format('DROP TABLE bench.%I', tbl);
	END IF;
	EXECUTE format($ddl$
		CREATE TABLE bench.%I (
			msg_id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			sent_at		timestamptz NOT NULL DEFAULT now(),
			visible_at	timestamptz NOT NULL DEFAULT now(),
			body		jsonb,
			body_text	text,
			body_bytes	bytea,
			attributes	jsonb
		)$ddl$, tbl);
END $$;

-- reset_queue(q): drop the courier queue q if it exists, create it again with default settings.
CREATE PROCEDURE bench.reset_queue(q text) LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM courier.queue WHERE queue_name = q) THEN
		PERFORM courier.drop_queue(q);
	END IF;
	PERFORM courier.create_queue(q);
END $$;

-- queue_rels(q): courier's storage tables for queue q ('q' = messages, 'l' = leases).
CREATE FUNCTION bench.queue_rels(q text, OUT kind text, OUT rel regclass)
RETURNS SETOF record LANGUAGE sql STABLE AS $$
	SELECT left(c.relname, 1), c.oid::regclass
	  FROM courier.queue qq
	  JOIN pg_class c ON c.relnamespace = 'courier'::regnamespace
					 AND c.relkind IN ('r', 'p')
					 AND c.relname ~ ('^[ql]_' || qq.queue_id || '($|_)')
	 WHERE qq.queue_name = q
	 ORDER BY 1, 2
$$;

-- queue_stats(q): one line of the mixed-run report.
CREATE FUNCTION bench.queue_stats(q text, OUT depth bigint, OUT q_dead bigint, OUT l_dead bigint,
								  OUT q_live bigint, OUT l_live bigint, OUT q_bytes bigint,
								  OUT l_bytes bigint, OUT autovacuums bigint)
LANGUAGE sql STABLE AS $$
	SELECT (SELECT depth FROM courier.queues WHERE queue_name = q),
		   coalesce(sum(s.n_dead_tup) FILTER (WHERE r.kind = 'q'), 0),
		   coalesce(sum(s.n_dead_tup) FILTER (WHERE r.kind = 'l'), 0),
		   coalesce(sum(s.n_live_tup) FILTER (WHERE r.kind = 'q'), 0),
		   coalesce(sum(s.n_live_tup) FILTER (WHERE r.kind = 'l'), 0),
		   coalesce(sum(pg_total_relation_size(r.rel)) FILTER (WHERE r.kind = 'q'), 0),
		   coalesce(sum(pg_total_relation_size(r.rel)) FILTER (WHERE r.kind = 'l'), 0),
		   coalesce(sum(s.autovacuum_count), 0)
	  FROM bench.queue_rels(q) r
	  LEFT JOIN pg_stat_user_tables s ON s.relid = r.rel
$$;

-- fill_courier(q, n, body): pre-fill through the public API, courier.send_batch of `chunk`.
CREATE PROCEDURE bench.fill_courier(q text, n bigint, body jsonb, chunk integer DEFAULT 1000)
LANGUAGE plpgsql AS $$
DECLARE
	done bigint := 0;
	k integer;
BEGIN
	WHILE done < n LOOP
		k := least(chunk, n - done);
		PERFORM courier.send_batch(q, array_fill(body, ARRAY[k]));
		done := done + k;
		IF done % 100000 = 0 THEN
			COMMIT;
		END IF;
	END LOOP;
END $$;

-- fill_plain(tbl, n, body): INSERT ... SELECT generate_series.
CREATE PROCEDURE bench.fill_plain(tbl text, n bigint, body jsonb) LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('INSERT INTO bench.%I (body) SELECT $1 FROM generate_series(1, $2)', tbl)
		USING body, n;
END $$;

-- fill_pgq(n, body, per_tick): pgq.insert_event `per_tick` events per transaction, then one
-- tick, so that every PgQ batch holds `per_tick` events (batches are cut at ticks).
CREATE PROCEDURE bench.fill_pgq(n bigint, body text, per_tick integer) LANGUAGE plpgsql AS $$
DECLARE
	done bigint := 0;
	k integer;
BEGIN
	-- tick whenever there is at least one new event: one tick per fill transaction
	PERFORM pgq.set_queue_config('bench_pgq', 'ticker_max_count', '1');
	WHILE done < n LOOP
		k := least(per_tick, n - done);
		PERFORM pgq.insert_event('bench_pgq', 'bench', body) FROM generate_series(1, k);
		COMMIT;
		IF pgq.ticker('bench_pgq') IS NULL THEN
			RAISE EXCEPTION 'pgq.ticker did not tick after % events', k;
		END IF;
		COMMIT;
		done := done + k;
	END LOOP;
END $$;

-- pgq_pending(): events of bench_pgq that consumer "bench" has not finished yet.
CREATE FUNCTION bench.pgq_pending() RETURNS bigint LANGUAGE sql STABLE AS $$
	SELECT pending_events FROM pgq.get_consumer_info('bench_pgq', 'bench')
$$;
