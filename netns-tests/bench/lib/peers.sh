# shellcheck shell=bash disable=SC2034,SC2015
# (SC2034: variables are shared between the sourced files; SC2015: `a && b || fail` is meant.)
# Memory per configured peer (issue 21, "cost that grows with the config"):
# one daemon alone in a fresh namespace, with MEM_PEERS configured quiet peers
# (a public key and an allowed /32 each; no endpoint, no traffic, no
# keepalive), and again with 1 peer. Once per run, not per round: nothing is
# sent, so there is no load for the other columns to share. Records, with
# round 0: mem_rss1 / mem_rssn / mem_hwm1 / mem_hwmn (KiB) and mem_peer_rss /
# mem_peer_hwm (KiB per peer: (N peers - 1 peer) / N). N is MEM_PEERS (set
# by ../run). Sourced by ../run.

# random_keys N: N random 32-byte keys, base64, one a line: the public keys
# of peers that never connect (as good as real ones for a config, and made
# in a blink where N runs of `wg genkey` take a minute).
random_keys() {
	od -An -v -tu1 -N $(($1 * 32)) /dev/urandom | awk '
		BEGIN { b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" }
		function c(v) { return substr(b64, v % 64 + 1, 1) }
		function emit(   s, j, v) {
			s = ""
			for (j = 0; j < 30; j += 3) {
				v = b[j] * 65536 + b[j + 1] * 256 + b[j + 2]
				s = s c(int(v / 262144)) c(int(v / 4096)) c(int(v / 64)) c(v)
			}
			v = b[30] * 65536 + b[31] * 256
			print s c(int(v / 262144)) c(int(v / 4096)) c(int(v / 64)) "="
		}
		{ for (i = 1; i <= NF; i++) { b[n++] = $i; if (n == 32) { emit(); n = 0 } } }'
}

# peer_lines FORMAT: keys on stdin -> one peer each, FORMAT (stunnel | wg)
# with its key, its ID p0, p1, ... and its allowed /32 in 198.19.0.0/16.
# awk, not a shell loop: 10,000 peers.
peer_lines() {
	awk -v fmt="$1" '{
		i = NR - 1; ip = sprintf("198.19.%d.%d/32", 1 + int(i / 250), 1 + i % 250)
		if (fmt == "wg") printf "\n[Peer]\nPublicKey = %s\nAllowedIPs = %s\n", $0, ip
		else printf "\n[[peer]]\nid = \"p%d\"\npublic_key = \"%s\"\nallowed_ips = [\"%s\"]\n", i, $0, ip
	}'
}

# settle_rss PID: wait until the daemon's VmRSS stops moving (two reads 1 s
# apart within 1 %, at least 3 s after start-up, at most 30 s); sets RSS_KB
# and HWM_KB. Empty if the daemon exited.
settle_rss() {
	local pid=$1 prev=0 cur i
	RSS_KB="" HWM_KB=""
	for ((i = 0; i < 30; i++)); do
		sleep 1
		alive "$pid" || return 1
		cur=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
		((i >= 2 && cur * 100 <= prev * 101 && cur * 101 >= prev * 100)) && break
		prev=$cur
	done
	RSS_KB=$cur
	HWM_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
	[[ -n "$RSS_KB" && -n "$HWM_KB" ]]
}

# mem_ns TAG: one fresh namespace (NS_A) with loopback up, for a lone daemon.
mem_ns() {
	NS_A="stb-${RUN_ID}-$1"
	ip netns add "$NS_A" || return 1
	BENCH_NETNS+=("$NS_A")
	ip -n "$NS_A" link set lo up
}

# mem_stunnel N: `stunnel up` with N quiet peers; sets RSS_KB HWM_KB.
mem_stunnel() {
	local n=$1 d=$WORK/mem-stunnel-$1 pid
	[[ -n "$STUNNEL_BIN" ]] || { fail "$STUNNEL_SKIP"; return 1; }
	mkdir -p "$d/run"
	(umask 077 && "$STUNNEL_BIN" genkey >"$d/self.key") || { fail "stunnel genkey failed"; return 1; }
	{
		cat <<-TOML
			[interface]
			name = "st0"
			peer_id = "hub"
			private_key_file = "$d/self.key"
			state_file = "$d/self.state"
			listen_port = 51820
			address = ["198.19.0.1/16"]
			mtu = $TUN_MTU
		TOML
		random_keys "$n" | peer_lines stunnel
	} >"$d/hub.toml"
	mem_ns "m$n" || { fail "could not make the namespace"; return 1; }
	start_in "$NS_A" "$d/log" env STUNNEL_RUN_DIR="$d/run" "$STUNNEL_BIN" up -c "$d/hub.toml"
	pid=$START_PID
	wait_until 60 "stunnel up with $n peers" grep -q "tunnel up" "$d/log" ||
		{ fail "stunnel with $n peers did not come up: $(last_line "$d/log")"; return 1; }
	settle_rss "$pid" || { fail "stunnel with $n peers exited: $(last_line "$d/log")"; return 1; }
}

# mem_wg N: wireguard-go with N quiet peers set by `wg setconf` from a file,
# the interface up with its address as stunnel's; sets RSS_KB HWM_KB.
mem_wg() {
	local n=$1 d=$WORK/mem-wg-$1 pid if="wg${RUN_ID}m" got
	mkdir -p "$d"
	mem_ns "w$n" || { fail "could not make the namespace"; return 1; }
	start_in "$NS_A" "$d/log" env WG_PROCESS_FOREGROUND=1 "$WG_BIN" -f "$if"
	pid=$START_PID
	wait_until 10 "wireguard-go $if" ipa wg show "$if" ||
		{ fail "wireguard-go did not come up: $(last_line "$d/log")"; return 1; }
	{
		printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\n' "$(wg genkey)"
		random_keys "$n" | peer_lines wg
	} >"$d/wg.conf"
	ipa wg setconf "$if" "$d/wg.conf" 2>"$d/setconf.err" ||
		{ fail "wg setconf with $n peers failed: $(last_line "$d/setconf.err")"; return 1; }
	ipa ip addr add 198.19.0.1/16 dev "$if" && ipa ip link set "$if" mtu "$TUN_MTU" up ||
		{ fail "configuring wireguard-go with ip failed"; return 1; }
	got=$(ipa wg show "$if" peers | wc -l)
	((got == n)) || { fail "wireguard-go has $got peers, not $n, after wg setconf"; return 1; }
	settle_rss "$pid" || { fail "wireguard-go with $n peers exited: $(last_line "$d/log")"; return 1; }
}

# mem_peers: the step itself, for stunnel and wireguard-go; Nebula has no
# list of peers to configure (see peers.awk).
mem_peers() {
	local impl fn n rss1 hwm1
	ROUND=0
	for impl in stunnel wireguard-go; do
		IMPL=$impl fn=mem_stunnel
		[[ $impl == wireguard-go ]] && fn=mem_wg
		for n in 1 "$MEM_PEERS"; do
			log "memory: $impl with $n configured peer(s)"
			IMPL_ERR=""
			if $fn "$n"; then
				log "memory: $impl, $n peer(s): VmRSS $RSS_KB KiB, VmHWM $HWM_KB KiB"
				if ((n == 1)); then
					rss1=$RSS_KB hwm1=$HWM_KB
					record mem_rss1 "$RSS_KB"; record mem_hwm1 "$HWM_KB"
				else
					record mem_rssn "$RSS_KB"; record mem_hwmn "$HWM_KB"
				fi
			else
				log "memory: $impl, $n peer(s): $IMPL_ERR"
				record error "memory per peer: $IMPL_ERR"
				((n == 1)) && rss1="" hwm1=""
				RSS_KB="" HWM_KB=""
			fi
			topo_down
		done
		if [[ -n "$rss1" && -n "$RSS_KB" ]]; then
			record mem_peer_rss "$(awk -v a="$rss1" -v b="$RSS_KB" -v n="$MEM_PEERS" 'BEGIN { printf "%.2f", (b - a) / n }')"
			record mem_peer_hwm "$(awk -v a="$hwm1" -v b="$HWM_KB" -v n="$MEM_PEERS" 'BEGIN { printf "%.2f", (b - a) / n }')"
		else
			record mem_peer_rss n/a; record mem_peer_hwm n/a
		fi
	done
}
