# shellcheck shell=bash disable=SC2034,SC2015
# (SC2034: variables are shared between the sourced files; SC2015: `a && b || fail` is meant.)
# What the machine takes from a running thread, once per round before the
# round's measurements (../hostnoise: a pinned busy thread per CPU, gaps of
# 0.2 ms or more). The ping p99 rows depend on it more than on any tunnel
# (docs/PERFORMANCE.md, "Run 13"); its table goes to $WORK/extra-0-host.md,
# which ../run prints after the main table. Sourced by ../run.
#
#   HOSTNOISE_SECS=5   seconds per round (QUICK: 2); 0 skips

build_hostnoise() { build_bench_tool hostnoise HOSTNOISE_BIN "host noise not measured"; }

# hostnoise_secs: the seconds per round, HOSTNOISE_SECS or its default;
# host_noise measures that long and hostnoise_table says so.
hostnoise_secs() {
	echo "${HOSTNOISE_SECS:-$([[ "${QUICK:-0}" == 1 ]] && echo 2 || echo 5)}"
}

# host_noise: one measurement for round $ROUND into $RESULTS, as
# round, "host", cpuN_stalls|cpuN_lost|cpuN_max, value.
host_noise() {
	local secs out=$WORK/hostnoise.out
	secs=$(hostnoise_secs)
	[[ -n "$HOSTNOISE_BIN" && "$secs" != 0 ]] || return 0
	log "round $ROUND/$ROUNDS: host noise, ${secs} s"
	if ! "$HOSTNOISE_BIN" -duration "${secs}s" >"$out" 2>"$out.err"; then
		log "hostnoise failed: $(last_line "$out.err")"
		return 0
	fi
	awk -v r="$ROUND" '/^cpu[0-9]+ / { printf "%s\thost\t%s_stalls\t%s\n%s\thost\t%s_lost\t%s\n%s\thost\t%s_max\t%s\n", r, $1, $2, r, $1, $3, r, $1, $4 }' \
		"$out" >>"$RESULTS"
}

# hostnoise_table: the medians across rounds, one column per CPU.
hostnoise_table() {
	[[ -n "$HOSTNOISE_BIN" ]] && grep -q $'\thost\t' "$RESULTS" || return 0
	awk -F'\t' -v secs="$(hostnoise_secs)" '
		function median(s,    n, a, i, j, t) {
			n = split(s, a, " ")
			for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
			return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
		}
		$2 == "host" {
			split($3, k, "_"); cpu = k[1]; what = k[2]
			if (!(cpu in seen)) { seen[cpu] = 1; cpus[++ncpu] = cpu }
			v[cpu, what] = v[cpu, what] " " $4
			if (what == "stalls") rounds[cpu]++
		}
		END {
			printf "### Host noise: what the machine takes from a running thread\n\n"
			printf "A busy thread pinned to each CPU, %s s per round before the round, counts the gaps of 0.2 ms or more between two clock readings; medians of %d round(s). A ping woken onto a CPU in such a gap waits for it, whatever the tunnel.\n\n", secs, rounds[cpus[1]]
			printf "| per CPU |"; for (i = 1; i <= ncpu; i++) printf " %s |", cpus[i]; printf "\n|---|"
			for (i = 1; i <= ncpu; i++) printf "---:|"; printf "\n"
			split("stalls lost max", w, " ")
			lab["stalls"] = "stalls of 0.2 ms or more per second"; lab["lost"] = "time lost in them (% of the CPU)"; lab["max"] = "longest stall (ms)"
			f["stalls"] = "%.1f"; f["lost"] = "%.2f"; f["max"] = "%.2f"
			for (x = 1; x <= 3; x++) {
				printf "| %s |", lab[w[x]]
				for (i = 1; i <= ncpu; i++) printf " " f[w[x]] " |", median(v[cpus[i], w[x]])
				printf "\n"
			}
		}' "$RESULTS" >"$WORK/extra-0-host.md"
}
