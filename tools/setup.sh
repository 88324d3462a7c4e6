#!/usr/bin/env bash
# tools/setup.sh: install the Debian 12 packages pg_courier needs (only those missing), then build
# and install the extension. Idempotent; run as root or as a user with sudo. Used by make demo/test/bench.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${COURIER_PGBIN:-/usr/lib/postgresql/15/bin}/pg_config

PACKAGES=(
	build-essential
	postgresql-15
	postgresql-server-dev-15
	postgresql-contrib
	postgresql-15-pgtap
	libtap-parser-sourcehandler-pgtap-perl
	libipc-run-perl
	libssl-dev
	libkrb5-dev
	postgresql-15-pgq3
	postgresql-15-cron
)

# tools/setup.sh --packages PKG...: install only those packages (when missing), nothing else;
# make fuzz uses it for clang and its sanitizer runtimes.
PACKAGES_ONLY=no
if [ "${1:-}" = --packages ]; then
	shift
	PACKAGES=("$@")
	PACKAGES_ONLY=yes
fi

# as_root CMD...: run CMD as root, through sudo when we are not root.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		echo "setup: need root for: $*" >&2
		echo "setup: run as root, or install sudo and make this user a sudoer" >&2
		return 1
	fi
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	if [ "$status" != "install ok installed" ]; then
		missing+=("$pkg")
	fi
done

if [ "${#missing[@]}" -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update >"$log" 2>&1 ||
		! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >>"$log" 2>&1; then
		tail -n 40 "$log" >&2
		echo "setup: package installation failed" >&2
		exit 1
	fi
fi

if [ "$PACKAGES_ONLY" = yes ]; then
	exit 0
fi

cd "$ROOT"
if ! make -s PG_CONFIG="$PG_CONFIG" >"$log" 2>&1; then
	cat "$log" >&2
	echo "setup: build failed" >&2
	exit 1
fi

# Install only when the build differs from what is installed, so that a normal user can run
# make demo/test without sudo once the current build is installed.
pkglibdir=$("$PG_CONFIG" --pkglibdir)
extdir=$("$PG_CONFIG" --sharedir)/extension
need_install=no
for f in pg_courier.so pg_courier.control pg_courier--*.sql; do
	[ -e "$f" ] || continue
	case $f in
	*.so) dest=$pkglibdir/$(basename "$f") ;;
	*) dest=$extdir/$(basename "$f") ;;
	esac
	if ! cmp -s "$f" "$dest"; then
		need_install=yes
		break
	fi
done

if [ "$need_install" = yes ]; then
	install_as=as_root
	if [ -n "${COURIER_PGBIN:-}" ] && [ -w "$pkglibdir" ]; then
		install_as=	# a private copy (tools/private-pg.sh): no root needed
	fi
	if ! $install_as make -s PG_CONFIG="$PG_CONFIG" install >"$log" 2>&1; then
		cat "$log" >&2
		echo "setup: make install failed" >&2
		exit 1
	fi
	echo "setup: pg_courier built and installed ($pkglibdir/pg_courier.so)"
else
	echo "setup: pg_courier built; the installed copy is up to date"
fi
