# shellcheck shell=bash disable=SC2034,SC2015
# (SC2034: variables are shared between the sourced files; SC2015: `a && b || fail` is meant.)
# Shared helpers of the benchmark: logging, the cleanup registry, waiting on
# conditions with a deadline, and the two-host topology. Sourced by ../run.
#
# Cleanup contract: everything this run creates (processes, namespaces, the
# work directory) is registered here the moment it exists, and cleanup_all
# (run from the EXIT/INT/TERM trap) removes exactly that, nothing else.

BENCH_PIDS=()   # daemons and servers we started; killed by PID only
BENCH_NETNS=()  # namespaces we created; deleted by name

log()  { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { log "error: $*"; exit 1; }

# track_pid PID: remember a process this run started.
track_pid() { BENCH_PIDS+=("$1"); }

# stop_pid PID: TERM, wait up to 5 s, then KILL; only a PID we started.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

stop_all_pids() {
	local pid
	for pid in "${BENCH_PIDS[@]}"; do stop_pid "$pid"; done
	BENCH_PIDS=()
}

delete_all_netns() {
	local ns
	for ns in "${BENCH_NETNS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
	BENCH_NETNS=()
}

cleanup_all() {
	stop_all_pids
	delete_all_netns
	if [[ -n "${WORK:-}" && -d "$WORK" && "${KEEP_WORK:-0}" != 1 ]]; then
		rm -rf -- "$WORK"
	fi
}

# wait_until SECONDS DESCRIPTION CMD...: run CMD until it succeeds or the
# deadline passes; a condition, never a fixed sleep.
wait_until() {
	local secs=$1 what=$2 deadline
	shift 2
	deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			log "timed out after ${secs}s waiting for $what"
			return 1
		fi
		sleep 0.1
	done
}

# Topology: host A and host B, each a namespace, joined by one veth pair
# (underlay). Interface names live inside the namespaces, so only the
# namespace names need to be unique per run.
NS_A="" NS_B=""
UL_A=198.18.71.1 UL_B=198.18.71.2 UL_PREFIX=24  # underlay, RFC 2544 range
OL_A=198.19.71.1 OL_B=198.19.71.2 OL_PREFIX=24  # tunnel overlay
TUN_MTU=1420

# topo_up TAG: fresh namespaces for one implementation in one round.
topo_up() {
	local tag=$1
	NS_A="stb-${RUN_ID}-${tag}-a"
	NS_B="stb-${RUN_ID}-${tag}-b"
	ip netns add "$NS_A" || return 1
	BENCH_NETNS+=("$NS_A")
	ip netns add "$NS_B" || return 1
	BENCH_NETNS+=("$NS_B")
	ip link add ul0 netns "$NS_A" type veth peer name ul0 netns "$NS_B" || return 1
	ipa ip addr add "$UL_A/$UL_PREFIX" dev ul0 &&
		ipb ip addr add "$UL_B/$UL_PREFIX" dev ul0 &&
		ipa ip link set lo up && ipb ip link set lo up &&
		ipa ip link set ul0 up && ipb ip link set ul0 up || return 1
	wait_until 10 "underlay $UL_A -> $UL_B" ipa ping -c1 -W1 "$UL_B"
}

# topo_down: stop this topology's processes and remove its namespaces.
topo_down() {
	stop_all_pids
	delete_all_netns
	NS_A="" NS_B=""
}

ipa() { ip netns exec "$NS_A" "$@"; }
ipb() { ip netns exec "$NS_B" "$@"; }

# start_in NS LOGFILE CMD...: start a long-running process inside NS in the
# background and track it. `ip netns exec` execs the command, so $! is the
# daemon's own PID (its /proc entry is what we read CPU and RSS from).
START_PID=""
start_in() {
	local ns=$1 logf=$2
	shift 2
	ip netns exec "$ns" "$@" >"$logf" 2>&1 &
	START_PID=$!
	track_pid "$START_PID"
}

# alive PID: the process is still running (not a zombie).
alive() {
	[[ -r /proc/$1/stat ]] || return 1
	local st
	st=$(sed 's/^.*) //' "/proc/$1/stat" | cut -d' ' -f1)
	[[ $st != Z && $st != X ]]
}
