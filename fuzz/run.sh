#!/usr/bin/env bash
# fuzz/run.sh (make fuzz): fuzz the OpenPGP packet code (src/pgp.c) with libFuzzer under
# AddressSanitizer and UndefinedBehaviorSanitizer, for FUZZ_SECONDS (default 60) seconds.
#
# Installs clang-14 and libclang-rt-14-dev (the sanitizer and libFuzzer runtimes) when missing,
# through tools/setup.sh --packages. The seed corpus: ciphertexts pgp.c writes over the option
# matrix (fuzz/make_seeds.c) and ciphertexts pgcrypto wrote (fuzz/corpus/, committed). Prints the
# executions run and whether anything was found; a crash's input is kept in fuzz/findings/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLANG=${CLANG:-/usr/bin/clang-14}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}

"$ROOT/tools/setup.sh" --packages clang-14 libclang-rt-14-dev

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pg_courier_fuzz.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT
mkdir -p "$WORK/corpus" "$ROOT/fuzz/findings"

CFLAGS=(-g -O1 -Wall -Werror -I "$ROOT/src")
"$CLANG" "${CFLAGS[@]}" -o "$WORK/make_seeds" "$ROOT/fuzz/make_seeds.c" "$ROOT/src/pgp.c" -lcrypto
"$CLANG" "${CFLAGS[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-o "$WORK/pgp_fuzz" "$ROOT/fuzz/pgp_fuzz.c" "$ROOT/src/pgp.c" -lcrypto
"$WORK/make_seeds" "$WORK/corpus"
cp "$ROOT"/fuzz/corpus/* "$WORK/corpus/"

echo "fuzz: $(ls "$WORK/corpus" | wc -l) seeds, $FUZZ_SECONDS s"
rc=0
(cd "$ROOT/fuzz/findings" &&
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		"$WORK/pgp_fuzz" -max_total_time="$FUZZ_SECONDS" -max_len=70000 -timeout=10 \
		-print_final_stats=1 "$WORK/corpus") >"$WORK/fuzz.log" 2>&1 || rc=$?
grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)|^#[0-9]+ +DONE' "$WORK/fuzz.log" || true
if [ "$rc" -ne 0 ]; then
	tail -n 60 "$WORK/fuzz.log"
	echo "fuzz: FOUND a failure (exit $rc); its input is in fuzz/findings/"
	exit 1
fi
rmdir "$ROOT/fuzz/findings" 2>/dev/null || true
echo "fuzz: nothing found"
