#!/usr/bin/env bash
# Throwaway MariaDB and PostgreSQL servers for tests and benchmarks, from Debian's
# packages, on 127.0.0.1, with every file under one directory (no systemd, no Docker).
#
#   scripts/databases.sh install               apt-get install mariadb-server postgresql (when missing)
#   scripts/databases.sh start DIR             initialise (first time) and start both servers under DIR,
#                                              create user katib/katib and database katib on each, and
#                                              print the `export` lines for the test URLs (eval them)
#   scripts/databases.sh stop DIR              stop both
#   scripts/databases.sh mariadb start DIR PORT    one MariaDB server (data kept across stop/start)
#   scripts/databases.sh mariadb stop DIR
#   scripts/databases.sh mariadb kill DIR           SIGKILL (a crash: InnoDB recovers at next start)
#   scripts/databases.sh postgres start DIR PORT   one PostgreSQL server
#   scripts/databases.sh postgres stop DIR
#
# Ports for `start`: KATIB_MYSQL_PORT (default 13306), KATIB_POSTGRES_PORT (default 15432);
# when unset and the default is taken, any free port (the printed URLs say which).
# As root, PostgreSQL runs as the `postgres` user (it refuses root); MariaDB runs as root.
# The printed variables are what tests/e2e/db.rs and db-manager's bench read:
#   KATIB_TEST_MYSQL_URL=mysql://katib:katib@127.0.0.1:13306/katib
#   KATIB_TEST_POSTGRES_URL=postgres://katib:katib@127.0.0.1:15432/katib
# The katib users may create databases (each test makes its own, randomly named).
set -euo pipefail

log() { printf '%s\n' "databases.sh: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

wait_for() { # SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
  log "$what is up"
}

install_packages() {
  local missing=()
  command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]] || missing+=(mariadb-server)
  [[ -n "$(pg_bindir 2>/dev/null)" ]] || missing+=(postgresql)
  if ((${#missing[@]} == 0)); then
    log "mariadb-server and postgresql already installed"
    return
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  local sudo=()
  [[ $(id -u) == 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# PORT_OR_FREE DEFAULT [EXPLICIT]: the explicit port, else the default when nobody
# listens there, else a free one.
pick_port() {
  if [[ -n "${2:-}" ]]; then
    echo "$2"
  elif ! port_taken "$1"; then
    echo "$1"
  else
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  fi
}

# ---------------------------------------------------------------- MariaDB

mariadb_sock() { echo "$1/mariadb/mysqld.sock"; }

mariadb_alive() { mariadb-admin --no-defaults --socket="$(mariadb_sock "$1")" -uroot ping >/dev/null 2>&1; }

mariadb_start() { # DIR PORT
  local dir=$1 port=$2
  local home="$dir/mariadb"
  mkdir -p "$home"
  dir=$(cd "$dir" && pwd)
  home="$dir/mariadb"
  if mariadb_alive "$dir"; then
    log "MariaDB in $home already running"
    return
  fi
  echo "$port" >"$home/port"
  local user_args=()
  [[ $(id -u) == 0 ]] && user_args=(--user=root)
  if [[ ! -d "$home/data/mysql" ]]; then
    mariadb-install-db --no-defaults --datadir="$home/data" "${user_args[@]}" \
      --auth-root-authentication-method=socket --skip-test-db >"$home/install.log" 2>&1 ||
      die "mariadb-install-db failed; see $home/install.log"
  fi
  # setsid: the server outlives this script and ignores the caller's Ctrl-C.
  setsid "$(command -v mariadbd || echo /usr/sbin/mariadbd)" --no-defaults \
    --datadir="$home/data" --socket="$(mariadb_sock "$dir")" --port="$port" \
    --bind-address=127.0.0.1 --pid-file="$home/mariadbd.pid" --log-error="$home/error.log" \
    --skip-name-resolve --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --innodb-buffer-pool-size=512M --innodb-log-file-size=256M \
    --max-connections=500 "${user_args[@]}" </dev/null >/dev/null 2>&1 &
  wait_for 60 "MariaDB on 127.0.0.1:$port" mariadb_alive "$dir" ||
    die "MariaDB did not start; see $home/error.log"
  mariadb --no-defaults --socket="$(mariadb_sock "$dir")" -uroot <<'SQL'
CREATE USER IF NOT EXISTS 'katib'@'%' IDENTIFIED BY 'katib';
GRANT ALL PRIVILEGES ON *.* TO 'katib'@'%' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS katib;
SQL
}

mariadb_stop() { # DIR
  local dir=$1
  local pidfile="$dir/mariadb/mariadbd.pid"
  [[ -f "$pidfile" ]] || return 0
  local pid
  pid=$(cat "$pidfile")
  mariadb-admin --no-defaults --socket="$(mariadb_sock "$dir")" -uroot shutdown >/dev/null 2>&1 ||
    kill "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  log "MariaDB in $dir/mariadb stopped"
}

mariadb_kill() { # DIR
  local pidfile="$1/mariadb/mariadbd.pid" pid
  [[ -f "$pidfile" ]] || return 0
  pid=$(cat "$pidfile")
  kill -KILL "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  rm -f "$pidfile"
  log "MariaDB in $1/mariadb killed"
}

# ---------------------------------------------------------------- PostgreSQL

pg_bindir() { # the newest /usr/lib/postgresql/<version>/bin
  local dirs
  dirs=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V) || true
  [[ -n "$dirs" ]] && tail -n1 <<<"$dirs"
}

# PostgreSQL refuses to run as root: as root, run it as the `postgres` user.
as_pg() {
  if [[ $(id -u) == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_start() { # DIR PORT
  local dir=$1 port=$2 bin
  bin=$(pg_bindir) || die "PostgreSQL is not installed (scripts/databases.sh install)"
  mkdir -p "$dir/postgres"
  dir=$(cd "$dir" && pwd)
  local home="$dir/postgres"
  if [[ $(id -u) == 0 ]]; then
    chmod 755 "$dir"
    chown postgres: "$home"
  fi
  if as_pg "$bin/pg_ctl" -D "$home/data" status >/dev/null 2>&1; then
    log "PostgreSQL in $home already running"
    return
  fi
  echo "$port" >"$home/port"
  if [[ ! -f "$home/data/PG_VERSION" ]]; then
    local pwfile="$home/pwfile"
    echo postgres >"$pwfile"
    [[ $(id -u) == 0 ]] && chown postgres: "$pwfile"
    as_pg "$bin/initdb" -D "$home/data" -U postgres --pwfile="$pwfile" -E UTF8 --locale=C \
      --auth-local=trust --auth-host=scram-sha-256 >"$home/initdb.log" 2>&1 ||
      die "initdb failed; see $home/initdb.log"
  fi
  as_pg "$bin/pg_ctl" -D "$home/data" -l "$home/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $home -c max_connections=300 -c shared_buffers=256MB" \
    start >/dev/null || die "PostgreSQL did not start; see $home/server.log"
  log "PostgreSQL on 127.0.0.1:$port is up"
  local psql=("$bin/psql" -X -q -h "$home" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1)
  as_pg "${psql[@]}" <<'SQL'
SELECT 'CREATE ROLE katib LOGIN CREATEDB PASSWORD ''katib'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'katib')\gexec
SELECT 'CREATE DATABASE katib OWNER katib'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'katib')\gexec
SQL
}

pg_stop() { # DIR
  local dir=$1 bin
  bin=$(pg_bindir) || return 0
  [[ -f "$dir/postgres/data/postmaster.pid" ]] || return 0
  as_pg "$bin/pg_ctl" -D "$dir/postgres/data" -m fast -w stop >/dev/null 2>&1 || true
  log "PostgreSQL in $dir/postgres stopped"
}

# ---------------------------------------------------------------- commands

usage() {
  sed -n '2,22p' "$0" >&2
  exit 2
}

cmd=${1:-}
case "$cmd" in
install) install_packages ;;
start)
  dir=${2:?usage: databases.sh start DIR}
  # A directory used before keeps its ports.
  mysql_port=$(pick_port 13306 "${KATIB_MYSQL_PORT:-$(cat "$dir/mariadb/port" 2>/dev/null || true)}")
  pg_port=$(pick_port 15432 "${KATIB_POSTGRES_PORT:-$(cat "$dir/postgres/port" 2>/dev/null || true)}")
  mariadb_start "$dir" "$mysql_port"
  pg_start "$dir" "$pg_port"
  echo "export KATIB_TEST_MYSQL_URL=mysql://katib:katib@127.0.0.1:$mysql_port/katib"
  echo "export KATIB_TEST_POSTGRES_URL=postgres://katib:katib@127.0.0.1:$pg_port/katib"
  ;;
stop)
  dir=${2:?usage: databases.sh stop DIR}
  mariadb_stop "$dir"
  pg_stop "$dir"
  ;;
mariadb | postgres)
  action=${2:-}
  dir=${3:?usage: databases.sh $cmd start|stop DIR [PORT]}
  case "$cmd:$action" in
  mariadb:start) mariadb_start "$dir" "${4:?PORT}" ;;
  mariadb:stop) mariadb_stop "$dir" ;;
  mariadb:kill) mariadb_kill "$dir" ;;
  postgres:start) pg_start "$dir" "${4:?PORT}" ;;
  postgres:stop) pg_stop "$dir" ;;
  *) usage ;;
  esac
  ;;
*) usage ;;
esac
