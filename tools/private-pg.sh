#!/usr/bin/env bash
# tools/private-pg.sh DIR: make a private, relocatable copy of the installed PostgreSQL 15 in DIR
# (binaries, headers, libraries, share files including pgTAP and pgcrypto) and print the line to use it:
#
#   export COURIER_PGBIN=DIR/usr/lib/postgresql/15/bin
#
# With COURIER_PGBIN set, make demo/test/bench build against, install into and run that copy, so
# that several checkouts (git worktrees) can be tested at the same time without overwriting each
# other's pg_courier.so in the system directories. Run make setup once first so that the packages
# the copy needs are installed. DIR and its parents must be searchable by the server user.
set -euo pipefail
dir=${1:?usage: tools/private-pg.sh DIR}
mkdir -p "$dir/usr/lib/postgresql" "$dir/usr/share/postgresql" "$dir/usr/include"
cp -a /usr/lib/postgresql/15 "$dir/usr/lib/postgresql/"
cp -a /usr/share/postgresql/15 "$dir/usr/share/postgresql/"
cp -a /usr/include/postgresql "$dir/usr/include/"
chmod -R a+rX "$dir"
if [ "$(id -u)" -eq 0 ]; then
	chown -R postgres: "$dir/usr/lib/postgresql/15/lib" "$dir/usr/share/postgresql/15/extension"
fi
echo "export COURIER_PGBIN=$(cd "$dir" && pwd)/usr/lib/postgresql/15/bin"
