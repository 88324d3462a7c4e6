#!/usr/bin/env bash
# bench/longpoll.sh: the long-polling benchmark (see bench/LONGPOLL.md).
#
# Builds bench/longpoll.c, starts a throwaway cluster (tools/lib.sh), creates the extension and
# the queues, measures wake-up latency, idle CPU and the thundering herd, prints a table and
# stops the cluster. Needs pg_courier installed (make install) and libpq (libpq-dev).
# About 3 minutes by default (2 x LP_IDLE_SECONDS, plus up to LP_HERD_MAX_SECONDS).
#
#   LP_TRIALS=500          wake-up latency trials
#   LP_IDLE_SECONDS=60     length of each idle-CPU run
#   LP_SESSIONS=100        sessions per line of the idle-CPU runs
#   LP_POLL_MS=100         interval of the polling runs
#   LP_SERVER_POLL=0       1: also run a pgmq-style server-side poll loop (60 s more)
#   LP_HERD_WAITERS=100    waiters of the thundering-herd test
#   LP_HERD_ROUNDS=20      its rounds
#   LP_HERD_MAX_SECONDS=45 stop the herd test after this long, with the rounds done so far
#   LP_SKIP=               any of "latency idle herd"
#   LP_OUT=                also write the report to this file
#   CLUSTER_CONF=          extra postgresql.conf lines (added after max_connections = 300)
#
# Smoke run, under a minute:
#   LP_TRIALS=50 LP_IDLE_SECONDS=5 LP_HERD_ROUNDS=3 LP_HERD_MAX_SECONDS=15 bench/longpoll.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../tools/lib.sh
. "$here/../tools/lib.sh"

if [ ! -f "$("$PG_CONFIG" --sharedir)/extension/pg_courier.control" ]; then
	echo "longpoll.sh: pg_courier is not installed (run make install)" >&2
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pg_courier_longpoll.XXXXXX")
chmod 755 "$tmp"	# the cluster directory inside it must be reachable by $PG_OSUSER
cleanup() {
	cluster_stop "$tmp/cluster" || true
	rm -rf -- "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

gcc -O2 -Wall -o "$tmp/longpoll" "$here/longpoll.c" \
	-I"$("$PG_CONFIG" --includedir)" -L"$("$PG_CONFIG" --libdir)" -lpq

CLUSTER_CONF="max_connections = 300${CLUSTER_CONF:+
$CLUSTER_CONF}"
cluster_start "$tmp/cluster"

"$PGBIN/psql" -X -q -o /dev/null -v ON_ERROR_STOP=1 <<'SQL'
CREATE EXTENSION pg_courier;
SELECT courier.create_queue(q) FROM unnest(ARRAY['lp', 'idle', 'idle2', 'idle3', 'herd']) AS q;
-- what pgmq.read_with_poll does: a plpgsql loop of reads and pg_sleep(poll_interval)
CREATE FUNCTION lp_read_with_poll(q text, max_poll_seconds integer, poll_interval_ms integer)
RETURNS TABLE (msg_id bigint, receipt text) LANGUAGE plpgsql AS $$
DECLARE
	stop_at timestamptz := clock_timestamp() + make_interval(secs => max_poll_seconds);
BEGIN
	LOOP
		IF clock_timestamp() >= stop_at THEN
			RETURN;
		END IF;
		RETURN QUERY SELECT r.msg_id, r.receipt FROM courier.receive(q, 1) r;
		IF FOUND THEN
			RETURN;
		END IF;
		PERFORM pg_sleep(poll_interval_ms / 1000.0);
	END LOOP;
END $$;
SQL

{
	echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC') $(uname -sr), $(nproc) CPUs;" \
		"fsync and synchronous_commit on (defaults), unix socket"
	"$tmp/longpoll"
} | if [ -n "${LP_OUT:-}" ]; then tee "$LP_OUT"; else cat; fi
