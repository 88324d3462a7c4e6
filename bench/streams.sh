#!/usr/bin/env bash
# bench/streams.sh: streams (issue 7) on a throwaway cluster with durable settings.
#
#   1. append throughput, 4 clients, 1 and 100 messages per transaction (random keys of 1,000),
#      against a plain INSERT into a table with the same columns and one index
#      (target: >= 0.8x); runs alternate courier / plain, ST_ROUNDS times
#   2. read throughput of one group with 4 consumers (read 500 + commit on next read)
#      against the append rate of one client, 1 per transaction (target: >= 5x)
#   3. retention: time of the maintain() run that empties a slot holding ST_DROP_ROWS rows,
#      for two sizes (target: < 1 s regardless of rows)
#   4. table size over ST_SIZE_SECONDS of appends at ~ST_SIZE_RATE messages/s with retention
#      1 minute and maintain() every 5 s (target: flat once the retention is reached)
#
# Settings (environment): ST_SECONDS per pgbench run (default 5), ST_ROUNDS (4), ST_PREFILL
# messages for the read run (400000), ST_DROP_ROWS (200000 1000000), ST_SIZE_SECONDS (130),
# ST_SIZE_RATE (5000).  Prints `uptime` with the figures: the machine may be shared.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../tools/lib.sh
source "$ROOT/tools/lib.sh"
export PATH="$PGBIN:$PATH"

ST_SECONDS=${ST_SECONDS:-5}
ST_ROUNDS=${ST_ROUNDS:-4}
ST_PREFILL=${ST_PREFILL:-400000}
ST_DROP_ROWS=${ST_DROP_ROWS:-200000 1000000}
ST_SIZE_SECONDS=${ST_SIZE_SECONDS:-130}
ST_SIZE_RATE=${ST_SIZE_RATE:-5000}
BODY='{"event": "order.created", "order_id": 1234567, "customer": "c-000042", "items": [{"sku": "A-1001", "qty": 2, "price": 19.99}, {"sku": "B-2002", "qty": 1, "price": 5.49}], "currency": "EUR", "total": 45.47}'

dir=$(mktemp -d /tmp/pg_courier_streams.XXXXXX)
chmod 755 "$dir"
trap 'cluster_stop "$dir/pg"; rm -rf "$dir"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
CLUSTER_CONF="shared_buffers = 1GB
max_wal_size = 8GB
checkpoint_timeout = 30min
fsync = on
synchronous_commit = on" cluster_start "$dir/pg"

sql() { as_pguser psql -X -A -t -q -v ON_ERROR_STOP=1 -c "$1"; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.0f\", ($1) }"; }

sql "CREATE EXTENSION pg_courier" >/dev/null
sql "CREATE SCHEMA bench" >/dev/null
# the baseline: the columns of a stream's data table, one index, no partitioning
sql "CREATE TABLE bench.plain (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	appended_at timestamptz NOT NULL DEFAULT now(), key text, body jsonb, body_text text,
	body_bytes bytea, attributes jsonb)"

scripts=$dir/scripts
mkdir -p "$scripts"
cat >"$scripts/append1.sql" <<'EOF'
SELECT courier.append('bs', :body::jsonb, key => (random() * 999)::int::text);
EOF
cat >"$scripts/plain1.sql" <<'EOF'
INSERT INTO bench.plain (key, body) VALUES ((random() * 999)::int::text, :body::jsonb);
EOF
cat >"$scripts/append100.sql" <<'EOF'
SELECT courier.append_batch('bs', array_fill(:body::jsonb, ARRAY[100]),
	ARRAY(SELECT (random() * 999)::int::text FROM generate_series(1, 100)));
EOF
cat >"$scripts/plain100.sql" <<'EOF'
INSERT INTO bench.plain (key, body)
SELECT (random() * 999)::int::text, b FROM unnest(array_fill(:body::jsonb, ARRAY[100])) b;
EOF
cat >"$scripts/read.sql" <<'EOF'
SELECT count(*) FROM courier.read('br', 'g', 'consumer-' || :client_id, 500);
EOF
chmod -R a+rX "$scripts"

# count_sql: messages stored in the stream bs / the plain table
stream_count() { sql "SELECT count(*) FROM courier.s_$(sql "SELECT stream_id FROM courier.stream WHERE stream_name = '$1'")"; }
plain_count() { sql "SELECT count(*) FROM bench.plain"; }

# run KIND CLIENTS SCRIPT: messages/s of one pgbench run
run() {
	local kind=$1 clients=$2 script=$3 c0 c1 t0 t1
	sql "CHECKPOINT" >/dev/null
	if [ "$kind" = courier ]; then c0=$(stream_count bs); else c0=$(plain_count); fi
	t0=$(now)
	as_pguser pgbench -n -M prepared -c "$clients" -j "$((clients > 1 ? 2 : 1))" -T "$ST_SECONDS" \
		-D body="$BODY" -f "$scripts/$script" >"$dir/pgbench.log" 2>&1 ||
		{ echo "pgbench failed: $(tail -3 "$dir/pgbench.log")" >&2; return 1; }
	t1=$(now)
	if [ "$kind" = courier ]; then c1=$(stream_count bs); else c1=$(plain_count); fi
	calc "($c1 - $c0) / ($t1 - $t0)"
}

echo "pg_courier streams: $(sql 'SELECT version()' | cut -d, -f1), $(nproc) CPUs, fsync on"
echo "load at start: $(uptime)"
echo

sql "SELECT courier.create_stream('bs', partitions => 16)" >/dev/null
declare -A total
for r in $(seq 1 "$ST_ROUNDS"); do
	for pair in "1 append1 plain1" "100 append100 plain100"; do
		read -r n cs ps <<<"$pair"
		if [ $((r % 2)) = 1 ]; then
			a=$(run courier 4 "$cs.sql"); b=$(run plain 4 "$ps.sql")
		else
			b=$(run plain 4 "$ps.sql"); a=$(run courier 4 "$cs.sql")
		fi
		total[c$n]=$((${total[c$n]:-0} + a))
		total[p$n]=$((${total[p$n]:-0} + b))
		printf 'round %d, %3d per transaction, 4 clients: append %7d msg/s, plain INSERT %7d msg/s\n' \
			"$r" "$n" "$a" "$b"
	done
done
one=$(run courier 1 append1.sql)
printf 'append, 1 per transaction, 1 client: %d msg/s\n' "$one"

# read: one group, 4 consumers, on a backlog
sql "SELECT courier.create_stream('br', partitions => 16)" >/dev/null
sql "SELECT courier.create_group('br', 'g', 'earliest')" >/dev/null
sql "SELECT count(*) FROM (SELECT courier.append_batch('br', array_agg('$BODY'::jsonb), array_agg((g % 1000)::text))
       FROM generate_series(1, $ST_PREFILL) g GROUP BY g / 1000) x" >/dev/null
sql "VACUUM ANALYZE" >/dev/null
lag0=$(sql "SELECT lag FROM courier.stream_groups WHERE stream_name = 'br'")
t0=$(now)
as_pguser pgbench -n -M prepared -c 4 -j 2 -T "$ST_SECONDS" -f "$scripts/read.sql" >"$dir/read.log" 2>&1 ||
	echo "read pgbench failed: $(tail -3 "$dir/read.log")"
t1=$(now)
for c in 1 2 3 4; do sql "SELECT courier.commit('br', 'g', 'consumer-$c')" >/dev/null 2>&1 || true; done
lag1=$(sql "SELECT lag FROM courier.stream_groups WHERE stream_name = 'br'")
read_rate=$(calc "($lag0 - $lag1) / ($t1 - $t0)")
drained=""
[ "$lag1" -eq 0 ] && drained=" (the backlog ran out: a lower bound)"
echo
echo "load after the throughput runs: $(uptime)"
echo

# retention: fill the slot the next maintain empties, then time that maintain
drop_times=()
for rows in $ST_DROP_ROWS; do
	sql "SELECT courier.drop_stream('bd')" >/dev/null 2>&1 || true
	sql "SELECT courier.create_stream('bd', partitions => 16, retention => '1 day')" >/dev/null
	sid=$(sql "SELECT stream_id FROM courier.stream WHERE stream_name = 'bd'")
	# maintain during segment c empties slot (c + 1) % 6 (segments of retention / 4 = 6 h)
	slot=$(sql "SELECT ((floor(extract(epoch FROM clock_timestamp()) * 1000000 / 21600000000)::bigint + 1) % 6)")
	sql "INSERT INTO courier.s_${sid}_$slot (slot, part, position, appended_at, key, body)
	     SELECT $slot, 1 + g % 16, (1000::bigint << 20) + g, now() - interval '1 day', (g % 1000)::text,
	            '$BODY'::jsonb FROM generate_series(1, $rows) g" >/dev/null
	sql "SELECT courier.create_group('bd', 'g', 'latest')" >/dev/null
	sql "CHECKPOINT" >/dev/null
	t0=$(now)
	emptied=$(sql "SELECT courier._maintain_streams()")
	t1=$(now)
	left=$(sql "SELECT count(*) FROM courier.s_${sid}_$slot")
	drop_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') s for $rows rows (slots emptied: $emptied, rows left: $left)")
done

# size over time with retention 1 minute
sql "SELECT courier.create_stream('bz', partitions => 16, retention => '1 minute')" >/dev/null
sid=$(sql "SELECT stream_id FROM courier.stream WHERE stream_name = 'bz'")
cat >"$scripts/size.sql" <<'EOF'
SELECT courier.append_batch('bz', array_fill(:body::jsonb, ARRAY[100]));
EOF
chmod a+r "$scripts/size.sql"
as_pguser pgbench -n -M prepared -c 1 -T "$ST_SIZE_SECONDS" -R "$((ST_SIZE_RATE / 100))" \
	-D body="$BODY" -f "$scripts/size.sql" >"$dir/size.log" 2>&1 &
bgpid=$!
sizes=()
start=$(date +%s)
while kill -0 "$bgpid" 2>/dev/null; do
	sql "SELECT courier.maintain()" >/dev/null
	el=$(($(date +%s) - start))
	if [ $((el % 10)) -lt 5 ]; then
		sizes+=("$(printf '%4d s %8s %9s rows' "$el" \
			"$(sql "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits WHERE inhparent = 'courier.s_$sid'::regclass")" \
			"$(sql "SELECT count(*) FROM courier.s_$sid")")")
	fi
	sleep 5
done
wait "$bgpid" || true

echo "== summary (messages/s; targets from the issue, printed, not asserted)"
for n in 1 100; do
	c=$((total[c$n] / ST_ROUNDS))
	p=$((total[p$n] / ST_ROUNDS))
	printf '%-44s %8d   plain INSERT %8d   ratio %5.2fx   target >= 0.80x\n' \
		"append, $n per transaction, 4 clients" "$c" "$p" "$(awk -v a="$c" -v b="$p" 'BEGIN { print a / b }')"
done
printf '%-44s %8d   1-client append %5d   ratio %5.2fx   target >= 5x%s\n' \
	"read, 1 group, 4 consumers, 500 per read" "$read_rate" "$one" \
	"$(awk -v a="$read_rate" -v b="$one" 'BEGIN { print a / b }')" "$drained"
for d in "${drop_times[@]}"; do
	echo "retention: maintain emptied a slot of a day-retention stream in $d   target < 1 s"
done
echo "size of a stream with retention 1 minute, ~$ST_SIZE_RATE msg/s, maintain every 5 s   target: flat after ~1.5 min"
printf '  %s\n' "${sizes[@]}"
echo "load at the end: $(uptime)"
