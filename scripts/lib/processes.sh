# shellcheck shell=bash
# Process and package helpers shared by scripts/stack.sh and scripts/patroni.sh (sourced).
# The caller defines say() and die(), and PIDS (the folder of PID files).
#
# Every process is started in a session of its own (setsid), so its PID is also the process
# group of its children. A PID file holds "PID STARTTIME": a PID is signalled only while /proc
# says that process started at that very moment, so a stale file never stops another process
# that got the same PID.

# "STATE PGID STARTTIME" of a process (fields 3, 5 and 22 of /proc/PID/stat), or nothing.
proc_stat() {
  local stat fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  read -ra fields <<<"${stat##*) }"
  echo "${fields[0]} ${fields[2]} ${fields[19]}"
}

# The live (not zombie) members of process group $1.
group_members() {
  local file stat fields
  for file in /proc/[0-9]*/stat; do
    stat=$(cat "$file" 2>/dev/null) || continue
    read -ra fields <<<"${stat##*) }"
    if [[ ${fields[2]} == "$1" && ${fields[0]} != Z ]]; then
      file=${file#/proc/}
      echo "${file%/stat}"
    fi
  done
}

# What became of the process of PID file $1: "running PID" (still the process we started),
# "gone PID" (exited: absent, or a zombie of ours not yet reaped), "other PID" (the PID now
# belongs to another process) or nothing (no readable PID file).
leader() {
  local pid start state pgid now
  read -r pid start 2>/dev/null <"$1" || return 1
  if ! read -r state pgid now < <(proc_stat "$pid"); then
    echo "gone $pid"
  elif [[ $now != "$start" ]]; then
    echo "other $pid"
  elif [[ $state == Z ]]; then
    echo "gone $pid"
  else
    echo "running $pid"
  fi
}

# Prints the PID of PID file $1 when that process still runs.
ours() {
  local state pid
  read -r state pid < <(leader "$1") && [[ $state == running ]] && echo "$pid"
}

# start NAME LOGFILE COMMAND...: run COMMAND in a session of its own, record "PID STARTTIME".
start() {
  local name=$1 log=$2 pid state pgid starttime
  shift 2
  setsid "$@" >>"$log" 2>&1 </dev/null &
  pid=$!
  read -r state pgid starttime < <(proc_stat "$pid") || die "$name exited at once; see $log"
  echo "$pid $starttime" >"$PIDS/$name.pid"
  STARTED_PIDS+=("$pid")
}

# wait_groups SECONDS PGID...: until no process of these groups runs; 1 on timeout.
wait_groups() {
  local seconds=$1 pgid deadline
  shift
  deadline=$((SECONDS + seconds))
  while :; do
    local alive=0
    for pgid in "$@"; do [[ -n $(group_members "$pgid") ]] && alive=1 && break; done
    ((alive)) || return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

as_root() {
  if ((EUID == 0)); then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "run as root, or install the packages yourself: apt-get install $*"
  fi
}

# apt_install PACKAGE...: Debian packages, installed once. Their system services are not
# started by the installation (policy-rc.d refuses it): the scripts run their own processes.
apt_install() {
  local policy=/usr/sbin/policy-rc.d made_policy=0
  command -v apt-get >/dev/null || die "install $* (no apt-get on this machine)"
  say "installing $* with apt-get"
  if [[ ! -e $policy ]]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy"
    made_policy=1
  fi
  local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends)
  local installed=0
  if as_root "${install[@]}" "$@"; then
    installed=1
  elif as_root apt-get update -q && as_root "${install[@]}" "$@"; then
    installed=1 # the package lists were missing or out of date
  fi
  if ((made_policy)); then as_root rm -f "$policy"; fi
  ((installed)) || die "could not install $*"
}
