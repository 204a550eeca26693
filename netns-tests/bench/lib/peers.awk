# peers.awk: results.tsv -> the small table of memory per configured peer
# (lib/peers.sh records it once per run, round 0). Invoked by ../run with
#   -v peers=10000
# POSIX awk only.

function fmt(v) {
	if (v == "") return "n/a"
	if (v >= 100) return sprintf("%.0f", v)
	if (v >= 10) return sprintf("%.1f", v)
	if (v >= 1) return sprintf("%.2f", v)
	return sprintf("%.3f", v)
}

BEGIN { FS = "\t" }

$1 == 0 && $3 == "error" { if (!(($2) in err)) err[$2] = $4; seen = 1; next }
$1 == 0 && $3 ~ /^mem_/ && $4 != "n/a" && $4 != "" { val[$2 SUBSEP $3] = $4; seen = 1 }

END {
	if (!seen) exit
	n = split("mem_rss1 mem_rssn mem_hwmn mem_peer_rss mem_peer_hwm", m, " ")
	label["mem_rss1"] = "VmRSS, 1 peer (MiB)"
	label["mem_rssn"] = "VmRSS, " peers " peers (MiB)"
	label["mem_hwmn"] = "VmHWM, " peers " peers (MiB)"
	label["mem_peer_rss"] = "VmRSS per configured peer (KiB)"
	label["mem_peer_hwm"] = "VmHWM per configured peer (KiB)"
	# KiB as recorded; the totals read better in MiB.
	div["mem_rss1"] = div["mem_rssn"] = div["mem_hwmn"] = 1024
	div["mem_peer_rss"] = div["mem_peer_hwm"] = 1
	target["mem_peer_rss"] = target["mem_peer_hwm"] = 1

	print "| memory, quiet configured peers | stunnel | wireguard-go | nebula | stunnel/wireguard-go | target |"
	print "|---|---:|---:|---:|---:|---|"
	for (k = 1; k <= n; k++) {
		x = m[k]
		st = ((("stunnel") SUBSEP x) in val) ? val["stunnel" SUBSEP x] / div[x] : ""
		wg = ((("wireguard-go") SUBSEP x) in val) ? val["wireguard-go" SUBSEP x] / div[x] : ""
		ratio = (st == "" || wg == "" || wg <= 0) ? "n/a" : sprintf("%.2fx", st / wg)
		verdict = "-"
		if (x in target)
			verdict = (st == "" || wg == "") ? "not measured" : ("<= wireguard-go: " ((st <= wg) ? "met" : "NOT met"))
		print "| " label[x] " | " fmt(st) " | " fmt(wg) " | n/a | " ratio " | " verdict " |"
	}
	print ""
	print "nebula: n/a, it has no list of peers to configure: a host admits any peer whose certificate its CA signed, so there is no per-peer configuration to grow."
	for (i in err) printf "%s: %s\n", i, err[i]
}
