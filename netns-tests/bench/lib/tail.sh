# shellcheck shell=bash disable=SC2034,SC2015
# (SC2034: variables are shared between the sourced files; SC2015: `a && b || fail` is meant.)
# Issue 21's target 3 (ping p99) with the columns interleaved. The main
# table's ping row runs each column's pings in one stretch, a column after
# another; on a shared VM the host's noise changes from one minute to the
# next (docs/PERFORMANCE.md, run 18: one column's p99 3.3 ms in one
# stretch and 0.9 ms two stretches later), so a p99 taken minutes apart compares
# hours as much as tunnels. Here every column is up at once and the pings
# go in short blocks, the columns taking turns, so a noisy stretch falls on
# all of them alike.
#
# The first round trip of each block is kept apart: it follows a second or
# more in which the tunnel carried nothing (the other columns' blocks), and
# a ping just started. Such a round trip takes 1-2 ms in every tunnel on
# this host (docs/PERFORMANCE.md, run 20), so ten per round, half a percent
# of the pings, would put each column's p99 at the edge of that band. The
# p99 rows are of a steady 200-per-second ping, as the plain ping row's;
# the median of the first round trips, the latency after a pause, gets a
# row of its own. Sourced by ../run.
#
#   TAIL=1            0 skips
#   TAIL_BLOCKS=10    blocks per column and round
#   TAIL_PINGS=200    pings per block, at PING_INTERVAL (QUICK: 2 blocks of 100)

tail_blocks() { echo "${TAIL_BLOCKS:-$([[ "${QUICK:-0}" == 1 ]] && echo 2 || echo 10)}"; }
tail_pings() { echo "${TAIL_PINGS:-$([[ "${QUICK:-0}" == 1 ]] && echo 100 || echo 200)}"; }

# tail_all: once per round. Brings every column up on its own namespace
# pair (the idle measurement's way), then runs the blocks: block b starts
# with column (b + round) mod n, so no column always follows the same one.
# Records tail_p50 and tail_p99 per column from all its blocks of the
# round (not their first round trips), tail_first (the median of those),
# and appends its round trips to $WORK/tail-IMPL.rtt (first ones to
# $WORK/tail-IMPL.first) for the table over all rounds (tail_table).
tail_all() {
	local impl k=0 b i n up=() blocks pings deadline rtts p50 p99 got first
	local -A ns_a=() target=() pids=()
	blocks=$(tail_blocks) pings=$(tail_pings)
	for impl in "${IMPLS[@]}"; do
		IMPL=$impl k=$((k + 1))
		if column_up "t$ROUND$k" "the interleaved pings"; then
			ns_a[$impl]=$NS_A target[$impl]=$TARGET pids[$impl]="${DAEMONS[*]}"
			up+=("$impl")
			: >"$WORK/tail-round.$impl"; : >"$WORK/tail-first-round.$impl"
			continue
		fi
		record tail_p50 n/a; record tail_p99 n/a; record tail_first n/a
	done
	n=${#up[@]}
	deadline=$(awk -v n="$pings" -v i="$PING_INTERVAL" 'BEGIN { printf "%d", n * i + 10 }')
	((n > 0)) && log "round $ROUND/$ROUNDS: $blocks blocks of $pings pings per column, ${n} columns taking turns"
	for ((b = 0; b < blocks && n > 0; b++)); do
		for ((i = 0; i < n; i++)); do
			impl=${up[(i + b + ROUND) % n]}
			# shellcheck disable=SC2086 # pids: one word per daemon
			sched_snapshot ${pids[$impl]} >"$WORK/sched-before"
			ip netns exec "${ns_a[$impl]}" ping -n -c "$pings" -i "$PING_INTERVAL" -W 1 -w "$deadline" \
				"${target[$impl]}" 2>&1 | rtt_split "$WORK/tail-first-round.$impl" >>"$WORK/tail-round.$impl"
			# shellcheck disable=SC2086
			sched_snapshot ${pids[$impl]} >"$WORK/sched-after"
			[[ -n ${pids[$impl]} ]] &&
				echo "$(sched_delta "$WORK/sched-before" "$WORK/sched-after") $pings" >>"$WORK/tail-$impl.sched"
		done
	done
	for impl in "${up[@]}"; do
		IMPL=$impl
		rtts=$WORK/tail-round.$impl
		cat "$rtts" >>"$WORK/tail-$impl.rtt"
		cat "$WORK/tail-first-round.$impl" >>"$WORK/tail-$impl.first"
		first=$(rtt_stats <"$WORK/tail-first-round.$impl" | cut -d" " -f1)
		record tail_first "${first:-n/a}"
		read -r p50 p99 got <<<"$(rtt_stats <"$rtts")"
		if [[ -z "${got:-}" ]]; then
			log "$impl: interleaved pings: no replies"
			record tail_p50 n/a; record tail_p99 n/a
			continue
		fi
		((got < blocks * (pings - 1))) && log "$impl: interleaved pings: $got of $((blocks * (pings - 1))) answered (after each block's first)"
		record tail_p50 "$p50"; record tail_p99 "$p99"
	done
	topo_down
}

# tail_table: every round's interleaved round trips pooled per column, for
# a p99 of many more pings than one round's (the main table gives the
# median of the rounds' p99s), and what the daemons' threads did with the
# CPUs meanwhile, per ping sent (their schedstat summed over the blocks):
# time on a CPU, time runnable but waiting for one, and how often they
# were switched in. A tunnel whose threads wait long for a CPU, or are
# switched in many times a round trip, lengthens its own tail; one whose
# threads neither wait nor switch much leaves the tail to the host. Goes
# to $WORK/extra-1-tail.md.
tail_table() {
	local impl f have=0 sched first
	for impl in "${IMPLS[@]}"; do [[ -s "$WORK/tail-$impl.rtt" ]] && have=1; done
	((have)) || return 0
	{
		printf '### Ping RTT, columns interleaved, all rounds pooled\n\n'
		printf '%s blocks of %s pings at %s s per column and round, the columns taking turns block by block; every round trip of every round but the first of each block in one distribution per column (ms); then the median of those first round trips, each taken after the tunnel idled through the blocks of the other columns. The last three columns: both daemons'"'"' threads over the same blocks, per ping sent (/proc/PID/task/TID/schedstat).\n\n' \
			"$(tail_blocks)" "$(tail_pings)" "$PING_INTERVAL"
		printf '| column | pings | median | p90 | p99 | p99.9 | over 1 ms | first of a block, median | daemons on a CPU (us/ping) | waiting for a CPU (us/ping) | switched in (per ping) |\n'
		printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
		for impl in "${IMPLS[@]}"; do
			f=$WORK/tail-$impl.rtt
			[[ -s $f ]] || continue
			sched="- | - | -"
			[[ -s "$WORK/tail-$impl.sched" ]] && sched=$(awk '{ r += $1; w += $2; s += $3; n += $4 }
				END { if (n > 0) printf "%.1f | %.1f | %.2f", r / n / 1000, w / n / 1000, s / n; else printf "- | - | -" }' \
				"$WORK/tail-$impl.sched")
			first=$( (rtt_stats <"$WORK/tail-$impl.first" || echo -) | cut -d" " -f1)
			sort -g "$f" | awk -v c="$impl" -v sched="$sched" -v first="$first" '
				function q(p,    i) { i = int(NR * p + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; return v[i] }
				{ v[NR] = $1; if ($1 > 1) slow++ }
				END { printf "| %s | %d | %.3f | %.3f | %.3f | %.3f | %.2f %% | %s | %s |\n", c, NR, q(0.5), q(0.9), q(0.99), q(0.999), 100 * slow / NR, first, sched }'
		done
	} >"$WORK/extra-1-tail.md"
}
