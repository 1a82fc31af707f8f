#!/usr/bin/env bash
# local-cluster.sh: a real Slurm cluster on this one machine, for trying `orpo-dist submit` and
# orpo_dist/configs/slurm/orpo.sbatch without an HPC system, and for the tests (tests/test_slurm_*.py).
#
#   bash scripts/local-cluster.sh start     # install if missing, start, wait until both nodes are idle,
#                                           # then print the env line (stdout; messages go to stderr)
#   eval "$(bash scripts/local-cluster.sh env)"   # export SLURM_CONF for sinfo/sbatch/squeue/sacct/submitit
#   orpo-dist submit --nodes 2 --gpus-per-node 0 --strategy zero3 --time 15 --wait tiny
#   bash scripts/local-cluster.sh status    # exit 0 only when every daemon is up and both nodes usable
#   bash scripts/local-cluster.sh stop      # cancel this cluster's jobs, stop only the daemons this
#                                           # script started (by their recorded pids), wait for them,
#                                           # remove the cluster's network
#   bash scripts/local-cluster.sh link n2 down   # cut node n2's network link (as a failed cable or
#   bash scripts/local-cluster.sh link n2 up     # switch port would); `up` mends it
#   bash scripts/local-cluster.sh address n2     # print node n2's address
#
# What runs: munged (private key and socket), MariaDB (private datadir, socket and port on
# 127.0.0.1), slurmdbd (accounting: without it sacct fails and submitit cannot see job states),
# slurmctld, and two slurmd "nodes" n1 and n2, each with all of this machine's CPUs.
#
# Two hosts, two addresses: each slurmd runs in its own network namespace (iproute2 `ip netns`)
# with its own address, 10.231.K.11 and .12, linked by a veth pair to a bridge that holds
# 10.231.K.1 (slurmctld's and slurmdbd's address) in this machine's own namespace. A job's
# processes live in their node's namespace, so the main address node 1 resolves is really node 0's,
# and gloo/TCP traffic between nodes crosses the bridge; `link NODE down` cuts it. K is picked
# per state folder (from its ports). The nodes share everything else: file systems, the munge
# socket (a unix socket: a path, not a network address), the hostname (which resolves to
# 127.0.0.1 in /etc/hosts, as Debian's 127.0.1.1 does: the trap that makes gloo pick loopback).
# Partitions: `debug` (default, both nodes) and `urgent` (both nodes, higher priority tier: its
# jobs pre-empt debug jobs, which get their --signal at once, 120 s of grace, and are requeued).
# Nothing touches the system's munge, MariaDB or /etc/slurm.
#
# Everything lives under ${ORPO_SLURM_DIR:-/tmp/orpo-slurm} (configs, state, logs, pid files,
# munge key and socket, MariaDB data, about 100 MB; the network namespaces and bridge are named
# orpo-K-n1, orpo-K-n2, orpo-K-br): a fresh folder is a fresh cluster whose job ids
# start at 1; delete the folder after `stop` to throw the cluster away. Ports are picked free on
# the first start of a folder and kept in etc/ports (ORPO_SLURM_PORT_BASE=N forces N..N+4), so
# several clusters (say CI and yours) can run side by side with different folders.
#
# Requirements: root on Debian 12 (or a Debian-like system with Slurm 22.05): `start` runs
# `apt-get install slurmctld slurmd slurm-client slurmdbd munge mariadb-server` when a command is
# missing (non-interactive), and iproute2 for `ip`. No cgroups or systemd needed
# (proctrack/linuxproc, task/none). Network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN
# (root on a VM or a privileged container).
# ORPO_SLURM_START_TIMEOUT (default 90) bounds each wait of `start`, in seconds.
set -euo pipefail

DIR=${ORPO_SLURM_DIR:-/tmp/orpo-slurm}
case $DIR in /*) ;; *) DIR=$PWD/$DIR ;; esac
DIR=${DIR%/}
ETC=$DIR/etc RUN=$DIR/run LOG=$DIR/log
CONF=$ETC/slurm.conf
PORTS_FILE=$ETC/ports
MUNGE_SOCKET=$RUN/munge/munge.socket.2
DB_SOCKET=$RUN/mariadb.sock
CLUSTER=orpo-local
ACCOUNT=orpo
NODES=(n1 n2)
DAEMONS=(munged mariadb slurmdbd slurmctld slurmd-n1 slurmd-n2)  # start order; stop is the reverse
TIMEOUT=${ORPO_SLURM_START_TIMEOUT:-90}
export PATH=$PATH:/usr/sbin:/sbin

say() { echo "local-cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

# ---------------------------------------------------------------- pids: only ever our own daemons
exe_of() {  # the program name a daemon's pid file must point at
  case $1 in mariadb) echo mariadbd ;; slurmd-*) echo slurmd ;; *) echo "$1" ;; esac
}

proc_field() {  # proc_field PID N: field N of /proc/PID/stat after the command name (1 state, 20 start)
  local stat
  stat=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) && [ -n "$stat" ] || return 1
  awk -v n="$2" '{print $n}' <<<"$stat"
}

running() {  # running PID [STARTTIME]: that process exists and is not a zombie (nobody may reap
  local state    # our daemons' zombies: kill -0 succeeds on them), and started at STARTTIME
  state=$(proc_field "$1" 1) && [ "$state" != Z ] && [ "$state" != X ] || return 1
  [ -z "${2:-}" ] || [ "$(proc_field "$1" 20)" = "$2" ]
}

daemon_pid() {  # daemon_pid NAME: print the pid if NAME's pid file names a live daemon of this folder
  local pid
  pid=$(tr -dc 0-9 2>/dev/null <"$RUN/$1.pid") && [ -n "$pid" ] && running "$pid" || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$(exe_of "$1")" ] || return 1
  # A recycled pid would have to name the same program AND mention this folder (slurmdbd takes no
  # arguments: its environment holds SLURM_CONF).
  grep -qaF "$DIR/" "/proc/$pid/cmdline" "/proc/$pid/environ" 2>/dev/null || return 1
  echo "$pid"
}

up() { daemon_pid "$1" >/dev/null; }

# ---------------------------------------------------------------- logs and waiting
show_logs() {  # the last lines of each existing log, without the harmless PMIx noise
  local file
  for file in "$@"; do
    [ -s "$file" ] || continue
    echo "----- $file (last lines)" >&2
    grep -avE 'pmix|MPI: Cannot create context' "$file" | tail -n 15 >&2 || true
  done
}

logs_of() {
  local name
  for name in "$@"; do echo "$LOG/$name.log" "$LOG/$name.stdout"; done
}

fail() {  # fail MESSAGE DAEMON...: explain, show those daemons' logs, exit 1
  local message=$1
  shift
  say "error: $message"
  # shellcheck disable=SC2046
  show_logs $(logs_of "$@")
  say "logs and state kept in $DIR (delete the folder for a fresh cluster)"
  exit 1
}

wait_until() {  # wait_until WHAT DAEMON COMMAND...: poll COMMAND; fail fast if DAEMON died
  local what=$1 daemon=$2 deadline=$((SECONDS + TIMEOUT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ -s "$RUN/$daemon.pid" ] && ! up "$daemon"; then fail "$daemon exited while starting" "$daemon"; fi
    [ $SECONDS -lt $deadline ] || fail "$what not ready after ${TIMEOUT}s" "$daemon"
    sleep 0.2
  done
}

launch() {  # launch DAEMON COMMAND...: start a daemon in its own session, away from our stdio/lock
  local name=$1
  shift
  rm -f "$RUN/$name.pid"
  setsid -w "$@" </dev/null >>"$LOG/$name.stdout" 2>&1 9>&- || fail "$name did not start ($*)" "$name"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- install and configure
install_packages() {
  local missing=() cmd path
  for cmd in slurmctld slurmd sbatch sacctmgr slurmdbd munged mariadbd mariadb-install-db mariadb setsid flock nsenter ip; do
    # (command -v also names a file that is not executable)
    path=$(command -v "$cmd" 2>/dev/null) && [ -x "$path" ] || missing+=("$cmd")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}; as root: apt-get install slurmctld slurmd slurm-client slurmdbd munge mariadb-server iproute2"
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install Slurm 22.05, munge and MariaDB yourself"
  say "installing Slurm, munge and MariaDB from the distribution (missing: ${missing[*]}; about a minute)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null >&2 || die "apt-get update failed"
  apt-get install -y -qq -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    slurmctld slurmd slurm-client slurmdbd munge mariadb-server util-linux iproute2 </dev/null >"$LOG/apt.log" 2>&1 ||
    { tail -n 30 "$LOG/apt.log" >&2; die "apt-get install failed (full log: $LOG/apt.log)"; }
  for cmd in "${missing[@]}"; do
    path=$(command -v "$cmd" 2>/dev/null) || path=''
    if [ -z "$path" ] || [ ! -x "$path" ]; then die "installed the packages but $cmd is still missing"; fi
  done
}

read_ports() {  # the ports recorded by an earlier start of this folder, if any
  [ -s "$PORTS_FILE" ] || return 1
  # shellcheck disable=SC1090
  . "$PORTS_FILE"
}

choose_ports() {  # once per state folder: five free ports in a row, recorded in etc/ports
  read_ports && return 0
  local base='' candidate p
  if [ -n "${ORPO_SLURM_PORT_BASE:-}" ]; then
    base=$ORPO_SLURM_PORT_BASE
  else
    for candidate in $(seq 6917 10 7907); do
      for p in $(seq "$candidate" "$((candidate + 4))"); do port_busy "$p" && continue 2; done
      base=$candidate
      break
    done
    [ -n "$base" ] || die "no five free ports between 6917 and 7911; set ORPO_SLURM_PORT_BASE"
  fi
  CTLD_PORT=$base N1_PORT=$((base + 1)) N2_PORT=$((base + 2)) DBD_PORT=$((base + 3)) DB_PORT=$((base + 4))
  printf 'CTLD_PORT=%s\nN1_PORT=%s\nN2_PORT=%s\nDBD_PORT=%s\nDB_PORT=%s\n' \
    "$CTLD_PORT" "$N1_PORT" "$N2_PORT" "$DBD_PORT" "$DB_PORT" >"$PORTS_FILE"
}

network_names() {  # the cluster's subnet and bridge: K from its ports, so clusters of other folders differ
  local k=$(( (CTLD_PORT / 10) % 200 + 20 ))
  NET=10.231.$k
  BRIDGE=orpo-$k-br
  CTLD_ADDR=$NET.1
}

node_netns() { echo "orpo-${NET##*.}-$1"; }  # a node's namespace, also the name of its veth's host end

node_addr() {  # n1 -> K.11, n2 -> K.12
  local i
  for i in "${!NODES[@]}"; do [ "${NODES[i]}" = "$1" ] && { echo "$NET.$((11 + i))"; return 0; }; done
  die "no node $1 in this cluster (nodes: ${NODES[*]})"
}

check_port() {  # check_port PORT DAEMON: before starting DAEMON, make sure nobody else holds PORT
  port_busy "$1" || return 0
  die "port $1 (for $2) is taken by another program (another local cluster? see: ss -ltnp | grep :$1);
  stop that, or use another ORPO_SLURM_DIR, or delete $PORTS_FILE (new ports) with this cluster stopped"
}

write_configs() {
  mkdir -p "$ETC" "$RUN/munge" "$LOG" "$DIR/state" "$DIR/mysql" "$DIR/spool/${NODES[0]}" "$DIR/spool/${NODES[1]}"
  # munged refuses a socket folder (or any parent) that others cannot search.
  chmod 755 "$DIR" "$RUN" "$RUN/munge"
  [ ${#MUNGE_SOCKET} -lt 100 ] || die "state folder path too long for a unix socket (${#MUNGE_SOCKET} chars): $DIR"
  if [ ! -s "$ETC/munge.key" ]; then
    (umask 077 && dd if=/dev/urandom of="$ETC/munge.key" bs=1024 count=1 status=none)
  fi
  chmod 400 "$ETC/munge.key"
  choose_ports
  network_names
  local cpus mem host new
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 4 ))  # MiB each node may promise
  host=$(hostname -s 2>/dev/null || hostname)
  new=$ETC/slurm.conf.new
  cat >"$new" <<EOF
# Written by scripts/local-cluster.sh: two nodes on one machine, each in its own network namespace
# with its own address; slurmctld and slurmdbd on the bridge between them. Edit the script, not this file.
ClusterName=$CLUSTER
SlurmctldHost=localhost($CTLD_ADDR)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
# Munge on a private socket; every client and daemon reads it from here.
AuthType=auth/munge
CredType=cred/munge
# cred_expire=10: a requeued job may start again after ~10 s instead of the default 120.
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
# No cgroups here: track processes through /proc, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
# A requeued job waits cred_expire, then for a scheduler pass: backfill only runs after a change,
# so the main loop (sched_interval, default 60 s) would start it 10-60 s late. 5 s each here.
SchedulerParameters=bf_interval=5,sched_interval=5
MailProg=/bin/true
ReturnToService=2
# Batch jobs are requeueable unless they say --no-requeue (submitit's checkpoint path runs
# "scontrol requeue" on itself; orpo_dist/configs/slurm/orpo.sbatch does too).
JobRequeue=1
# Checkpoints are taken on the warning signal (--signal: before the time limit, or at once on
# pre-emption, see GraceTime); KillWait is only the SIGTERM -> SIGKILL gap after it. submitit's
# tasks ignore SIGTERM, so each cancel, requeue or pre-emption of a submitit job holds its nodes
# for KillWait: 10 s rather than the default 30.
KillWait=10
MinJobAge=300
# Pre-emption: jobs in a higher PriorityTier partition (urgent) requeue jobs of a lower one
# (debug). The victim gets its --signal (submitit: USR2, orpo.sbatch: B:USR1) at once instead of
# SIGTERM, then GraceTime (partition) to checkpoint and requeue itself before SIGTERM/SIGKILL.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$CTLD_ADDR
AccountingStoragePort=$DBD_PORT
# Without this the accounting client falls back to the system munge socket.
AccountingStoragePass=$MUNGE_SOCKET
# As on a real HPC system: a job must name an account that exists (root's default is set up by
# 'start'), and a request beyond a partition's limits is refused by sbatch at once, not queued
# forever (the tests check how orpo-dist reports those refusals).
AccountingStorageEnforce=associations,limits,qos
EnforcePartLimits=ALL
NodeName=${NODES[0]} NodeHostname=$host NodeAddr=$(node_addr "${NODES[0]}") Port=$N1_PORT CPUs=$cpus RealMemory=$mem State=UNKNOWN
NodeName=${NODES[1]} NodeHostname=$host NodeAddr=$(node_addr "${NODES[1]}") Port=$N2_PORT CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=${NODES[0]},${NODES[1]} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:2 PriorityTier=1 GraceTime=120
PartitionName=urgent Nodes=${NODES[0]},${NODES[1]} Default=NO MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=2
PartitionName=short Nodes=${NODES[0]},${NODES[1]} Default=NO MaxTime=30 State=UP OverSubscribe=FORCE:2 PriorityTier=1
EOF
  if [ -f "$CONF" ] && ! cmp -s "$new" "$CONF" && up slurmctld; then
    say "warning: the configuration changed while the cluster runs; 'stop' then 'start' to apply it"
  fi
  mv -f "$new" "$CONF"
  cat >"$ETC/slurmdbd.conf.new" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=orpo-local
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$ETC/slurmdbd.conf.new"  # slurmdbd refuses a readable file holding a password
  mv -f "$ETC/slurmdbd.conf.new" "$ETC/slurmdbd.conf"
}

# ---------------------------------------------------------------- the network: two hosts, two addresses
netns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

node_network_ok() {  # the node's namespace exists and its eth0 holds its address
  netns_exists "$(node_netns "$1")" &&
    ip -n "$(node_netns "$1")" -o -4 addr show dev eth0 2>/dev/null | grep -qF " $(node_addr "$1")/24 "
}

network_up() {  # idempotent: the bridge on CTLD_ADDR, then per node a namespace, a veth pair, an address
  local node ns
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    if ip -o -4 addr show 2>/dev/null | grep -qF " $NET."; then
      die "the subnet $NET.0/24 is already used on this machine (ip -o addr | grep $NET.); pick other ports, and so another subnet, with ORPO_SLURM_PORT_BASE and a fresh ORPO_SLURM_DIR"
    fi
    ip link add "$BRIDGE" type bridge 2>"$LOG/network.log" ||
      die "cannot create the network bridge $BRIDGE ($(cat "$LOG/network.log")): network namespaces need root with CAP_NET_ADMIN and CAP_SYS_ADMIN (a VM or a privileged container)"
    ip addr add "$CTLD_ADDR/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  for node in "${NODES[@]}"; do
    node_network_ok "$node" && { ip link set "$(node_netns "$node")" up; continue; }
    ns=$(node_netns "$node")
    ! netns_exists "$ns" || ip netns del "$ns"
    ! ip link show "$ns" >/dev/null 2>&1 || ip link del "$ns"
    { ip netns add "$ns" &&
      ip link add "$ns" type veth peer name "$ns-c" &&
      ip link set "$ns-c" netns "$ns" &&
      ip -n "$ns" link set "$ns-c" name eth0 &&
      ip -n "$ns" addr add "$(node_addr "$node")/24" dev eth0 &&
      ip -n "$ns" link set eth0 up &&
      ip -n "$ns" link set lo up &&
      ip link set "$ns" master "$BRIDGE" &&
      ip link set "$ns" up; } 2>"$LOG/network.log" ||
      die "cannot give node $node its network namespace $ns: $(cat "$LOG/network.log")"
  done
}

network_down() {  # the namespaces (which takes their veth pairs with them), then the bridge
  local node ns
  for node in "${NODES[@]}"; do
    ns=$(node_netns "$node")
    ! netns_exists "$ns" || ip netns del "$ns" 2>/dev/null || say "warning: could not delete network namespace $ns"
    ! ip link show "$ns" >/dev/null 2>&1 || ip link del "$ns" 2>/dev/null || true
  done
  ! ip link show "$BRIDGE" >/dev/null 2>&1 || ip link del "$BRIDGE" 2>/dev/null || say "warning: could not delete bridge $BRIDGE"
}

# ---------------------------------------------------------------- daemons
# shellcheck disable=SC2120,SC2119
sql() { mariadb --no-defaults --socket="$DB_SOCKET" -u root "$@"; }

start_munge() {
  up munged && return 0
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  launch munged munged --force --key-file="$ETC/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$RUN/munged.pid" --log-file="$LOG/munged.log" --seed-file="$DIR/munge.seed"
  wait_until munged munged test -S "$MUNGE_SOCKET"
}

start_mariadb() {
  if ! up mariadb; then
    # (A data folder whose creation was interrupted still has the marker: made again from scratch.)
    if [ ! -d "$DIR/mysql/mysql" ] || [ -f "$DIR/mysql.creating" ]; then
      say "creating the MariaDB data folder"
      touch "$DIR/mysql.creating"
      rm -rf "${DIR:?}/mysql" && mkdir -p "$DIR/mysql"
      mariadb-install-db --no-defaults --datadir="$DIR/mysql" --user=root --skip-test-db --skip-name-resolve \
        --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 ||
        fail "mariadb-install-db failed" mariadb-install
      rm -f "$DIR/mysql.creating"
    fi
    check_port "$DB_PORT" MariaDB
    rm -f "$DB_SOCKET"
    # Foreground server: backgrounded in its own session. Small log and buffer pool (a test cluster).
    setsid mariadbd --no-defaults --datadir="$DIR/mysql" --user=root --bind-address=127.0.0.1 \
      --port="$DB_PORT" --skip-name-resolve --socket="$DB_SOCKET" --pid-file="$RUN/mariadb.pid" \
      --log-error="$LOG/mariadb.log" --innodb-buffer-pool-size=128M --innodb-log-file-size=16M \
      --innodb-lock-wait-timeout=900 </dev/null >>"$LOG/mariadb.stdout" 2>&1 9>&- &
    echo $! >"$RUN/mariadb.pid"  # at once (mariadbd writes it only when ready): a failed start stops it
    wait_until MariaDB mariadb sql -e "SELECT 1"
  fi
  # shellcheck disable=SC2119
  sql <<EOF || fail "could not create the accounting database" mariadb
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'orpo-local';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

start_slurmdbd() {
  up slurmdbd && return 0
  check_port "$DBD_PORT" slurmdbd
  # slurmdbd takes no config option: it reads slurmdbd.conf beside $SLURM_CONF.
  launch slurmdbd slurmdbd
  wait_until slurmdbd slurmdbd port_busy "$DBD_PORT"
}

register_accounting() {  # the cluster, an account and root in it (idempotent, non-interactive)
  local have
  have=$(timeout 30 sacctmgr -n -P list cluster format=cluster 2>&1) || fail "sacctmgr cannot reach slurmdbd: $have" slurmdbd
  grep -qx "$CLUSTER" <<<"$have" || timeout 30 sacctmgr -i add cluster "$CLUSTER" >/dev/null
  have=$(timeout 30 sacctmgr -n -P list account format=account)
  grep -qx "$ACCOUNT" <<<"$have" ||
    timeout 30 sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description=orpo-dist organization=orpo-dist >/dev/null
  have=$(timeout 30 sacctmgr -n -P list user format=user)
  grep -qx root <<<"$have" || timeout 30 sacctmgr -i add user root account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
}

start_slurmctld() {
  up slurmctld && return 0
  check_port "$CTLD_PORT" slurmctld
  launch slurmctld slurmctld -f "$CONF"
  wait_until slurmctld slurmctld scontrol ping
}

node_states() { sinfo -h -N -o "%N %t" 2>/dev/null | sort -u; }

nodes_usable() {  # every node answers and is idle, mixed or allocated (not completing, down, drained)
  local states node
  states=$(node_states) || return 1
  for node in "${NODES[@]}"; do
    grep -Eq "^$node (idle|mix|alloc)\$" <<<"$states" || return 1
    ! grep -Eqv "^$node (idle|mix|alloc)\$" <<<"$(grep "^$node " <<<"$states")" || return 1
  done
}

start_nodes() {
  local node
  for node in "${NODES[@]}"; do
    up "slurmd-$node" && continue
    # nsenter --net, not `ip netns exec`: that also remounts /sys for the namespace, which hides
    # /sys/fs/cgroup from slurmd ("Unable to initialize cgroup plugin").
    launch "slurmd-$node" nsenter --net="/run/netns/$(node_netns "$node")" slurmd -f "$CONF" -N "$node"
  done
  local deadline=$((SECONDS + TIMEOUT)) resumed=0 states
  until nodes_usable; do
    for node in "${NODES[@]}"; do up "slurmd-$node" || fail "slurmd $node exited while starting" "slurmd-$node" slurmctld; done
    states=$(node_states || true)
    # A node drained by an earlier run (e.g. a config since changed) stays drained: resume it once.
    if [ $resumed -eq 0 ] && grep -Eq '^n[0-9]+ (drain|drng|down|fail)$' <<<"$states"; then
      say "resuming nodes left down/drained by an earlier run: $(sinfo -h -R -o '%N: %E' | tr '\n' ' ')"
      scontrol update nodename="$(IFS=,; echo "${NODES[*]}")" state=resume 2>/dev/null || true
      resumed=1
    fi
    if [ $SECONDS -ge $deadline ]; then
      say "node states: $(tr '\n' ' ' <<<"$states"); reasons: $(sinfo -h -R -o '%N: %E' 2>/dev/null | tr '\n' ' ')"
      fail "nodes not idle after ${TIMEOUT}s" slurmctld slurmd-n1 slurmd-n2
    fi
    sleep 0.2
  done
}

# ---------------------------------------------------------------- stopping
our_steps() {  # live slurmstepd processes of this cluster (they inherit slurmd's SLURM_CONF)
  local proc
  for proc in /proc/[0-9]*; do
    [ "$(cat "$proc/comm" 2>/dev/null)" = slurmstepd ] || continue
    grep -qaF "SLURM_CONF=$CONF" "$proc/environ" 2>/dev/null && running "${proc#/proc/}" && echo "${proc#/proc/}"
  done
  return 0
}

descendants() {  # every descendant of the given pids
  # shellcheck disable=SC2002
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v roots="$*" '
    { i = 0; for (j = 1; j <= length($0); j++) if (substr($0, j, 1) == ")") i = j
      split(substr($0, i + 2), f, " "); parent[$1] = f[2] }
    END { n = split(roots, q, " "); for (k = 1; k <= n; k++) seen[q[k]] = 1
          changed = 1
          while (changed) { changed = 0
            for (p in parent) if (!(p in seen) && (parent[p] in seen)) { seen[p] = 1; kid[p] = 1; changed = 1 } }
          for (p in kid) print p }'
}

kill_job_processes() {  # SIGKILL what this cluster's job steps run (slurmstepd then ends by itself)
  local steps pids
  steps=$(our_steps | tr '\n' ' ')
  [ -n "${steps// /}" ] || return 0
  # shellcheck disable=SC2086
  pids=$(descendants $steps | tr '\n' ' ')
  [ -n "${pids// /}" ] || return 0
  say "killing the processes of this cluster's job steps: $pids"
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
}

queue_empty() { [ -z "$(timeout 20 squeue -h -o %A 2>/dev/null)" ]; }

wait_queue_empty() {  # wait_queue_empty SECONDS
  local deadline=$((SECONDS + $1))
  until queue_empty; do [ $SECONDS -lt $deadline ] || return 1; sleep 0.3; done
}

cancel_jobs() {  # jobs outlive slurmd and slurmctld (slurmstepd keeps them running): end them first
  up slurmctld || return 0
  local jobs
  jobs=$(timeout 20 squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ') || return 0
  [ -n "${jobs// /}" ] || return 0
  say "cancelling jobs still queued or running: $jobs"
  # shellcheck disable=SC2086
  timeout 20 scancel $jobs 2>/dev/null || true
  wait_queue_empty 5 && return 0
  # Still completing: something ignores SIGTERM and Slurm would wait KillWait to SIGKILL it.
  kill_job_processes
  wait_queue_empty 20 || say "warning: jobs still listed: $(timeout 20 squeue -h -o '%A %T' | tr '\n' ' ')"
}

stop_daemon() {  # SIGTERM the recorded pid and wait for that process to end (SIGKILL after 30 s)
  local name=$1 pid start
  if ! pid=$(daemon_pid "$name"); then
    rm -f "$RUN/$name.pid"
    return 0
  fi
  # Wait on the process, not its pid file: daemons delete the file before they have finished.
  start=$(proc_field "$pid" 20)
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while running "$pid" "$start"; do
    if [ $SECONDS -ge $deadline ]; then
      say "$name (pid $pid) ignored SIGTERM for 30 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 10))
    fi
    sleep 0.1
  done
  rm -f "$RUN/$name.pid"
  say "stopped $name (pid $pid)"
}

# ---------------------------------------------------------------- commands
lock() {  # one start/stop at a time per folder (fd 9 is closed for every daemon we launch)
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock -w 300 9 || die "another start/stop holds $DIR/.lock"
}

start_failed() {  # EXIT trap of start
  trap - EXIT
  if [ "$1" -ne 0 ]; then
    say "start failed: stopping this folder's daemons"
    stop_all
    network_down
  fi
  exit "$1"
}

cmd_start() {
  [ "$(id -u)" -eq 0 ] || die "start needs root (slurmd runs jobs as their users; packages may be installed)"
  local t0=$SECONDS
  mkdir -p "$LOG"
  install_packages
  lock
  # A failed start leaves nothing running (the logs stay): stop this folder's daemons on error.
  trap 'start_failed $?' EXIT
  write_configs
  export SLURM_CONF=$CONF
  # Before starting anything: the ports of every daemon that is not up yet must be free.
  up mariadb || check_port "$DB_PORT" MariaDB
  up slurmdbd || check_port "$DBD_PORT" slurmdbd
  up slurmctld || check_port "$CTLD_PORT" slurmctld
  network_up
  start_munge
  start_mariadb
  start_slurmdbd
  register_accounting
  start_slurmctld
  start_nodes
  say "up in $((SECONDS - t0))s: $(sinfo -h -o '%P %D nodes %t' | tr '\n' ' ')(state: $DIR)"
  trap - EXIT
  cmd_env
}

cmd_stop() {
  [ -d "$RUN" ] || { say "nothing to stop (no $RUN)"; return 0; }
  lock
  export SLURM_CONF=$CONF
  cancel_jobs
  stop_all
  if read_ports; then network_names; network_down; fi
  say "stopped (state kept in $DIR; delete it for a fresh cluster)"
}

stop_all() {  # every daemon of this folder, newest first, then any job step they left behind
  local i steps deadline
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop_daemon "${DAEMONS[i]}"; done
  # Job steps left behind (slurmd was not answering, or a job ignored everything): end them too.
  kill_job_processes
  deadline=$((SECONDS + 5))
  while steps=$(our_steps | tr '\n' ' ') && [ -n "${steps// /}" ] && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  if [ -n "${steps// /}" ]; then
    say "killing leftover slurmstepd of this cluster: $steps"
    # shellcheck disable=SC2086
    kill -KILL $steps 2>/dev/null || true
  fi
}

cmd_status() {
  local ok=0 name pid
  for name in "${DAEMONS[@]}"; do
    if pid=$(daemon_pid "$name"); then echo "$name: up (pid $pid)"; else echo "$name: down"; ok=1; fi
  done
  if read_ports; then
    network_names
    for name in "${NODES[@]}"; do
      if node_network_ok "$name"; then echo "network of $name: $(node_netns "$name") at $(node_addr "$name")"
      else echo "network of $name: missing ($(node_netns "$name"))"; ok=1; fi
    done
  fi
  if [ $ok -eq 0 ]; then
    export SLURM_CONF=$CONF
    timeout 20 sinfo || ok=1
    nodes_usable || { echo "nodes not usable (yet): $(node_states | tr '\n' ' ')"; ok=1; }
  fi
  [ $ok -eq 0 ] && echo "cluster up: $(cmd_env)" || echo "cluster not (fully) up; state folder $DIR"
  return $ok
}

cmd_env() { printf 'export SLURM_CONF=%q\n' "$CONF"; }

cmd_address() {  # address NODE: the node's own address
  read_ports || die "no cluster in $DIR (start it first)"
  network_names
  node_addr "$1"
}

cmd_link() {  # link NODE up|down: the host end of the node's veth pair (down = a cut cable, both ways)
  [ "$(id -u)" -eq 0 ] || die "link needs root"
  case ${2:-} in up | down) ;; *) die "usage: $0 link NODE up|down" ;; esac
  read_ports || die "no cluster in $DIR (start it first)"
  network_names
  node_addr "$1" >/dev/null
  ip link set "$(node_netns "$1")" "$2" || die "no link for node $1 (is the cluster up?)"
  say "node $1 ($(node_addr "$1")): link $2"
}

main() {
  case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    address) cmd_address "${2:?usage: $0 address NODE}" ;;
    link) cmd_link "${2:?usage: $0 link NODE up|down}" "${3:-}" ;;
    *) echo "usage: $0 start|stop|status|env|address NODE|link NODE up|down   (state folder: \${ORPO_SLURM_DIR:-/tmp/orpo-slurm})" >&2; exit 2 ;;
  esac
}

main "$@"  # (the whole file is parsed before anything runs: safe to edit while a copy runs)
