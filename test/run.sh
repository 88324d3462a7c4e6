#!/usr/bin/env bash
# test/run.sh: run every pg_courier test suite (pg_regress, isolation, pgTAP, Perl TAP) against
# throwaway clusters, in a copy of the tree owned by the unprivileged server user.
# Expects the extension to be installed already (make test runs tools/setup.sh first).
# Last line: "N passed, N failed"; exit status 0 only when nothing failed and something passed.
#
# What counts as one test: pg_regress and isolation, one per test file / spec; pgTAP and Perl TAP,
# one per top-level TAP assertion ("ok N" / "not ok N"); assertions a file planned but never ran
# count as failed, and a file that fails with nothing else to show for it counts as one failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/tools/lib.sh"

PGXS_DIR=$("$PG_CONFIG" --pgxs)
PGXS_DIR=${PGXS_DIR%/src/makefiles/pgxs.mk}
EXTENSION=$(sed -n 's/^EXTENSION[[:space:]]*=[[:space:]]*//p' "$ROOT/Makefile" | head -n 1)
EXTENSION=${EXTENSION:-pg_courier}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pg_courier_test.XXXXXX")
SRC=$WORK/src
CLUSTER=$WORK/cluster

TOTAL_PASSED=0
TOTAL_FAILED=0
FINISHED=no

cleanup() {
	local rc=$? pidfile
	cluster_stop "$CLUSTER"
	# Servers a Perl TAP test left behind (it was interrupted, say).
	find "$WORK" -name postmaster.pid 2>/dev/null | while IFS= read -r pidfile; do
		as_pguser pg_ctl -D "$(dirname "$pidfile")" -m immediate stop >/dev/null 2>&1 || true
	done
	rm -rf -- "$WORK"
	if [ "$FINISHED" = no ]; then
		# Stopped by an error or a signal: still end with the summary line, counting this as a failure.
		echo "test/run.sh stopped early (exit status $rc)"
		echo "$TOTAL_PASSED passed, $((TOTAL_FAILED + 1)) failed"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A copy of the tree (git-tracked and untracked files, not test output) that the server user owns.
mkdir -p "$SRC"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git -C "$ROOT" ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do
			case $f in results/* | output_iso/* | tmp_check/*) continue ;; esac
			if [ -f "$ROOT/$f" ]; then printf '%s\0' "$f"; fi
		done |
		tar -C "$ROOT" --null -T - -cf - | tar -C "$SRC" -xf -
else
	tar -C "$ROOT" --exclude=./.git --exclude=./results --exclude=./output_iso --exclude=./tmp_check \
		-cf - . | tar -C "$SRC" -xf -
fi
rm -rf "$SRC/results" "$SRC/output_iso" "$SRC/tmp_check"
# pg_regress stops at a test without an expected file: give it an empty one, so that test
# fails with a diff showing its whole output and the other tests still run.
for t in "$SRC"/sql/*.sql "$SRC"/test/isolation/specs/*.spec; do
	[ -e "$t" ] || continue
	case $t in
	*.sql) exp=$SRC/expected/$(basename "$t" .sql).out ;;
	*) exp=$SRC/test/isolation/expected/$(basename "$t" .spec).out ;;
	esac
	if [ ! -e "$exp" ]; then
		echo "note: ${exp#"$SRC"/} is missing; that test will fail"
		mkdir -p "$(dirname "$exp")"
		: >"$exp"
	fi
done
if [ "$(id -u)" -eq 0 ]; then
	chown -R "$PG_OSUSER:" "$WORK"
fi
cd "$SRC"

SUMMARY=()

# record SUITE PASSED FAILED [NOTE]
record() {
	TOTAL_PASSED=$((TOTAL_PASSED + $2))
	TOTAL_FAILED=$((TOTAL_FAILED + $3))
	SUMMARY+=("$(printf '%-11s %4d passed, %4d failed%s' "$1:" "$2" "$3" "${4:+  ($4)}")")
}

skip() {
	echo "== $1: skipped, $2"
	SUMMARY+=("$(printf '%-11s skipped (%s)' "$1:" "$2")")
}

# count_regress LOG: prints "passed failed" from pg_regress output (PG 15 style
# "test name ... ok" / "     name ... FAILED", and PG 16+ style "ok 1 - name" / "not ok 1 - name").
count_regress() {
	awk '
		/^(test +)?[^ ]+ +\.\.\. +ok/ || /^ +[^ ]+ +\.\.\. +ok/ { p++; next }
		/\.\.\. +(FAILED|failed)/ { f++; next }
		/^ok [0-9]+ +[-+] / { p++; next }
		/^not ok [0-9]+ +[-+] / { f++; next }
		END { printf "%d %d\n", p, f }' "$1"
}

# count_tap LOG: prints "passed failed" for the top-level TAP lines of a verbose prove run;
# tests planned ("1..N") but never run count as failed.
count_tap() {
	awk '
		/^1\.\.[0-9]+/ { plan = substr($1, 4) + 0; next }
		/^not ok [0-9]+/ { if ($0 ~ /# *TODO/) p++; else f++; next }
		/^ok [0-9]+/ { p++; next }
		END { if (plan > p + f) f += plan - p - f; printf "%d %d\n", p, f }' "$1"
}

# run_pg_regress NAME DIFFS MAKE-VARIABLES...: make installcheck for one kind of test.
run_pg_regress() {
	local name=$1 diffs=$2 log=$WORK/$1.log rc=0 p f
	shift 2
	echo "== $name"
	as_pguser make -s --no-print-directory PG_CONFIG="$PG_CONFIG" "$@" installcheck >"$log" 2>&1 || rc=$?
	grep -E '\.\.\. |^(not )?ok [0-9]' "$log" || true
	read -r p f < <(count_regress "$log")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
		echo "$name: make installcheck failed (exit $rc) without a failed test:"
		tail -n 40 "$log"
	elif [ "$rc" -ne 0 ]; then
		grep -E 'tests? failed|tests passed' "$log" || true
	fi
	if [ -s "$diffs" ] && [ "$f" -gt 0 ]; then
		echo "---- $diffs (first 200 lines)"
		head -n 200 "$diffs"
		echo "----"
	fi
	record "$name" "$p" "$f"
}

# run_tap_file LOG CMD...: one TAP file through prove/pg_prove -v; adds to P and F.
run_tap_file() {
	local log=$1 rc=0 p f
	shift
	as_pguser "$@" >"$log" 2>&1 || rc=$?
	read -r p f < <(count_tap "$log")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
	fi
	P=$((P + p))
	F=$((F + f))
	if [ "$rc" -ne 0 ] || [ "$f" -gt 0 ]; then
		echo "   FAILED  ($p passed, $f failed)"
		echo "---- output (last 60 lines)"
		tail -n 60 "$log"
		echo "----"
		return 1
	fi
	echo "   ok  ($p assertions)"
}

# A master key for payload encryption (courier.keyring_file), outside the data directory and
# readable by the server user only.
KEYRING=$WORK/keyring
(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$KEYRING" && echo >>"$KEYRING")
if [ "$(id -u)" -eq 0 ]; then
	chown "$PG_OSUSER:" "$KEYRING"
fi

echo "== starting a throwaway cluster"
CLUSTER_CONF="fsync = off
courier.keyring_file = '$KEYRING'${CLUSTER_CONF:+
$CLUSTER_CONF}" cluster_start "$CLUSTER"

# 1. pg_regress: sql/*.sql against expected/*.out (make installcheck; pg_regress makes its own database).
if compgen -G 'sql/*.sql' >/dev/null; then
	run_pg_regress pg_regress regression.diffs ISOLATION=
else
	skip pg_regress "no sql/*.sql yet"
fi

# 2. isolation: test/isolation/specs/*.spec against test/isolation/expected/*.out.
if compgen -G 'test/isolation/specs/*.spec' >/dev/null; then
	run_pg_regress isolation output_iso/regression.diffs REGRESS=
else
	skip isolation "no test/isolation/specs/*.spec yet"
fi

# 3. pgTAP: each test/pgtap/*.sql in a fresh database with pgtap and the extension created.
if compgen -G 'test/pgtap/*.sql' >/dev/null; then
	echo "== pgTAP"
	P=0 F=0 n=0
	for t in test/pgtap/*.sql; do
		n=$((n + 1))
		db=pgtap_$n
		echo "-- $t"
		if ! as_pguser psql -X -q -v ON_ERROR_STOP=1 -d postgres \
			-c "CREATE DATABASE $db" >"$WORK/pgtap_$n.log" 2>&1 ||
			! as_pguser psql -X -q -v ON_ERROR_STOP=1 -d "$db" \
				-c 'CREATE EXTENSION pgtap' -c "CREATE EXTENSION $EXTENSION" >>"$WORK/pgtap_$n.log" 2>&1; then
			cat "$WORK/pgtap_$n.log"
			F=$((F + 1))
			continue
		fi
		run_tap_file "$WORK/pgtap_$n.log" pg_prove -v -d "$db" "$t" || true
	done
	record pgTAP "$P" "$F"
else
	skip pgTAP "no test/pgtap/*.sql yet"
fi

# 4. Perl TAP: test/t/*.pl with PostgreSQL::Test::Cluster (each test makes its own servers).
if compgen -G 'test/t/*.pl' >/dev/null; then
	echo "== Perl TAP"
	P=0 F=0
	# TMPDIR inside WORK: the socket directories PostgreSQL::Test::Utils::tempdir_short makes (and
	# keeps when a test fails) are removed with WORK.
	mkdir -p "$WORK/tmp"
	if [ "$(id -u)" -eq 0 ]; then
		chown "$PG_OSUSER:" "$WORK/tmp"
	fi
	for t in test/t/*.pl; do
		echo "-- $t"
		name=$(basename "$t" .pl)
		if ! run_tap_file "$WORK/tap_$name.log" \
			env TESTDIR="$SRC" TMPDIR="$WORK/tmp" PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress" \
			prove -v -I "$PGXS_DIR/src/test/perl" -I test/t "$t"; then
			if [ -f "tmp_check/log/regress_log_$name" ]; then
				echo "---- tmp_check/log/regress_log_$name (last 60 lines)"
				tail -n 60 "tmp_check/log/regress_log_$name"
				echo "----"
			fi
		fi
	done
	record "Perl TAP" "$P" "$F"
else
	skip "Perl TAP" "no test/t/*.pl yet"
fi

echo
echo "== summary"
printf '%s\n' "${SUMMARY[@]}"
FINISHED=yes
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ "$TOTAL_FAILED" -eq 0 ] && [ "$TOTAL_PASSED" -gt 0 ]
