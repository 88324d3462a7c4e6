#!/usr/bin/env bash
# bench/fifo.sh: FIFO queues (message groups) against a standard queue, on a throwaway cluster.
#
#   For a standard queue and for FIFO queues whose FB_MESSAGES messages are spread over 10, 1,000
#   and FB_MESSAGES groups: receive 1 + ack in one statement, FB_CLIENTS consumers, FB_SECONDS.
#   Then the plan of the FIFO candidate query (the per-dequeue index scan) at each size, with its
#   estimated cost, time and buffers.
#
# Settings (environment): FB_MESSAGES (default 1000000), FB_CLIENTS (8), FB_SECONDS (20).
# The queues are filled by INSERT ... SELECT into their tables (as send would write them, ids in
# group order) rather than by send, to keep the set-up short; the timed part is only the
# consumers. Targets from the issue are printed, not asserted: FIFO with FB_MESSAGES groups at
# least 80% of FIFO with 10 groups, and FIFO at least 70% of the standard queue.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../tools/lib.sh
source "$ROOT/tools/lib.sh"
export PATH="$PGBIN:$PATH"

FB_MESSAGES=${FB_MESSAGES:-1000000}
FB_CLIENTS=${FB_CLIENTS:-8}
FB_SECONDS=${FB_SECONDS:-20}
BODY='{"event": "page.viewed", "session": "s-000042", "path": "/rooms/1234", "ms": 87}'

dir=$(mktemp -d /tmp/pg_courier_fifo.XXXXXX)
chmod 755 "$dir"
trap 'cluster_stop "$dir/pg"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
CLUSTER_CONF="shared_buffers = 1GB
max_wal_size = 8GB
checkpoint_timeout = 30min" cluster_start "$dir/pg"

sql() { as_pguser psql -X -A -t -q -v ON_ERROR_STOP=1 -c "$1"; }

sql "CREATE EXTENSION pg_courier"
echo "pg_courier FIFO queues: $(sql 'SELECT version()' | cut -d, -f1), $(nproc) CPUs"
echo "$FB_MESSAGES messages per queue, $FB_CLIENTS consumers, $FB_SECONDS s per run; load: $(uptime | sed 's/.*load/load/')"
echo

cat >"$dir/recv_ack.sql" <<'SQL'
SELECT courier.ack(:q, receipt) FROM courier.receive(:q, 1);
SQL
chmod 644 "$dir/recv_ack.sql"

# fill NAME GROUPS: a queue of FB_MESSAGES messages over GROUPS groups (0: a standard queue)
fill() {
	local name=$1 groups=$2 qid
	if [ "$groups" -eq 0 ]; then
		sql "SELECT courier.create_queue('$name')"
	else
		sql "SELECT courier.create_queue('$name', fifo => true)"
	fi
	qid=$(sql "SELECT queue_id FROM courier.queue WHERE queue_name = '$name'")
	if [ "$groups" -eq 0 ]; then
		sql "INSERT INTO courier.q_$qid (sent_at, visible_at, body)
		     SELECT now(), now(), '$BODY'::jsonb FROM generate_series(1, $FB_MESSAGES)"
	else
		sql "INSERT INTO courier.q_$qid (sent_at, visible_at, body, group_id)
		     SELECT now(), now(), '$BODY'::jsonb, 'session-' || (i % $groups)
		       FROM generate_series(1, $FB_MESSAGES) i"
		sql "INSERT INTO courier.g_$qid (group_id)
		     SELECT group_id FROM courier.q_$qid GROUP BY group_id ORDER BY min(msg_id)"
	fi
	sql "VACUUM ANALYZE courier.q_$qid"
	echo "$qid"
}

# run NAME: messages/s of FB_CLIENTS consumers
run() {
	as_pguser pgbench -n -f "$dir/recv_ack.sql" -D q="'$1'" -c "$FB_CLIENTS" -j "$FB_CLIENTS" \
		-T "$FB_SECONDS" 2>&1 | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -n 1
}

# plan QID: the FIFO candidate query as receive runs it, EXPLAIN ANALYZE
plan() {
	as_pguser psql -X -q -v ON_ERROR_STOP=1 <<SQL
SET enable_seqscan = off; SET enable_bitmapscan = off; SET jit = off; SET plan_cache_mode = force_generic_plan;
PREPARE c(bigint, timestamptz, bigint) AS
SELECT g.turn, h.msg_id, g.group_id FROM courier.g_$1 g
 CROSS JOIN LATERAL (SELECT m.msg_id, m.visible_at FROM courier.q_$1 m
                      WHERE m.group_id = g.group_id ORDER BY m.msg_id LIMIT 1) h
 WHERE g.turn > \$1 AND h.visible_at <= \$2
   AND NOT EXISTS (SELECT FROM courier.l_$1 l
                    WHERE l.group_id = g.group_id AND l.invisible_until > \$2 OFFSET 0)
 ORDER BY g.turn LIMIT \$3;
EXPLAIN (ANALYZE, BUFFERS, COSTS, SUMMARY OFF) EXECUTE c(0, now(), 4);
SQL
}

declare -A rate qids
for spec in standard:0 fifo10:10 fifo1k:1000 "fifo${FB_MESSAGES}:$FB_MESSAGES"; do
	name=${spec%%:*}
	groups=${spec#*:}
	qids[$name]=$(fill "b_$name" "$groups" | tail -n 1)
	rate[$name]=$(run "b_$name")
	printf '%-16s %8s receive+ack/s\n' "$name" "${rate[$name]}"
done
echo
big="fifo${FB_MESSAGES}"
awk -v s="${rate[standard]}" -v a="${rate[fifo10]}" -v b="${rate[fifo1k]}" -v c="${rate[$big]}" -v n="$FB_MESSAGES" 'BEGIN {
	printf "FIFO %d groups / FIFO 10 groups: %.2fx (target >= 0.80)\n", n, c / a
	printf "FIFO 1,000 groups / FIFO 10 groups: %.2fx\n", b / a
	printf "FIFO / standard: 10 groups %.2fx, 1,000 groups %.2fx, %d groups %.2fx (target >= 0.70)\n", a / s, b / s, n, c / s
}'
echo
for name in fifo10 fifo1k "$big"; do
	echo "-- plan of the FIFO candidate query, $name (queue courier.q_${qids[$name]}), after the runs"
	plan "${qids[$name]}"
done
