#!/usr/bin/env bash
# tools/demo.sh: run the booking example (examples/booking) end to end on a throwaway cluster and
# say what happens; exits non-zero if pg_courier does not behave as described.
# Expects the extension to be installed already (make demo runs tools/setup.sh first).
# shellcheck disable=SC2015 # 'A && B || fail ...' is meant: fail when A or B is false
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/tools/lib.sh"
EX=$ROOT/examples/booking

DIR=$(mktemp -d "${TMPDIR:-/tmp}/pg_courier_demo.XXXXXX")
WORKER_B_PID=
cleanup() {
	if [ -n "$WORKER_B_PID" ]; then
		kill "$WORKER_B_PID" 2>/dev/null || true
	fi
	cluster_stop "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
	echo "DEMO FAILED: $*" >&2
	exit 1
}

# sql QUERY: one value (or |-separated row) from the demo database.
sql() {
	"$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -c "$1"
}

# run_example FILE [psql -v options...]: run an example file; prints its \echo lines only.
run_example() {
	local file=$1
	shift
	"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -o /dev/null "$@" -f "$EX/$file"
}

# field LINE WORD: the word that follows WORD in LINE.
field() {
	local line=${1//[():,]/ } word=$2
	local -
	set -f
	# shellcheck disable=SC2086 # split LINE into words
	set -- $line
	while [ $# -gt 1 ]; do
		if [ "$1" = "$word" ]; then
			echo "$2"
			return
		fi
		shift
	done
	fail "no '$word' in: $line"
}

# queue_state: "depth visible in_flight" of booking-tasks.
queue_state() {
	sql "SELECT depth, visible, in_flight FROM courier.queues WHERE queue_name = 'booking-tasks'" | tr '|' ' '
}

# book GUEST ROOM CHECK_IN NIGHTS FILE: sets BOOKING_ID and MSG_ID from the file's \echo line.
book() {
	local out
	out=$(run_example "$5" -v guest="$1" -v room="$2" -v check_in="$3" -v nights="$4") ||
		fail "$5 failed for $1"
	BOOKING_ID=$(field "$out" booking)
	MSG_ID=$(field "$out" message)
}

# worker NAME [psql -v options...]: one worker step; sets GOT_MSG, GOT_COUNT, GOT_BOOKING.
worker() {
	local name=$1 out
	shift
	out=$(PGAPPNAME="worker $name" run_example worker.sql -v worker="$name" "$@") ||
		fail "worker $name failed: $out"
	GOT_MSG=$(field "$out" message)
	GOT_COUNT=$(field "$out" receive_count)
	GOT_BOOKING=$(field "$out" booking)
	case $out in
	*acknowledged*) ;;
	*) fail "worker $name did not acknowledge message $GOT_MSG" ;;
	esac
}

echo "== pg_courier demo: the booking example (files in examples/booking/)"
cluster_start "$DIR"
echo "Started a throwaway PostgreSQL 15 server (socket in $PGHOST, port $PGPORT)"

run_example setup.sql
echo "setup.sql: CREATE EXTENSION pg_courier, table bookings, queue booking-tasks (visibility timeout 2 s)"
echo

# Bookings: each is an INSERT plus courier.send in one transaction.
book 'Ada Lovelace' 101 2025-06-01 3 book.sql
B1=$BOOKING_ID M1=$MSG_ID
echo "Booking $B1 (Ada Lovelace) committed: its confirmation task is queued as message $M1"

book 'Grace Hopper' 102 2025-06-02 2 book-rollback.sql
B2=$BOOKING_ID M2=$MSG_ID
[ "$(sql "SELECT count(*) FROM bookings WHERE booking_id = $B2")" = 0 ] ||
	fail "rolled-back booking $B2 is in the bookings table"
read -r depth visible in_flight < <(queue_state)
[ "$depth" = 1 ] || fail "after one committed and one rolled-back booking the queue holds $depth messages, not 1"
echo "Booking $B2 (Grace Hopper) rolled back (card declined): no booking row, and no message (message id $M2 was never committed)"

book 'Alan Turing' 103 2025-06-03 1 book.sql
B3=$BOOKING_ID M3=$MSG_ID
echo "Booking $B3 (Alan Turing) committed: its confirmation task is queued as message $M3"
book 'Edsger Dijkstra' 104 2025-06-04 4 book.sql
B4=$BOOKING_ID M4=$MSG_ID
echo "Booking $B4 (Edsger Dijkstra) committed: its confirmation task is queued as message $M4"
read -r depth visible in_flight < <(queue_state)
[ "$depth" = 3 ] && [ "$visible" = 3 ] || fail "queue should hold 3 visible messages: depth $depth, visible $visible"
echo "Queue booking-tasks holds $depth messages, all visible"
echo

# Two workers, each in its own psql session.
worker A
[ "$GOT_MSG" = "$M1" ] && [ "$GOT_COUNT" = 1 ] && [ "$GOT_BOOKING" = "$B1" ] ||
	fail "worker A got message $GOT_MSG (receive_count $GOT_COUNT, booking $GOT_BOOKING), expected message $M1 (1, booking $B1)"
echo "Worker A received message $M1 (receive_count 1), confirmed booking $B1 and acknowledged the message"

worker B
[ "$GOT_MSG" = "$M3" ] && [ "$GOT_COUNT" = 1 ] && [ "$GOT_BOOKING" = "$B3" ] ||
	fail "worker B got message $GOT_MSG (receive_count $GOT_COUNT, booking $GOT_BOOKING), expected message $M3 (1, booking $B3)"
echo "Worker B received message $M3 (receive_count 1), confirmed booking $B3 and acknowledged the message"

# Worker B takes the next task and "crashes" in the middle of the work: its session is terminated.
B_OUT=$DIR/worker_b.out
PGAPPNAME="worker B" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -o /dev/null \
	-v worker=B -v work_seconds=60 -f "$EX/worker.sql" >"$B_OUT" 2>&1 &
WORKER_B_PID=$!
deadline=$((SECONDS + 15))
while [ "$SECONDS" -lt "$deadline" ]; do
	[ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'worker B' AND wait_event = 'PgSleep'")" = 1 ] && break
	kill -0 "$WORKER_B_PID" 2>/dev/null || fail "worker B stopped early: $(cat "$B_OUT")"
	sleep 0.1
done
line=$(grep 'received message' "$B_OUT") || fail "worker B did not receive a message: $(cat "$B_OUT")"
CRASH_MSG=$(field "$line" message)
[ "$CRASH_MSG" = "$M4" ] || fail "worker B received message $CRASH_MSG, expected $M4"
echo "Worker B received message $M4 (receive_count 1) and started on booking $B4 ..."
[ "$(sql "SELECT count(*) FROM pg_terminate_backend((SELECT pid FROM pg_stat_activity WHERE application_name = 'worker B')) AS t WHERE t")" = 1 ] ||
	fail "could not terminate worker B's session"
if wait "$WORKER_B_PID"; then
	WORKER_B_PID=
	fail "worker B finished although its session was terminated"
fi
WORKER_B_PID=
grep -q acknowledged "$B_OUT" && fail "worker B acknowledged message $M4 before it crashed"
echo "Worker B crashed while holding message $M4: its session was terminated before it acknowledged"

read -r depth visible in_flight < <(queue_state)
[ "$depth" = 1 ] || fail "message $M4 should still be stored (depth $depth)"
if [ "$in_flight" = 1 ]; then
	echo "While B's lease lasts, message $M4 stays invisible to other workers (visible $visible, in flight $in_flight)"
fi

# After the visibility timeout the message is delivered again, to worker A.
deadline=$((SECONDS + 15))
while [ "$SECONDS" -lt "$deadline" ]; do
	read -r depth visible in_flight < <(queue_state)
	[ "$visible" = 1 ] && break
	sleep 0.1
done
[ "$visible" = 1 ] || fail "message $M4 did not become visible again within 15 s"
worker A
[ "$GOT_MSG" = "$M4" ] && [ "$GOT_COUNT" = 2 ] && [ "$GOT_BOOKING" = "$B4" ] ||
	fail "worker A got message $GOT_MSG (receive_count $GOT_COUNT, booking $GOT_BOOKING), expected message $M4 again (receive_count 2, booking $B4)"
echo "After the 2 s visibility timeout, worker A received message $M4 again (receive_count 2), confirmed booking $B4 and acknowledged it"
echo

read -r depth visible in_flight < <(queue_state)
[ "$depth" = 0 ] || fail "the queue should be empty, it holds $depth messages"
[ "$(sql "SELECT count(*) FROM bookings WHERE confirmation_sent_at IS NOT NULL")" = 3 ] &&
	[ "$(sql "SELECT count(*) FROM bookings")" = 3 ] || fail "expected 3 bookings, all confirmed"

echo "Bookings: every committed booking is confirmed, the rolled-back one never existed"
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -c "SELECT booking_id, guest, room, check_in, nights,
	confirmation_sent_at IS NOT NULL AS confirmed FROM bookings ORDER BY booking_id"
echo "courier.queues: nothing left to do"
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -x -c "SELECT * FROM courier.queues"
echo "Demo passed: stopping the throwaway server and removing its directory."
