#!/usr/bin/env bash
# tools/lib.sh: helpers shared by tools/demo.sh, test/run.sh and bench/run (source it, do not run it).
#
#   PGBIN                  the PostgreSQL 15 binaries ($COURIER_PGBIN when set: see tools/private-pg.sh)
#   PG_OSUSER              the unprivileged OS user that runs servers (postgres when root, else you)
#   as_pguser CMD...       run CMD as PG_OSUSER, with $PGBIN first in PATH
#   cluster_start DIR [PORT]
#                          initdb + start a throwaway cluster in DIR (unix socket in DIR only,
#                          free port if none given; extra postgresql.conf lines in $CLUSTER_CONF),
#                          then export PGHOST PGPORT PGUSER PGDATABASE for it.
#                          Layout: DIR/data (PGDATA), DIR/server.log, DIR/initdb.log, socket in DIR.
#   cluster_stop DIR       stop that cluster (fast, then immediate) and remove DIR; safe to call twice
#
# Callers stop their cluster from a trap, e.g.
#   trap 'cluster_stop "$dir"' EXIT; trap 'exit 130' INT; trap 'exit 143' TERM
# DIR's parent must be searchable by PG_OSUSER (mktemp -d makes a 0700 directory: chown it).
set -euo pipefail

PGBIN=${COURIER_PGBIN:-/usr/lib/postgresql/15/bin}
export PG_CONFIG=$PGBIN/pg_config

if [ "$(id -u)" -eq 0 ]; then
	PG_OSUSER=postgres
else
	PG_OSUSER=$(id -un)
fi

# as_pguser CMD...: when root, run CMD as $PG_OSUSER (environment kept; HOME, USER and LOGNAME
# become that user's; from / when the current directory is not usable by that user, e.g. a checkout
# under /root). Otherwise run CMD directly. Both with $PGBIN first in PATH.
# setpriv (util-linux, like runuser) execs CMD in place, so a Ctrl-C that kills CMD is seen by the
# calling script, which then runs its INT trap; runuser forks a watching parent that exits normally
# and so hides the interrupt from bash. runuser is the fallback when setpriv is missing.
as_pguser() {
	if [ "$(id -u)" -ne 0 ]; then
		PATH="$PGBIN:$PATH" "$@"
		return
	fi
	(
		local home pre
		home=$(getent passwd "$PG_OSUSER" | cut -d: -f6)
		if command -v setpriv >/dev/null 2>&1; then
			pre=(setpriv --reuid="$PG_OSUSER" --regid="$PG_OSUSER" --init-groups
				env HOME="$home" USER="$PG_OSUSER" LOGNAME="$PG_OSUSER" PATH="$PGBIN:$PATH")
		else
			pre=(runuser -u "$PG_OSUSER" -- env PATH="$PGBIN:$PATH")
		fi
		if ! "${pre[@]}" test -r . -a -x . 2>/dev/null; then
			cd /
		fi
		exec "${pre[@]}" "$@"
	)
}

# _port_in_use PORT: true when a TCP listener or a well-known unix socket already uses PORT.
_port_in_use() {
	local p=$1
	if [ -e "/tmp/.s.PGSQL.$p" ] || [ -e "/var/run/postgresql/.s.PGSQL.$p" ]; then
		return 0
	fi
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		return 0
	fi
	return 1
}

cluster_start() {
	local dir=${1:?usage: cluster_start DIR [PORT]} port=${2:-} tries=0

	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	: >"$dir/.pg_courier_cluster"	# marks DIR as ours for cluster_stop
	if [ "$(id -u)" -eq 0 ]; then
		chown "$PG_OSUSER:" "$dir"
	fi
	chmod 700 "$dir"
	if ! as_pguser test -w "$dir" -a -x "$dir"; then
		echo "cluster_start: $PG_OSUSER cannot write $dir (is every parent directory searchable?)" >&2
		return 1
	fi

	if [ -z "$port" ]; then
		port=$((20000 + RANDOM % 40000))
		while _port_in_use "$port"; do
			tries=$((tries + 1))
			[ "$tries" -lt 200 ] || { echo "cluster_start: no free port found" >&2; return 1; }
			port=$((20000 + RANDOM % 40000))
		done
	fi

	if ! as_pguser initdb -D "$dir/data" -U "$PG_OSUSER" --auth=trust --encoding=UTF8 --locale=C \
		>"$dir/initdb.log" 2>&1; then
		echo "cluster_start: initdb failed:" >&2
		cat "$dir/initdb.log" >&2
		return 1
	fi

	{
		echo "# added by tools/lib.sh cluster_start"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "port = $port"
		echo "max_connections = 200"
		echo "shared_preload_libraries = ''"
		if [ -n "${CLUSTER_CONF:-}" ]; then
			echo "# from CLUSTER_CONF"
			printf '%s\n' "$CLUSTER_CONF"
		fi
	} >>"$dir/data/postgresql.conf"

	if ! as_pguser pg_ctl -D "$dir/data" -l "$dir/server.log" -w -t 120 start >/dev/null 2>&1; then
		echo "cluster_start: the server did not start; its log:" >&2
		tail -n 50 "$dir/server.log" >&2 || true
		return 1
	fi

	unset PGHOSTADDR PGSERVICE PGSERVICEFILE PGPASSWORD PGPASSFILE PGSSLMODE PGREQUIRESSL
	export PGHOST=$dir PGPORT=$port PGUSER=$PG_OSUSER PGDATABASE=postgres
}

cluster_stop() {
	local dir=${1:-}
	[ -n "$dir" ] && [ -d "$dir" ] || return 0
	if [ -f "$dir/data/postmaster.pid" ]; then
		as_pguser pg_ctl -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
			as_pguser pg_ctl -D "$dir/data" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
	fi
	if [ -e "$dir/.pg_courier_cluster" ]; then
		rm -rf -- "$dir"
	else
		echo "cluster_stop: $dir was not made by cluster_start; not removing it" >&2
	fi
}
