# shellcheck shell=bash disable=SC2034,SC2015
# (SC2034: variables are shared between the sourced files; SC2015: `a && b || fail` is meant.)
# The rows of issue 21 that ask what a tunnel costs when it is quiet or idle,
# and how its latency holds under load: CPU at 200 and 1000 packets/s, idle CPU
# and wake-ups, ping RTT during a TCP stream. Same record() lines as
# measure.sh; a measurement that fails records n/a and the run goes on.
# Sourced by ../run (after measure.sh).

# Knobs (defaults set by ../run, which knows QUICK): RATE_SECS, IDLE_SECS,
# IDLE_SETTLE.

# elapsed_s NS0 NS1: seconds between two `date +%s%N` readings.
elapsed_s() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

# rate_cpu PPS METRIC: both daemons' CPU (utime + stime, % of one core) while
# A pings B through the tunnel at PPS for RATE_SECS (ratecpu's method), over
# the wall time the pings took. Nothing for raw veth: no daemon to account.
rate_cpu() {
	local pps=$1 metric=$2 n t0 t1 c0 c1 out rx
	((${#DAEMONS[@]} > 0)) || return 0
	n=$((pps * RATE_SECS))
	c0=$(daemon_ticks) t0=$(date +%s%N)
	out=$(ipa ping -n -q -c "$n" -i "$(awk -v p="$pps" 'BEGIN { printf "%.4f", 1 / p }')" -W 1 \
		-w $((RATE_SECS * 2 + 10)) "$TARGET" 2>&1)
	c1=$(daemon_ticks) t1=$(date +%s%N)
	rx=$(sed -n 's/.* \([0-9][0-9]*\) received.*/\1/p' <<<"$out")
	if [[ -z "$rx" || "$rx" == 0 ]]; then
		log "$IMPL: no replies to pings at ${pps}/s: $(tail -n1 <<<"$out")"
		record "$metric" n/a
		return
	fi
	((rx < n)) && log "$IMPL: only $rx of $n pings at ${pps}/s answered"
	record "$metric" "$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v s="$(elapsed_s "$t0" "$t1")" \
		'BEGIN { printf "%.1f", t * 100 / hz / s }')"
}

# load_latency: the RTT of a ping every 10 ms from A to B while one TCP
# stream (iperf3, DURATION s) runs A to B through the same tunnel; the pings
# start 0.5 s into the transfer and stop before it ends. Records lul_p50 and
# lul_p99 (ms), n/a when the transfer failed (the RTT was not under load).
load_latency() {
	local n ipid out p50 p99 got
	n=$(((DURATION - 1) * 100))
	((n >= 50)) || n=50
	iperf_json -P 1 >"$WORK/lul.json" &
	ipid=$!
	sleep 0.5 # the stream's slow start, so the pings see the load
	out=$(ipa ping -n -c "$n" -i 0.01 -W 1 -w $((DURATION + 10)) "$TARGET" 2>&1 | rtt_percentiles)
	if ! wait "$ipid"; then
		log "$IMPL: latency under load: the TCP stream failed, so the RTT is not under load"
		record lul_p50 n/a; record lul_p99 n/a
		return
	fi
	if [[ -z "$out" ]]; then
		log "$IMPL: latency under load: no ping replies during the TCP stream"
		record lul_p50 n/a; record lul_p99 n/a
		return
	fi
	read -r p50 p99 got <<<"$out"
	((got < n)) && log "$IMPL: latency under load: $got of $n pings answered"
	record lul_p50 "$p50"; record lul_p99 "$p99"
}

# sleep_interruptible SECS: sleep, but let an INT or TERM trap run at once
# (bash runs a trap only when the foreground command ends; `wait` returns on
# the signal).
sleep_interruptible() {
	sleep "$1" &
	wait $!
}

# oncpu_ns PID...: on-CPU time of all threads of the PIDs, in ns (the first
# field of /proc/PID/task/TID/schedstat): the scheduler's own account, exact
# where utime + stime count in 10 ms ticks, which over a minute of idle
# cannot tell 0.01 % from 0. A thread that exits in between takes its time
# with it; Go daemons keep their threads.
oncpu_ns() {
	local pid
	for pid; do cat /proc/"$pid"/task/*/schedstat 2>/dev/null; done | awk '{ s += $1 } END { printf "%.0f", s }'
}

# vol_switches PID...: voluntary context switches of all threads of the
# PIDs: each is a thread going to sleep, so the count is how often the
# daemon woke.
vol_switches() {
	local pid
	for pid; do cat /proc/"$pid"/task/*/status 2>/dev/null; done |
		awk '/^voluntary_ctxt_switches/ { s += $2 } END { printf "%.0f", s }'
}

# keepalive_off IMPL: the implementation just brought up on NS_A/NS_B sends
# nothing of its own accord (issue 21 measures idle "with no keepalive
# configured"): wireguard-go says so itself, stunnel's and Nebula's configs
# have no keepalive key (stunnel's passive keepalive only answers data, as
# wireguard-go's; Nebula's punchy is off and it has no lighthouse).
keepalive_off() {
	local f out
	case $1 in
	wireguard-go)
		out=$(ipa wg show "wg${RUN_ID}a" persistent-keepalive && ipb wg show "wg${RUN_ID}b" persistent-keepalive) &&
			[[ -n $out ]] && ! grep -qv '[[:space:]]off$' <<<"$out" ;;
	stunnel-*)
		for f in "$WORK/stunnel-$NS_A"/{a,b}.toml; do
			[[ -r $f ]] && ! grep -q 'keepalive' "$f" || return 1
		done ;;
	nebula)
		for f in "$WORK/nebula-$NS_A"/{a,b}.yml; do
			[[ -r $f ]] && grep -q 'punch: false' "$f" && ! grep -q 'am_lighthouse: true' "$f" || return 1
		done ;;
	esac
}

# idle_all: once per round, every implementation with a daemon up at the
# same time, each on its own fresh namespace pair, the handshake done (the
# ping that waits for the tunnel) and no keepalive configured. After
# IDLE_SETTLE s, over IDLE_SECS with nothing sent: both daemons' CPU (% of
# one core) and wake-ups per second per daemon. Measured side by side, so one
# minute costs one minute per round whatever the number of columns, and a
# burst of other work on the machine lands on all of them.
idle_all() {
	local impl k=0 up=() t0 t1 secs pid ok
	local -A pids=() c0=() w0=()
	# shellcheck disable=SC2153 # IMPLS is ../run's list of columns
	for impl in "${IMPLS[@]}"; do
		[[ $impl == raw ]] && continue
		IMPL=$impl k=$((k + 1))
		if column_up "i$ROUND$k" "the idle measurement" keepalive_off "a keepalive is configured, so it would not be idle"; then
			pids[$impl]="${DAEMONS[*]}"
			up+=("$impl")
			continue
		fi
		record idle_cpu n/a; record idle_wakes n/a
	done
	if ((${#up[@]} > 0)); then
		log "round $ROUND/$ROUNDS: ${#up[@]} implementation(s) idle for ${IDLE_SECS}s (after ${IDLE_SETTLE}s to settle)"
		sleep "$IDLE_SETTLE"
		for impl in "${up[@]}"; do
			# shellcheck disable=SC2086 # the PID lists split on purpose
			c0[$impl]=$(oncpu_ns ${pids[$impl]}) w0[$impl]=$(vol_switches ${pids[$impl]})
		done
		t0=$(date +%s%N)
		sleep_interruptible "$IDLE_SECS"
		t1=$(date +%s%N)
		secs=$(elapsed_s "$t0" "$t1")
		for impl in "${up[@]}"; do
			IMPL=$impl ok=1
			for pid in ${pids[$impl]}; do alive "$pid" || ok=0; done
			if ((ok == 0)); then
				log "$impl: a daemon exited during the idle measurement"
				record idle_cpu n/a; record idle_wakes n/a
				continue
			fi
			# shellcheck disable=SC2086
			record idle_cpu "$(awk -v c="$(($(oncpu_ns ${pids[$impl]}) - c0[$impl]))" -v s="$secs" \
				'BEGIN { printf "%.4f", c / 1e9 * 100 / s }')"
			# shellcheck disable=SC2086
			record idle_wakes "$(awk -v w="$(($(vol_switches ${pids[$impl]}) - w0[$impl]))" -v s="$secs" \
				-v n="$(wc -w <<<"${pids[$impl]}")" 'BEGIN { printf "%.2f", w / n / s }')"
		done
	fi
	topo_down
}
