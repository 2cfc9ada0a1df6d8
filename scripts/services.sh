#!/usr/bin/env bash
# scripts/services.sh - private PostgreSQL, Redis and AWS Secrets Manager (moto)
# instances for development, demos and tests.
#
#   scripts/services.sh up       start everything (installs what is missing),
#                                then print the env lines (like `env`)
#   scripts/services.sh env      print KEY=value lines: eval "$(scripts/services.sh env)"
#                                (no `export`: wrap in `set -a; ...; set +a` to export)
#   scripts/services.sh status   one line per service: running/stopped and port
#   scripts/services.sh down     stop everything, keep the data (next `up` is fast)
#   scripts/services.sh reset    `down`, then delete the state (the venv is kept)
#
# Only the env lines (and `status` lines) go to stdout; progress goes to stderr,
# so `scripts/services.sh up > env.txt` leaves only env lines in env.txt.
#
# Everything lives under ${TENANCY_STATE_DIR:-<repo>/.local}: services/ holds
# the state of each service, venv/ the Python virtualenv with moto (and the
# Python clients that scripts/test.sh adds for the e2e tests). Every
# service listens on 127.0.0.1 only, on a free port chosen at first start and
# reused while it stays free. A system PostgreSQL (5432) or Redis (6379) is
# never used, stopped or depended upon: we only touch processes recorded in
# our own pid files whose command line matches our own state.
#
# Knobs: TENANCY_STATE_DIR (see above), TENANCY_SERVICES_TIMEOUT (readiness
# timeout in seconds, default 60).
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd)
BASE_DIR=${TENANCY_STATE_DIR:-$REPO_ROOT/.local}
[[ $BASE_DIR == /* ]] || BASE_DIR=$PWD/$BASE_DIR
STATE=$BASE_DIR/services
VENV=$BASE_DIR/venv
PG_DIR=$STATE/postgres PG_DATA=$STATE/postgres/data PG_LOG=$STATE/postgres/postgres.log
REDIS_DIR=$STATE/redis MOTO_DIR=$STATE/moto
TIMEOUT=${TENANCY_SERVICES_TIMEOUT:-60}
PG_MIN_MAJOR=15
PG_SUPERUSER=postgres
IS_ROOT=false; [[ $(id -u) -eq 0 ]] && IS_ROOT=true
# PostgreSQL refuses to run as root, so root runs it as the `postgres` OS user.
if $IS_ROOT; then PG_OS_USER=postgres; else PG_OS_USER=$(id -un); fi
PG_BIN="" # set by pg_find_bin / pg_recorded_bin

# ---------------------------------------------------------------- helpers ---
log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# die_with_log MESSAGE LOGFILE: fail, showing the end of a service's log.
die_with_log() {
  log "ERROR: $1"
  if [[ -r $2 ]]; then
    log "last lines of $2:"
    tail -n 40 "$2" | sed 's/^/    /' >&2
  fi
  exit 1
}

# Run a command as the OS user owning the PostgreSQL cluster (from /, so that
# an unreadable working directory such as /root does not cause warnings).
pg_run() {
  if $IS_ROOT; then (cd / && runuser -u "$PG_OS_USER" -- "$@"); else (cd / && "$@"); fi
}

# Close every fd but 0-2 in the current (sub)shell, so that a daemon started
# from it holds neither our lock nor a pipe of our caller (a `$(...)`, a CI log
# pipe), which would otherwise wait for the daemon forever.
close_extra_fds() {
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)); then exec {fd}>&-; fi
  done
}
# detached CMD...: run CMD (may be a function) in a subshell without extra fds.
detached() { (close_extra_fds; "$@"); }

# alive PID: the process exists and is not a zombie (PID 1 may not reap).
alive() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ -n $stat && $stat != Z* ]]
}

# pid_matches PID SUBSTRING...: alive and its command line contains them all
# (guards against stale pid files pointing at a recycled, unrelated pid).
pid_matches() {
  local pid=$1 args; shift
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  args=$(ps -o args= -p "$pid" 2>/dev/null) || return 1
  local s; for s in "$@"; do [[ $args == *"$s"* ]] || return 1; done
}

# Live members of process group PGID. Our daemons lead their own group.
group_members() {
  ps -e -o pid=,pgid=,stat= | awk -v g="$1" '$2 == g && $3 !~ /^Z/ { print $1 }'
}

# stop_process NAME PID SECONDS: wait for PID (already asked to stop) to exit,
# escalating to SIGKILL of its whole process group; then kill stragglers.
stop_process() {
  local name=$1 pid=$2 secs=$3 deadline left
  deadline=$((SECONDS + secs))
  while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  if alive "$pid"; then
    log "$name (pid $pid) did not exit within ${secs}s: sending SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  left=$(group_members "$pid")
  if [[ -n $left ]]; then
    log "killing leftover $name processes: $(echo "$left" | tr '\n' ' ')"
    # shellcheck disable=SC2086 # one pid per word
    kill -KILL $left 2>/dev/null || true
  fi
  alive "$pid" && die "$name (pid $pid) is still alive after SIGKILL"
  return 0
}

# port_is_free PORT: nothing listens on 127.0.0.1:PORT (SO_REUSEADDR so that
# TIME_WAIT leftovers do not count; Linux still refuses while a listener exists).
port_is_free() {
  python3 -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try: s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError: sys.exit(1)' "$1"
}

# choose_port FILE: reuse the port remembered in FILE if still free, else let
# the kernel pick a free one; remember it and print it.
choose_port() {
  local file=$1 port=""
  [[ -s $file ]] && port=$(<"$file")
  if ! [[ $port =~ ^[0-9]+$ ]] || ! port_is_free "$port"; then
    [[ -n $port ]] && log "port $port ($file) is taken; choosing another"
    port=$(python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  fi
  printf '%s\n' "$port" >"$file"
  printf '%s\n' "$port"
}

# reap_port NAME PORT SUBSTRING...: after a stop, kill -9 whatever still listens
# on PORT if (and only if) its command line says it is ours.
reap_port() {
  local name=$1 port=$2 pid; shift 2
  [[ $port =~ ^[0-9]+$ ]] && command -v ss >/dev/null || return 0
  for pid in $({ ss -Hltnp "sport = :$port" 2>/dev/null || true; } |
    { grep -o 'pid=[0-9]*' || true; } | cut -c5- | sort -u); do
    if pid_matches "$pid" "$@"; then
      log "killing leftover $name process $pid still listening on port $port"
      kill -KILL "$pid" 2>/dev/null || true
    else
      log "warning: port $port is used by pid $pid, which is not ours; left alone"
    fi
  done
}

# wait_for NAME LOGFILE PID CMD...: poll CMD until it succeeds; fail (with the
# log tail) on timeout or as soon as the service process PID dies.
wait_for() {
  local name=$1 logfile=$2 pid=$3 deadline=$((SECONDS + TIMEOUT)); shift 3
  until "$@" >/dev/null 2>&1; do
    if [[ -n $pid ]] && ! alive "$pid"; then die_with_log "$name exited during startup" "$logfile"; fi
    ((SECONDS < deadline)) || die_with_log "$name not ready after ${TIMEOUT}s" "$logfile"
    sleep 0.2
  done
}

# Install Debian packages (root directly, else sudo; never prompts without a tty).
pkg_install() {
  local sudo=()
  command -v apt-get >/dev/null || die "cannot install $* automatically (no apt-get): please install it"
  if ! $IS_ROOT; then
    command -v sudo >/dev/null || die "cannot install $*: not root and no sudo; please install it"
    if [[ -t 0 ]]; then sudo=(sudo); else sudo=(sudo -n); fi
  fi
  log "installing $* with apt-get (this may take a minute)"
  { "${sudo[@]}" apt-get update -qq &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } </dev/null >&2 ||
    die "installing $* failed; install it manually and re-run"
}

# -------------------------------------------------------------- postgres ---
# pg_major DIR: major version of a complete server bin dir, or fail.
pg_major() {
  local tool v
  for tool in initdb pg_ctl postgres pg_isready psql; do [[ -x $1/$tool ]] || return 1; done
  v=$("$1/postgres" --version 2>/dev/null) || return 1 # postgres (PostgreSQL) 15.4 (...)
  v=${v#*) }; v=${v%%[!0-9]*}
  [[ -n $v ]] && printf '%s\n' "$v"
}

# pg_certificates: a test CA ($PG_DIR/ca.crt) and a server certificate it signs for localhost
# and 127.0.0.1 ($PG_DIR/server.crt, server.key), made once; PostgreSQL runs with ssl = on.
pg_certificates() {
  [[ -s $PG_DIR/server.crt && -s $PG_DIR/server.key && -s $PG_DIR/ca.crt ]] && return 0
  command -v openssl >/dev/null || die "openssl is needed for the test CA (apt-get install openssl)"
  log "making a test CA and a server certificate for localhost in $PG_DIR"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  (
    cd "$PG_DIR" &&
      openssl req -x509 -days 3650 -subj "/CN=tenancy services.sh test CA" "${ec[@]}" \
        -keyout ca.key -out ca.crt &&
      openssl req -subj /CN=localhost "${ec[@]}" -keyout server.key -out server.csr &&
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >server.ext &&
      openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile server.ext -out server.crt &&
      chmod 600 server.key ca.key
  ) >"$PG_DIR/openssl.log" 2>&1 || die_with_log "making the test certificates failed" "$PG_DIR/openssl.log"
  if $IS_ROOT; then chown "$PG_OS_USER": "$PG_DIR/server.key" "$PG_DIR/server.crt"; fi
}

# pg_find_bin [MAJOR]: set PG_BIN: the highest /usr/lib/postgresql/*/bin, else
# `pg_config --bindir`, else the dir of initdb on PATH; >= 15 (or == MAJOR).
pg_find_bin() {
  local want=${1:-} d m best="" best_m=0
  ok() { if [[ -n $want ]]; then [[ $1 == "$want" ]]; else (($1 >= PG_MIN_MAJOR)); fi; }
  for d in /usr/lib/postgresql/*/bin; do
    if m=$(pg_major "$d") && ok "$m" && ((m > best_m)); then best=$d best_m=$m; fi
  done
  if [[ -z $best ]] && command -v pg_config >/dev/null && d=$(pg_config --bindir 2>/dev/null) &&
    m=$(pg_major "$d") && ok "$m"; then best=$d; fi
  if [[ -z $best ]] && d=$(command -v initdb) && d=$(dirname "$d") && m=$(pg_major "$d") &&
    ok "$m"; then best=$d; fi
  [[ -n $best ]] && PG_BIN=$best
}

# Bin dir recorded by the last `up` (used by env/status/down: no searching).
pg_recorded_bin() {
  [[ -s $PG_DIR/bindir ]] && PG_BIN=$(<"$PG_DIR/bindir") && pg_major "$PG_BIN" >/dev/null
}

# Postmaster pid, if our cluster is running (pid file + live process of ours).
pg_pid() {
  local pid
  [[ -r $PG_DATA/postmaster.pid ]] || return 1
  pid=$(head -n 1 "$PG_DATA/postmaster.pid")
  pid_matches "$pid" "$PG_DATA" && printf '%s\n' "$pid"
}
pg_port() { # the running server's port (postmaster.pid line 4), else the remembered one
  if pg_pid >/dev/null; then sed -n 4p "$PG_DATA/postmaster.pid"; else cat "$PG_DIR/port" 2>/dev/null; fi
}
pg_ready() { # accepting TCP connections AND the password works (scram)
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -t 2 &&
    [[ $(PGPASSWORD=$(<"$PG_DIR/password") PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -At \
      -h 127.0.0.1 -p "$1" -U "$PG_SUPERUSER" -d postgres -c 'select 1' 2>/dev/null) == 1 ]]
}

# Unix socket dir: inside the state dir, unless its path would be too long for
# a socket address (~107 bytes); then a private dir under /tmp.
pg_sock_dir() {
  local sock=$PG_DIR/run
  if ((${#sock} > 90)); then sock=/tmp/tenancy-pg-$(printf '%s' "$PG_DIR" | cksum | cut -d' ' -f1); fi
  printf '%s\n' "$sock"
}

pg_up() {
  local pid port major sock
  mkdir -p "$PG_DIR"
  if [[ -f $PG_DATA/PG_VERSION ]]; then # existing cluster: need the same major
    major=$(<"$PG_DATA/PG_VERSION")
    pg_recorded_bin && [[ $(pg_major "$PG_BIN") == "$major" ]] || pg_find_bin "$major" ||
      die "cluster in $PG_DATA is PostgreSQL $major but no $major server binaries found (\`$0 reset\` to recreate)"
  elif ! pg_find_bin; then
    log "no PostgreSQL >= $PG_MIN_MAJOR server binaries found"
    pkg_install postgresql
    pg_find_bin || die "PostgreSQL >= $PG_MIN_MAJOR server binaries still not found after installing"
  fi
  printf '%s\n' "$PG_BIN" >"$PG_DIR/bindir"

  if pid=$(pg_pid); then
    port=$(pg_port)
    wait_for "postgres" "$PG_LOG" "$pid" pg_ready "$port"
    # A server started by an older version of this script lacks settings tests need (logical
    # replication): restarted with the current ones.
    if grep -qxF "wal_level = logical" "$PG_DATA/tenancy.conf" 2>/dev/null; then
      log "postgres already running (pid $pid, port $port)"
      return 0
    fi
    log "postgres is running with older settings: restarting it with the current ones"
    pg_run "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$TIMEOUT" stop </dev/null >&2 ||
      die_with_log "pg_ctl stop failed" "$PG_LOG"
  fi

  if $IS_ROOT && ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    log "creating system user $PG_OS_USER"
    useradd --system --user-group --no-create-home --home-dir /var/lib/postgresql \
      --shell /usr/sbin/nologin "$PG_OS_USER"
  fi
  if [[ ! -s $PG_DIR/password ]]; then
    [[ -f $PG_DATA/PG_VERSION ]] && die "$PG_DIR/password is missing for an existing cluster; run \`$0 reset\`"
    (umask 077 && python3 -c 'import secrets, string
a = string.ascii_letters + string.digits
print("".join(secrets.choice(a) for _ in range(32)))' >"$PG_DIR/password")
  fi
  chmod 600 "$PG_DIR/password"

  sock=$(pg_sock_dir)
  mkdir -p "$sock" && chmod 700 "$sock"

  if $IS_ROOT; then # hand the postgres state to the postgres user
    chown "$PG_OS_USER": "$sock"
    if [[ $(stat -c %U "$PG_DIR") != "$PG_OS_USER" ]] ||
      { [[ -e $PG_DATA ]] && [[ $(stat -c %U "$PG_DATA") != "$PG_OS_USER" ]]; }; then
      chown -R "$PG_OS_USER": "$PG_DIR"
    fi
    chown "$PG_OS_USER": "$PG_DIR" "$PG_DIR/password"
    # ... and make sure it can reach it: every ancestor must be searchable.
    if ! pg_run test -x "$PG_DIR"; then
      local d="" part parts
      IFS=/ read -ra parts <<<"${PG_DIR#/}"
      for part in "${parts[@]}"; do
        d=$d/$part
        if ! pg_run test -x "$d"; then log "chmod o+x $d (so $PG_OS_USER can reach its data)"; chmod o+x "$d"; fi
      done
    fi
  fi

  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    rm -rf "$PG_DATA" # leftover of an interrupted initdb, if any
    log "initialising PostgreSQL $(pg_major "$PG_BIN") cluster in $PG_DATA"
    pg_run "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_SUPERUSER" --pwfile="$PG_DIR/password" \
      --auth=scram-sha-256 --encoding=UTF8 --locale=C --no-sync --no-instructions \
      </dev/null >"$PG_DIR/initdb.log" 2>&1 || die_with_log "initdb failed" "$PG_DIR/initdb.log"
  fi
  # A leftover postmaster.pid of a dead server (or of a recycled pid) is stale.
  rm -f "$PG_DATA/postmaster.pid"

  port=$(choose_port "$PG_DIR/port")
  pg_certificates
  pg_quote() { printf "'%s'" "${1//\'/\'\'}"; }
  cat >"$PG_DATA/tenancy.conf" <<EOF
# Written by scripts/services.sh on every start; edit the script instead.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = $(pg_quote "$sock")
# Throw-away cluster for tests with many schemas: speed over durability.
fsync = off
synchronous_commit = off
full_page_writes = off
# The router-throughput benchmark keeps three servers' pools open at once (a bare pool, a
# pool per tenant, the router's budget): up to about 710 connections.
max_connections = 800
shared_buffers = 256MB
max_locks_per_transaction = 512
password_encryption = 'scram-sha-256'
# Tenant moves copy tables with logical replication (publications, slots, subscriptions),
# several tests at once.
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
max_worker_processes = 64
max_logical_replication_workers = 32
max_sync_workers_per_subscription = 2
# TLS with a test CA (PG_SSL_ROOT_CERT): sslmode=require and verify-full can be tried here.
ssl = on
ssl_cert_file = $(pg_quote "$PG_DIR/server.crt")
ssl_key_file = $(pg_quote "$PG_DIR/server.key")
EOF
  if $IS_ROOT; then chown "$PG_OS_USER": "$PG_DATA/tenancy.conf"; fi
  grep -qxF "include_if_exists = 'tenancy.conf'" "$PG_DATA/postgresql.conf" ||
    printf "\n# Added by scripts/services.sh\ninclude_if_exists = 'tenancy.conf'\n" >>"$PG_DATA/postgresql.conf"

  log "starting postgres on 127.0.0.1:$port"
  detached pg_run "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$TIMEOUT" start </dev/null >&2 ||
    die_with_log "pg_ctl start failed" "$PG_LOG"
  pid=$(pg_pid) || die_with_log "postgres is not running after pg_ctl start" "$PG_LOG"
  wait_for "postgres" "$PG_LOG" "$pid" pg_ready "$port"
}

pg_down() {
  local pid port
  pid=$(pg_pid) || { log "postgres: not running"; return 0; }
  port=$(pg_port)
  log "stopping postgres (pid $pid, port $port)"
  if pg_recorded_bin || pg_find_bin; then
    pg_run "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$TIMEOUT" stop </dev/null >&2 ||
      log "pg_ctl stop failed; killing"
  else
    kill -INT "$pid" 2>/dev/null || true # SIGINT = fast shutdown
  fi
  stop_process postgres "$pid" 10
  reap_port postgres "$port" "$PG_DATA"
}

# ----------------------------------------------------------------- redis ---
redis_port() { cat "$REDIS_DIR/port" 2>/dev/null; }
redis_pid() { # redis rewrites its title to "redis-server 127.0.0.1:PORT"
  local pid port
  pid=$(cat "$REDIS_DIR/redis.pid" 2>/dev/null) && port=$(redis_port) &&
    pid_matches "$pid" redis-server "127.0.0.1:$port" && printf '%s\n' "$pid"
}
redis_ping() { [[ $(timeout 5 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]; }

redis_up() {
  local pid port
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    pkg_install redis-server
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
      die "redis-server/redis-cli still not found after installing"
    fi
  fi
  mkdir -p "$REDIS_DIR"
  if pid=$(redis_pid); then
    port=$(redis_port)
    wait_for redis "$REDIS_DIR/redis.log" "$pid" redis_ping "$port"
    log "redis already running (pid $pid, port $port)"
    return 0
  fi
  rm -f "$REDIS_DIR/redis.pid"
  port=$(choose_port "$REDIS_DIR/port")
  log "starting redis on 127.0.0.1:$port"
  # shellcheck disable=SC2094 # redis appends to its log itself; so do we, before
  detached redis-server --bind 127.0.0.1 --port "$port" --daemonize yes \
    --pidfile "$REDIS_DIR/redis.pid" --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" \
    --save "" --appendonly no </dev/null >>"$REDIS_DIR/redis.log" 2>&1 ||
    die_with_log "redis-server failed to start" "$REDIS_DIR/redis.log"
  wait_for redis "$REDIS_DIR/redis.log" "" redis_pid
  wait_for redis "$REDIS_DIR/redis.log" "$(redis_pid)" redis_ping "$port"
}

redis_down() {
  local pid port
  pid=$(redis_pid) || { log "redis: not running"; return 0; }
  port=$(redis_port)
  log "stopping redis (pid $pid, port $port)"
  timeout 10 redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 ||
    kill -TERM "$pid" 2>/dev/null || true
  stop_process redis "$pid" 10
  reap_port redis "$port" redis-server
}

# ------------------------------------------------------------------ moto ---
moto_port() { cat "$MOTO_DIR/port" 2>/dev/null; }
moto_pid() {
  local pid port
  pid=$(cat "$MOTO_DIR/moto.pid" 2>/dev/null) && port=$(moto_port) &&
    pid_matches "$pid" moto_server "-p $port" && printf '%s\n' "$pid"
}
moto_http() { # any HTTP answer counts
  if command -v curl >/dev/null; then
    curl -s -o /dev/null -m 3 "http://127.0.0.1:$1/"
  else
    python3 -c 'import sys, urllib.request, urllib.error
try: urllib.request.urlopen("http://127.0.0.1:%s/" % sys.argv[1], timeout=3)
except urllib.error.HTTPError: pass' "$1"
  fi
}

# The venv lives beside the state dir (<repo>/.local/venv) and survives `reset`.
moto_venv() {
  if [[ -e $VENV ]] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
    log "virtualenv $VENV is broken; recreating it"
    rm -rf "$VENV"
  fi
  if [[ ! -e $VENV ]]; then
    log "creating virtualenv $VENV"
    if ! python3 -m venv "$VENV" </dev/null >&2; then
      rm -rf "$VENV"
      pkg_install python3-venv
      python3 -m venv "$VENV" </dev/null >&2 || die "python3 -m venv $VENV failed"
    fi
  fi
  if [[ ! -x $VENV/bin/moto_server ]]; then
    log "installing moto[server] into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check 'moto[server]' \
      </dev/null >&2 || die "pip install 'moto[server]' failed"
  fi
}

# Start moto without waiting for it (it takes a few seconds to import);
# moto_wait does the waiting, so postgres and redis start meanwhile.
moto_start() {
  local pid port
  mkdir -p "$MOTO_DIR"
  if pid=$(moto_pid); then return 0; fi
  moto_venv
  rm -f "$MOTO_DIR/moto.pid"
  port=$(choose_port "$MOTO_DIR/port")
  log "starting moto_server on 127.0.0.1:$port"
  # Own session (setsid) so it survives our terminal and leads its own process
  # group; the shell writes its pid, then becomes moto_server (exec).
  # The background subshell execs too, so no copy of this script lingers.
  (
    close_extra_fds
    # shellcheck disable=SC2016 # $$ and $@ are for the inner shell
    exec nohup setsid sh -c 'echo $$ >"$0"; exec "$@"' "$MOTO_DIR/moto.pid" \
      "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" </dev/null >>"$MOTO_DIR/moto.log" 2>&1
  ) &
}

moto_wait() {
  local pid port
  local deadline=$((SECONDS + 10))
  port=$(moto_port)
  until [[ -s $MOTO_DIR/moto.pid ]]; do # written at once by moto_start's shell
    ((SECONDS < deadline)) || die_with_log "moto did not start" "$MOTO_DIR/moto.log"
    sleep 0.1
  done
  pid=$(<"$MOTO_DIR/moto.pid")
  wait_for moto "$MOTO_DIR/moto.log" "$pid" moto_http "$port"
  moto_pid >/dev/null || die_with_log "moto (pid $pid) is not running" "$MOTO_DIR/moto.log"
  log "moto ready (pid $pid, port $port)"
}

moto_down() {
  local pid port
  pid=$(moto_pid) || { log "moto: not running"; return 0; }
  port=$(moto_port)
  log "stopping moto (pid $pid, port $port)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  stop_process moto "$pid" 10
  reap_port moto "$port" moto_server
}

# -------------------------------------------------------------- commands ---
cmd_up() {
  local start=$SECONDS
  command -v python3 >/dev/null || pkg_install python3 python3-venv
  command -v ps >/dev/null || pkg_install procps
  mkdir -p "$STATE"
  moto_start
  pg_up
  redis_up
  moto_wait
  log "all services up in $((SECONDS - start))s (state: $STATE)"
}

# Servers of ours that outlive their parents: `make demo`'s tenantctl and tenant-router (pid
# files under .local/demo/), and PostgreSQL clusters the test harness started for fault
# injection under target/testkit/ (a killed test run leaves them behind).
stop_strays() {
  local pidfile pid data
  for pidfile in "$BASE_DIR"/demo/*.pid; do
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile")
    if alive "$pid" && pid_matches "$pid" "$REPO_ROOT/target/"; then
      log "stopping $(basename "$pidfile" .pid) (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      stop_process "$(basename "$pidfile" .pid)" "$pid" 15
    fi
    rm -f "$pidfile"
  done
  for data in "$REPO_ROOT"/target/testkit/pg-*/data; do
    [[ -f $data/postmaster.pid ]] || continue
    pg_find_bin >/dev/null 2>&1 || break
    log "stopping a test PostgreSQL left in $data"
    pg_run "$PG_BIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  done
}

cmd_down() {
  stop_strays
  pg_down
  redis_down
  moto_down
}

# emit KEY VALUE: KEY=VALUE, shell-quoted only if the value needs it.
emit() {
  if [[ $2 =~ ^[A-Za-z0-9_./:@%+,=-]*$ ]]; then printf '%s=%s\n' "$1" "$2"; else printf '%s=%q\n' "$1" "$2"; fi
}

cmd_env() {
  local down=()
  if ! pg_recorded_bin || ! pg_pid >/dev/null || ! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$(pg_port)" -t 2; then
    down+=(postgres)
  fi
  redis_pid >/dev/null && redis_ping "$(redis_port)" || down+=(redis)
  moto_pid >/dev/null && moto_http "$(moto_port)" || down+=(moto)
  ((${#down[@]} == 0)) || die "not running: ${down[*]}; start them with: $0 up"
  emit DATABASE_URL "postgres://$PG_SUPERUSER:$(<"$PG_DIR/password")@127.0.0.1:$(pg_port)/postgres"
  [[ ! -s $PG_DIR/ca.crt ]] || emit PG_SSL_ROOT_CERT "$PG_DIR/ca.crt"
  emit REDIS_URL "redis://127.0.0.1:$(redis_port)/"
  emit AWS_ENDPOINT_URL "http://127.0.0.1:$(moto_port)"
  emit AWS_REGION us-east-1
  emit AWS_ACCESS_KEY_ID testing
  emit AWS_SECRET_ACCESS_KEY testing
  emit TENANCY_PG_BIN "$PG_BIN"
  emit TENANCY_PG_DATA "$PG_DATA"
  emit TENANCY_PG_USER "$(stat -c %U "$PG_DATA")"
  emit TENANCY_PYTHON "$VENV/bin/python"
}

cmd_status() {
  local svc pid port state
  for svc in pg redis moto; do
    port=$("${svc}_port" || true)
    if pid=$("${svc}_pid"); then state="running pid=$pid"; else state=stopped; fi
    printf '%-8s %s port=%s\n' "${svc/pg/postgres}" "$state" "${port:--}"
  done
}

# Serialise up/down/reset (parallel CI steps, a second terminal...).
take_lock() {
  mkdir -p "$BASE_DIR"
  command -v flock >/dev/null || return 0
  exec 9>"$BASE_DIR/.services.lock"
  flock -w 600 9 || die "another $0 is still running (lock $BASE_DIR/.services.lock)"
}

usage() { echo "usage: $0 up|down|env|status|reset" >&2; exit 2; }

case ${1:-} in
  up) take_lock; cmd_up >&2; cmd_env ;;
  down) take_lock; cmd_down >&2 ;;
  reset) take_lock; cmd_down >&2; log "deleting $STATE"; rm -rf "$STATE" "$(pg_sock_dir)" ;;
  env) cmd_env ;;
  status) cmd_status ;;
  *) usage ;;
esac
