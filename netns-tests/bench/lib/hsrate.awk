# hsrate.awk: `go test -bench Responder` output of ../../hsrate -> the
# handshake-rate table: medians of handshakes per CPU second and per second,
# ratios to wireguard-go's full handshake, and the targets of issue 21.
# POSIX awk only.

function median(s,    n, i, j, a, t, parts) {
	n = split(s, parts, " ")
	if (n == 0) return ""
	for (i = 1; i <= n; i++) a[i] = parts[i] + 0
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}

function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "n/a" : sprintf("%.2fx", a / b) }

# A result line: BenchmarkResponder/NAME  N  X ns/op  Y handshakes/cpu-s  Z handshakes/s
$1 ~ /^BenchmarkResponder\// {
	name = substr($1, length("BenchmarkResponder/") + 1)
	sub(/-[0-9]+$/, "", name) # a GOMAXPROCS suffix, should -cpu differ
	for (i = 2; i < NF; i++) {
		if ($(i + 1) == "handshakes/cpu-s") cpu[name] = cpu[name] " " $i
		if ($(i + 1) == "handshakes/s") wall[name] = wall[name] " " $i
	}
}

END {
	split("stunnel-full stunnel-resumed wireguard-go-full", col, " ")
	for (k = 1; k <= 3; k++) { c[col[k]] = median(cpu[col[k]]); w[col[k]] = median(wall[col[k]]) }
	wg = c["wireguard-go-full"]
	print "| handshakes/s per core | stunnel full | stunnel resumed | wireguard-go full |"
	print "|---|---:|---:|---:|"
	printf "| per CPU second of the one thread (median of %d) | %s | %s | %s |\n", rounds,
		(c["stunnel-full"] == "" ? "n/a" : sprintf("%.0f", c["stunnel-full"])),
		(c["stunnel-resumed"] == "" ? "n/a" : sprintf("%.0f", c["stunnel-resumed"])),
		(wg == "" ? "n/a" : sprintf("%.0f", wg))
	printf "| per second of wall time | %s | %s | %s |\n",
		(w["stunnel-full"] == "" ? "n/a" : sprintf("%.0f", w["stunnel-full"])),
		(w["stunnel-resumed"] == "" ? "n/a" : sprintf("%.0f", w["stunnel-resumed"])),
		(w["wireguard-go-full"] == "" ? "n/a" : sprintf("%.0f", w["wireguard-go-full"]))
	printf "| / wireguard-go full (CPU) | %s | %s | 1x |\n", ratio(c["stunnel-full"], wg), ratio(c["stunnel-resumed"], wg)
	vf = (c["stunnel-full"] == "" || wg == "") ? "not measured" : ((c["stunnel-full"] >= wg) ? "met" : "NOT met")
	vr = (c["stunnel-resumed"] == "" || wg == "") ? "not measured" : ((c["stunnel-resumed"] >= 2 * wg) ? "met" : "NOT met")
	printf "| target | >= 1x: %s | >= 2x: %s | - |\n", vf, vr
	print ""
	nt = median(cpu["stunnel-full-noticket"])
	if (nt != "")
		printf "stunnel full includes sealing the ticket it gives the initiator (tickets are on by default); without it (`[tickets] enabled = false`): %.0f per CPU second, %s wireguard-go's.\n", nt, ratio(nt, wg)
	printf "Method: %d x `go test -bench Responder -cpu 1 -benchtime %s ./netns-tests/bench/hsrate/`: initiations built untimed, the responder's mac1 check, message, response with MACs and new keypair timed, 1,000 configured peers (docs/PERFORMANCE.md).\n", rounds, benchtime
	print "The cost of a flood of valid-mac1 initiations on an established tunnel's throughput: the two \"valid-mac1 flood\" rows of the main table."
}
