# hub.awk: hub.tsv (round, impl, metric, value) of lib/hub.sh -> the hub
# table: medians across rounds for stunnel-aes and wireguard-go, their ratio,
# and issue 21's target (neither memory nor CPU per GB worse than
# wireguard-go's). Invoked with -v peers= clients= rounds= dur= rate=.
# POSIX awk only.

function median(key,    n, i, j, a, t, parts) {
	n = split(vals[key], parts, " ")
	if (n == 0) return ""
	for (i = 1; i <= n; i++) a[i] = parts[i] + 0
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}

function fmt(v) {
	if (v == "") return "n/a"
	if (v >= 100) return sprintf("%.0f", v)
	if (v >= 10) return sprintf("%.1f", v)
	if (v >= 1) return sprintf("%.2f", v)
	return sprintf("%.3f", v)
}

BEGIN { FS = "\t" }
$3 == "error" { if (!(($2) in err)) err[$2] = $4; next }
$4 != "n/a" && $4 != "" { vals[$2 SUBSEP $3] = vals[$2 SUBSEP $3] " " $4 }

END {
	half = clients / 2
	nm = split("gbps cpu_gb cpu_core rss_peak rss_end rss_idle pairs", m, " ")
	label["gbps"] = "throughput delivered, " half " TCP pairs (Gbit/s)" (rate != "" ? ", " rate " each" : "")
	label["cpu_gb"] = "hub CPU s per GB delivered"; target["cpu_gb"] = 1
	label["cpu_core"] = "hub CPU during the test (cores)"
	label["rss_peak"] = "hub peak RSS, VmHWM (MiB)"; target["rss_peak"] = 1
	label["rss_end"] = "hub RSS after the traffic (MiB)"
	label["rss_idle"] = "hub RSS before the traffic (MiB)"
	label["pairs"] = "pairs that completed (of " half ")"
	print "| metric | stunnel-aes | wireguard-go | stunnel/wireguard-go | target |"
	print "|---|---:|---:|---:|---|"
	for (k = 1; k <= nm; k++) {
		x = m[k]; st = median("stunnel-aes" SUBSEP x); wg = median("wireguard-go" SUBSEP x)
		ratio = (st == "" || wg == "" || wg == 0) ? "n/a" : sprintf("%.2fx", st / wg)
		verdict = "-"
		if (x in target) verdict = (ratio == "n/a") ? "not measured" : ("<= wireguard-go: " ((st <= wg) ? "met" : "NOT met"))
		if (x == "pairs") { ratio = "-"; st = (st == "" ? "" : sprintf("%d", st)); wg = (wg == "" ? "" : sprintf("%d", wg)) }
		print "| " label[x] " | " (x == "pairs" && st != "" ? st : fmt(st)) " | " (x == "pairs" && wg != "" ? wg : fmt(wg)) " | " ratio " | " verdict " |"
	}
	print ""
	printf "%d round(s), %d s of traffic each; medians. Client i sends to client i + %d through the hub (TCP, one stream per pair%s); the hub's CPU is its utime + stime over the test, per GB (10^9 bytes) that arrived at the receivers.\n", rounds, dur, half, (rate != "" ? ", iperf3 -b " rate : ", unlimited")
	for (i in err) printf "\n%s: %s\n", i, err[i]
}
