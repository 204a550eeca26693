# report.awk: results.tsv (round, impl, metric, value) -> a Markdown table of
# medians across rounds, the ratio of stunnel's better cipher to
# wireguard-go, and the issue's target for that row. Invoked by ../run with
#   -v impls="stunnel-chacha stunnel-aes wireguard-go nebula raw"
#   -v large=1392 -v idle_secs=60
# POSIX awk only (no gawk asort): the sort is an insertion sort.

function median(key,    n, i, j, a, t, parts) {
	n = split(vals[key], parts, " ")
	for (i = 1; i <= n; i++) a[i] = parts[i] + 0
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
	if (n == 0) return ""
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}

function fmt(v) {
	if (v == "") return "n/a"
	if (v >= 100) return sprintf("%.0f", v)
	if (v >= 10) return sprintf("%.1f", v)
	if (v >= 1) return sprintf("%.2f", v)
	return sprintf("%.3f", v)
}

# better(a, b, dir): the better of two medians ("" = missing).
function better(a, b, dir) {
	if (a == "") return b
	if (b == "") return a
	if (dir == "high") return (a > b) ? a : b
	return (a < b) ? a : b
}

BEGIN { FS = "\t" }

$3 == "error" { if (!(($2) in err)) err[$2] = $4; next }
$4 != "n/a" && $4 != "" { vals[$2 SUBSEP $3] = vals[$2 SUBSEP $3] " " $4 }

END {
	nm = split("tcp1 tcp1_cc tcp4 udp64 udp_large tcp_flood_closed tcp_flood rtt_p50 rtt_p99 tail_p50 tail_p99 tail_first lul_p50 lul_p99 cpu200 cpu1000 idle_cpu idle_wakes cpu_gb sys_cpu_gb rss", m, " ")
	label["tcp1"] = "TCP, 1 stream (Gbit/s)";          dir["tcp1"] = "high"; target["tcp1"] = 2
	# The same medians as tcp1, stunnel-chacha only: ChaCha20 against wireguard-go's ChaCha20.
	label["tcp1_cc"] = "TCP, 1 stream, cipher for cipher (stunnel-chacha / wireguard-go)"; dir["tcp1_cc"] = "high"; target["tcp1_cc"] = 1.5
	label["tcp4"] = "TCP, 4 streams (Gbit/s)";         dir["tcp4"] = "high"; target["tcp4"] = 1.5
	label["udp64"] = "UDP 64 B payload (kpps recv)";   dir["udp64"] = "high"; target["udp64"] = 1
	label["udp_large"] = "UDP " large " B payload (kpps recv)"; dir["udp_large"] = "high"
	label["tcp_flood_closed"] = "TCP 1, valid-mac1 flood at a closed port (Gbit/s)"; dir["tcp_flood_closed"] = "high"
	label["tcp_flood"] = "TCP 1, valid-mac1 flood at the tunnel (Gbit/s)"; dir["tcp_flood"] = "high"
	label["rtt_p50"] = "ping RTT median (ms)";         dir["rtt_p50"] = "low"
	label["rtt_p99"] = "ping RTT p99 (ms)";            dir["rtt_p99"] = "low"
	# lib/tail.sh: the same pings with every column up at once, in blocks taking turns.
	label["tail_p50"] = "ping RTT median, columns interleaved (ms)"; dir["tail_p50"] = "low"
	label["tail_p99"] = "ping RTT p99, columns interleaved (ms)";    dir["tail_p99"] = "low"
	label["tail_first"] = "ping RTT after a pause of 1 s or more: first of each interleaved block, median (ms)"; dir["tail_first"] = "low"
	label["lul_p50"] = "ping RTT under TCP 1-stream load, median (ms)"; dir["lul_p50"] = "low"
	label["lul_p99"] = "ping RTT under TCP 1-stream load, p99 (ms)";    dir["lul_p99"] = "low"
	label["cpu200"] = "daemons' CPU, ping at 200/s (% of a core)";   dir["cpu200"] = "low"; target["cpu200"] = -1
	label["cpu1000"] = "daemons' CPU, ping at 1000/s (% of a core)"; dir["cpu1000"] = "low"; target["cpu1000"] = -1
	label["idle_cpu"] = "daemons' CPU, idle " idle_secs " s (% of a core)"; dir["idle_cpu"] = "low"; target["idle_cpu"] = -1
	label["idle_wakes"] = "idle wake-ups per second per daemon"; dir["idle_wakes"] = "low"
	# Rows of the daemons' own cost: the raw veth has none to account.
	nodaemon["cpu_gb"] = nodaemon["rss"] = nodaemon["cpu200"] = nodaemon["cpu1000"] = 1
	nodaemon["idle_cpu"] = nodaemon["idle_wakes"] = 1
	label["cpu_gb"] = "daemons' CPU s per GB (TCP 1)"; dir["cpu_gb"] = "low"
	label["sys_cpu_gb"] = "machine CPU s per GB (TCP 1)"; dir["sys_cpu_gb"] = "low"
	label["rss"] = "daemon peak RSS (MiB)";            dir["rss"] = "low"; target["rss"] = -1

	# Issue 21: an idle daemon "wakes at most a few times a second".
	max_wakes = 5

	ni = split(impls, im, " ")
	head = "| metric |"; rule = "|---|"
	for (i = 1; i <= ni; i++) { head = head " " im[i] " |"; rule = rule "---:|" }
	print head " stunnel/wireguard-go | target |"
	print rule "---:|---|"

	for (k = 1; k <= nm; k++) {
		metric = m[k]; row = "| " label[metric] " |"
		src = (metric == "tcp1_cc") ? "tcp1" : metric
		for (i = 1; i <= ni; i++) {
			med[im[i]] = median(im[i] SUBSEP src)
			# raw veth has no daemon: nothing to account, not a failure.
			na = (im[i] == "raw" && (metric in nodaemon))
			if (metric == "tcp1_cc" && im[i] != "stunnel-chacha" && im[i] != "wireguard-go") na = 1
			row = row " " (na ? "-" : fmt(med[im[i]])) " |"
		}
		st = better(med["stunnel-chacha"], med["stunnel-aes"], dir[metric])
		if (metric == "tcp1_cc") st = med["stunnel-chacha"]
		which = (st == "") ? "" : (st == med["stunnel-aes"] && metric != "tcp1_cc" ? "aes" : "chacha")
		wg = med["wireguard-go"]
		ratio = (st == "" || wg == "" || wg == 0) ? "n/a" : sprintf("%.2fx (%s)", st / wg, which)
		# Both idle (0 % of a core): no ratio, but "<= wireguard-go" is still decided.
		if (st != "" && wg != "" && wg == 0 && dir[metric] == "low") ratio = "- (" which ")"

		verdict = "-"
		if (metric in target && ratio != "n/a") {
			if (target[metric] > 0) {
				ok = (st / wg >= target[metric])
				verdict = ">= " target[metric] "x: " (ok ? "met" : "NOT met")
			} else {
				verdict = "<= wireguard-go: " ((st <= wg) ? "met" : "NOT met")
			}
		}
		if (metric == "rtt_p50" || metric == "tail_p50") {
			ref = better(wg, med["nebula"], "low")
			if (st != "" && ref != "")
				verdict = "<= min(wg-go, nebula) = " fmt(ref) ": " ((st <= ref) ? "met" : "NOT met")
			else
				verdict = "not measured"
		}
		if (metric == "rtt_p99" || metric == "tail_p99") {
			ref = better(wg, med["nebula"], "low")
			if (st != "" && ref != "")
				verdict = "<= 0.8 x min(wg-go, nebula) = " fmt(0.8 * ref) ": " ((st <= 0.8 * ref) ? "met" : "NOT met")
			else
				verdict = "not measured"
		}
		if (metric == "idle_wakes")
			verdict = (st == "") ? "not measured" : ("<= " max_wakes "/s: " ((st <= max_wakes) ? "met" : "NOT met"))
		if (metric in target && ratio == "n/a") verdict = "not measured"
		print row " " ratio " | " verdict " |"
	}
	for (i = 1; i <= ni; i++)
		if (im[i] in err) printf "\n%s: %s", im[i], err[im[i]]
	print ""
}
