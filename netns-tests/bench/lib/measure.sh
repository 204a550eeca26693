# shellcheck shell=bash disable=SC2034,SC2015
# (SC2034: variables are shared between the sourced files; SC2015: `a && b || fail` is meant.)
# The measurements, identical for every implementation. Each one records
# "round<TAB>impl<TAB>metric<TAB>value" lines into $RESULTS; a measurement
# that fails records n/a and the run goes on. Sourced by ../run.

CLK_TCK=$(getconf CLK_TCK)

record() { printf '%s\t%s\t%s\t%s\n' "$ROUND" "$IMPL" "$1" "$2" >>"$RESULTS"; }

# daemon_ticks: utime+stime of all DAEMONS, in clock ticks (fields 14, 15
# of /proc/PID/stat, counted after the ")" that ends the command name).
daemon_ticks() {
	local pid sum=0 f
	for pid in "${DAEMONS[@]}"; do
		read -ra f <<<"$(sed 's/^.*) //' "/proc/$pid/stat")"
		sum=$((sum + f[11] + f[12]))
	done
	echo "$sum"
}

# machine_busy_ticks: all CPUs' non-idle time from /proc/stat; this also
# counts the kernel's share (softirq, veth, TUN) and iperf3 itself.
machine_busy_ticks() {
	awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# peak_rss_mib: the larger VmHWM of the two daemons, in MiB.
peak_rss_mib() {
	local pid kb max=0
	for pid in "${DAEMONS[@]}"; do
		kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
		((kb > max)) && max=$kb
	done
	awk -v kb="$max" 'BEGIN { printf "%.1f", kb / 1024 }'
}

# sched_snapshot PID...: one line per thread of the given processes, "TID
# RUN_NS WAIT_NS SLICES" from /proc/PID/task/TID/schedstat: time on a CPU,
# time runnable but waiting for one, and times switched in.
sched_snapshot() {
	local pid t
	for pid; do
		for t in /proc/"$pid"/task/*; do
			[[ -r $t/schedstat ]] && printf '%s %s\n' "${t##*/}" "$(<"$t/schedstat")"
		done
	done
	return 0
}

# sched_delta BEFORE AFTER: the snapshots' differences summed over the
# threads in both, "RUN_NS WAIT_NS SLICES" (a thread born or gone between
# them counts for nothing: the daemons' readers live as long as they do).
sched_delta() {
	awk 'NR == FNR { r[$1] = $2; w[$1] = $3; s[$1] = $4; next }
		($1 in r) { dr += $2 - r[$1]; dw += $3 - w[$1]; ds += $4 - s[$1] }
		END { printf "%d %d %d\n", dr, dw, ds }' "$1" "$2"
}

iperf_server_up() {
	start_in "$NS_B" "$WORK/iperf3-server.log" iperf3 -s
	wait_until 10 "iperf3 server" ipb sh -c "ss -Hltn 'sport = :5201' | grep -q ."
}

# rtt_list: ping's output on stdin -> one round trip (ms) per line.
rtt_list() { sed -n 's/.* time=\([0-9.]*\) ms.*/\1/p'; }

# rtt_split FIRST: ping's output on stdin -> one round trip (ms) per line,
# as rtt_list, except the reply to the first echo request (icmp_seq=1),
# which goes to the end of file FIRST instead.
rtt_split() {
	sed -n 's/.* icmp_seq=\([0-9]*\) .* time=\([0-9.]*\) ms.*/\1 \2/p' |
		awk -v first="$1" '$1 == 1 { print $2 >>first; next } { print $2 }'
}

# rtt_stats: round trips (ms), one per line on stdin -> "MEDIAN P99 COUNT",
# or nothing (and status 1) when there are none.
rtt_stats() {
	sort -g | awk '{ v[NR] = $1 } END {
			if (NR == 0) exit 1
			p50 = v[int((NR + 1) / 2)]; i99 = int(NR * 0.99 + 0.999999); if (i99 > NR) i99 = NR
			printf "%s %s %d", p50, v[i99], NR }'
}

# rtt_percentiles: ping's output on stdin -> "MEDIAN P99 REPLIES" (ms), or
# nothing (and status 1) when no reply came.
rtt_percentiles() { rtt_list | rtt_stats; }

# ping_rtt: PING_COUNT echo requests at PING_INTERVAL from A to B; records
# the median and 99th percentile of the replies' RTT, in ms.
ping_rtt() {
	local out p50 p99 n deadline
	deadline=$(awk -v n="$PING_COUNT" -v i="$PING_INTERVAL" 'BEGIN { printf "%d", n * i + 10 }')
	out=$(ipa ping -n -c "$PING_COUNT" -i "$PING_INTERVAL" -W 1 -w "$deadline" "$TARGET" 2>&1 | rtt_percentiles)
	if [[ -z "$out" ]]; then
		record rtt_p50 n/a; record rtt_p99 n/a
		return 1
	fi
	read -r p50 p99 n <<<"$out"
	((n < PING_COUNT)) && log "$IMPL: only $n of $PING_COUNT pings answered"
	record rtt_p50 "$p50"; record rtt_p99 "$p99"
}

# iperf_json ARGS...: run an iperf3 client from A against TARGET, JSON on
# stdout; empty (and logged) on failure.
iperf_json() {
	local out
	# stderr apart: iperf3 warns there (e.g. datagram larger than the TCP MSS).
	# Bounded: a tunnel that passes nothing must cost seconds, not TCP's
	# two-minute connect timeout.
	out=$(timeout -k 5 $((DURATION + 30)) ip netns exec "$NS_A" \
		iperf3 -c "$TARGET" -t "$DURATION" -J --connect-timeout 5000 "$@" 2>"$WORK/iperf3-client.err")
	if ! jq -e '.error == null and .end != null' <<<"$out" >/dev/null 2>&1; then
		log "$IMPL: iperf3 $*: $(jq -r '.error // empty' <<<"$out" 2>/dev/null) $(last_line "$WORK/iperf3-client.err")"
		return 1
	fi
	printf '%s' "$out"
}

# tcp_test STREAMS METRIC: received Gbit/s. With one stream it also records
# CPU seconds per GB (1e9 bytes) received: the daemons' own, and the whole
# machine's.
tcp_test() {
	local streams=$1 metric=$2 j d0 d1 m0 m1 bytes
	d0=$(daemon_ticks) m0=$(machine_busy_ticks)
	if ! j=$(iperf_json -P "$streams"); then
		record "$metric" n/a
		[[ $streams == 1 ]] && { record cpu_gb n/a; record sys_cpu_gb n/a; }
		return
	fi
	d1=$(daemon_ticks) m1=$(machine_busy_ticks)
	record "$metric" "$(jq -r '.end.sum_received.bits_per_second / 1e9 | . * 1000 | round / 1000' <<<"$j")"
	[[ $streams == 1 ]] || return 0
	bytes=$(jq -r '.end.sum_received.bytes' <<<"$j")
	if ((${#DAEMONS[@]} > 0)); then
		record cpu_gb "$(awk -v t=$((d1 - d0)) -v hz="$CLK_TCK" -v b="$bytes" 'BEGIN { printf "%.2f", t / hz / (b / 1e9) }')"
	fi
	record sys_cpu_gb "$(awk -v t=$((m1 - m0)) -v hz="$CLK_TCK" -v b="$bytes" 'BEGIN { printf "%.2f", t / hz / (b / 1e9) }')"
}

# udp_test PAYLOAD METRIC: unlimited-rate UDP of PAYLOAD-byte datagrams;
# records thousands of packets per second that arrived at B.
udp_test() {
	local len=$1 metric=$2 j
	if ! j=$(iperf_json -u -b 0 -l "$len"); then
		record "$metric" n/a
		return
	fi
	record "$metric" "$(jq -r '.end.sum | (.packets - .lost_packets) / .seconds / 1000 | . * 10 | round / 10' <<<"$j")"
}

# flood_tcp PORT METRIC: TCP, one stream, while a flood of handshake
# initiations with a valid mac1 (from a second address on A's side, UL_FLOOD)
# goes to B's PORT: the tunnel's port, or a closed one for the baseline that
# costs the machine the same generator. n/a for implementations without a
# flood generator (Nebula, raw veth).
UL_FLOOD=198.18.71.66
flood_tcp() {
	local port=$1 metric=$2 j fpid
	if [[ -z "${FLOOD_PROTO:-}" || -z "${FLOOD_BIN:-}" ]]; then
		record "$metric" n/a
		return 0
	fi
	ipa ip addr replace "$UL_FLOOD/$UL_PREFIX" dev ul0 || { record "$metric" n/a; return 0; }
	ip netns exec "$NS_A" "$FLOOD_BIN" -proto "$FLOOD_PROTO" -pub "$FLOOD_PUB" -from "$UL_FLOOD" \
		-to "$UL_B:$port" -duration "$((DURATION + 3))s" >>"$WORK/flood.log" 2>&1 &
	fpid=$!
	sleep 1 # let the flood reach its rate before the transfer starts
	if j=$(iperf_json -P 1); then
		record "$metric" "$(jq -r '.end.sum_received.bits_per_second / 1e9 | . * 1000 | round / 1000' <<<"$j")"
	else
		record "$metric" n/a
	fi
	kill "$fpid" 2>/dev/null
	wait "$fpid" 2>/dev/null
}

# The main table's groups of rows, in the order measure_all takes them;
# ROWS (../run) picks some, for a steadier look at a few targets (more
# rounds of fewer rows).
ALL_ROWS="cpu tcp1 tcp4 udp load flood"

# row_wanted GROUP: whether ROWS asks for that group of rows.
row_wanted() { [[ " ${ROWS:-$ALL_ROWS} " == *" $1 "* ]]; }

# measure_all: the whole battery on an implementation that is up. Ping
# first, on an idle tunnel, then the CPU at 200 and 1000 pings/s with still
# nothing else on it (lib/quiet.sh); peak RSS last, after all the load.
measure_all() {
	iperf_server_up || { IMPL_ERR="iperf3 server did not start"; return 1; }
	# A tunnel that stopped passing packets after start-up would only make
	# every iperf3 run wait for its timeout: say so once and move on.
	ping_rtt || { IMPL_ERR="no ping replies through the tunnel after it came up"; return 1; }
	if row_wanted cpu; then
		rate_cpu 200 cpu200
		rate_cpu 1000 cpu1000
	fi
	row_wanted tcp1 && tcp_test 1 tcp1
	row_wanted tcp4 && tcp_test 4 tcp4
	if row_wanted udp; then
		udp_test 64 udp64
		udp_test "$UDP_LARGE" udp_large
	fi
	row_wanted load && load_latency
	if row_wanted flood; then
		flood_tcp 9 tcp_flood_closed
		flood_tcp 51820 tcp_flood
	fi
	if ((${#DAEMONS[@]} > 0)); then
		record rss "$(peak_rss_mib)"
	fi
}
