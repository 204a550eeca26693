# shellcheck shell=bash disable=SC2034,SC2015
# (SC2034: variables are shared between the sourced files; SC2015: `a && b || fail` is meant.)
# Handshakes per second per core, responder side (issue 21, target 5):
# stunnel full, stunnel resumed and wireguard-go full, measured the same way
# by the Go benchmark in ../hsrate (see its doc.go), on one core, once per
# round (ROUNDS); medians. Writes its table to $WORK/extra-1-hsrate.md,
# which ../run prints after the main table. Sourced by ../run.
#
#   HSRATE=0          skip it
#   HSRATE_TIME=2s    -benchtime per benchmark and round (QUICK: 1s)

hsrate_measure() {
	local out=$WORK/hsrate.out md=$WORK/extra-1-hsrate.md benchtime
	[[ "${HSRATE:-1}" == 0 ]] && { log "handshake rate: skipped (HSRATE=0)"; return 0; }
	benchtime=${HSRATE_TIME:-$([[ "${QUICK:-0}" == 1 ]] && echo 1s || echo 2s)}
	log "handshake rate: go test -bench Responder -cpu 1 -benchtime $benchtime ./netns-tests/bench/hsrate/, $ROUNDS round(s)"
	# One go test per round (built once, then cached): each round runs the
	# four benchmarks one after another, so each gets its share of whatever
	# else the machine does.
	local r rc
	: >"$out"
	for ((r = 1; r <= ROUNDS; r++)); do
		(cd "$REPO" && GOMAXPROCS=1 go test -run '^$' -bench Responder -cpu 1 -count 1 \
			-benchtime "$benchtime" -timeout 30m ./netns-tests/bench/hsrate/) >"$out.$r" 2>&1
		rc=$?
		cat "$out.$r" >>"$out"
		if ((rc != 0)); then
			log "handshake rate benchmark failed: $(grep -m1 -E 'FAIL|panic|error' "$out" | cut -c1-160)"
			printf '### Handshakes per second per core, responder side\n\nnot measured: %s\n' \
				"$(grep -m1 -E 'FAIL|panic|error' "$out" | cut -c1-160)" >"$md"
			return 0
		fi
		# Per-round values into the run's .tsv too (report.awk ignores these
		# names): round, hsrate-BENCHMARK, metric, value.
		awk -v r="$r" '$1 ~ /^BenchmarkResponder\// {
			n = substr($1, 20)
			for (i = 2; i < NF; i++) if ($(i + 1) ~ /^handshakes\//) printf "%s\thsrate-%s\t%s\t%s\n", r, n, $(i + 1), $i
		}' "$out.$r" >>"$RESULTS"
	done
	{
		echo "### Handshakes per second per core, responder side (issue 21 target 5)"
		echo
		awk -v rounds="$ROUNDS" -v benchtime="$benchtime" -f "$HERE/lib/hsrate.awk" "$out"
	} >"$md"
}
