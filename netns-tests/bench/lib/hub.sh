# shellcheck shell=bash disable=SC2034,SC2015
# (SC2034: variables are shared between the sourced files; SC2015: `a && b || fail` is meant.)
# The hub setup (issue 21, target 6): one hub with HUB_PEERS configured peers
# of which HUB_CLIENTS are active clients, each in its own namespace; client
# i sends to client i + HUB_CLIENTS/2 through the hub (iperf3 TCP, one
# stream per pair, DURATION seconds, unlimited unless HUB_RATE is set). We
# record what arrived, the hub's CPU (utime + stime) per GB delivered, and
# its memory (VmHWM, VmRSS). stunnel-aes against wireguard-go, alternated
# over HUB_ROUNDS rounds (default ROUNDS); the table goes to $WORK/extra-2-hub.md, which
# ../run prints after the main table. Sourced by ../run.
#
#   HUB=0                 skip it
#   HUB_ROUNDS=$ROUNDS    rounds (each: one stunnel hub, one wireguard-go hub; ~50 s at 10 s of traffic)
#   HUB_PEERS=1000 HUB_CLIENTS=50   configured peers, active clients (even, <= 200)
#   HUB_RATE=             iperf3 -b per pair (e.g. 20M); empty: as fast as TCP goes
#   HUB_WG_CLIENT_MEMLIMIT=128MiB   GOMEMLIMIT of wireguard-go clients (not the hub)
#
# Topology: the hub's namespace holds a bridge br0 (underlay 198.18.72.1/24);
# client i's namespace has veth ul0 (198.18.72.(10+i)/24) whose other end is
# port c<i> of br0. Overlay 198.19.0.0/16: hub 198.19.72.1, client i
# 198.19.72.(10+i), made-up peers 198.19.80.1 on; the hub forwards between
# clients (ip_forward), each client routes the /16 to the hub.

HUB_UL=198.18.72 HUB_OL=198.19.72 HUB_PORT=51820

hub_measure() {
	[[ "${HUB:-1}" == 0 ]] && { log "hub: skipped (HUB=0)"; return 0; }
	HUB_ROUNDS=${HUB_ROUNDS:-$ROUNDS} HUB_PEERS=${HUB_PEERS:-1000} HUB_CLIENTS=${HUB_CLIENTS:-50}
	HUB_RESULTS=$WORK/hub.tsv
	: >"$HUB_RESULTS"
	if ! [[ "$HUB_ROUNDS" =~ ^[1-9][0-9]*$ && "$HUB_CLIENTS" =~ ^[1-9][0-9]*$ && "$HUB_PEERS" =~ ^[0-9]+$ ]] ||
		((HUB_CLIENTS % 2 || HUB_CLIENTS > 200 || HUB_PEERS < HUB_CLIENTS)); then
		log "hub: HUB_CLIENTS must be even and <= 200, HUB_PEERS >= HUB_CLIENTS; skipped"
		return 0
	fi
	hub_keys || { log "hub: could not make keys; skipped"; return 0; }
	local r impls
	for ((r = 1; r <= HUB_ROUNDS; r++)); do
		# Alternate which hub goes first.
		if ((r % 2)); then impls="stunnel-aes wireguard-go"; else impls="wireguard-go stunnel-aes"; fi
		for IMPL in $impls; do
			HUB_ROUND=$r
			hub_one "$IMPL"
		done
	done
	{
		echo "### hub: $HUB_PEERS peers, $HUB_CLIENTS active (issue 21 target 6)"
		echo
		awk -v peers="$HUB_PEERS" -v clients="$HUB_CLIENTS" -v rounds="$HUB_ROUNDS" -v dur="$DURATION" \
			-v rate="${HUB_RATE:-}" -f "$HERE/lib/hub.awk" "$HUB_RESULTS"
	} >"$WORK/extra-2-hub.md"
	# Per-round values into the run's .tsv too, named so report.awk ignores them.
	awk 'BEGIN { FS = OFS = "\t" } { $3 = "hub_" $3; print }' "$HUB_RESULTS" >>"$RESULTS"
}

hub_record() { printf '%s\t%s\t%s\t%s\n' "$HUB_ROUND" "$IMPL" "$1" "$2" >>"$HUB_RESULTS"; }

# hub_keys: the made-up public keys of the idle peers, shared by both hubs
# (base64 of 32 random bytes; nobody holds their private keys).
hub_keys() {
	local i n=$((HUB_PEERS - HUB_CLIENTS))
	HUB_FAKE=$WORK/hub-fake.pub
	: >"$HUB_FAKE"
	for ((i = 0; i < n; i++)); do
		head -c 32 /dev/urandom | base64 >>"$HUB_FAKE" || return 1
	done
}

# hub_fake_ip I: the overlay address of made-up peer I (0-based).
hub_fake_ip() { echo "198.19.$((80 + $1 / 250)).$(($1 % 250 + 1))"; }

# hub_complement ADDR: the prefixes that cover 198.19.0.0/16 except ADDR/32
# (stunnel refuses a peer's allowed_ips that contain the host's own address).
hub_complement() {
	local a b c d ip L p pfx=()
	IFS=. read -r a b c d <<<"$1"
	ip=$(((a << 24) | (b << 16) | (c << 8) | d))
	for ((L = 17; L <= 32; L++)); do
		p=$((((ip >> (32 - L)) ^ 1) << (32 - L)))
		pfx+=("\"$((p >> 24 & 255)).$((p >> 16 & 255)).$((p >> 8 & 255)).$((p & 255))/$L\"")
	done
	local IFS=,
	echo "${pfx[*]}"
}

HUB_NS="" HUB_CNS=() HUB_PID="" HUB_ERR=""

# hub_topo: the hub's namespace with its bridge, and one namespace per client.
hub_topo() {
	local tag=$1 i ns
	HUB_NS="sth-${RUN_ID}-${tag}-h" HUB_CNS=()
	ip netns add "$HUB_NS" || return 1
	BENCH_NETNS+=("$HUB_NS")
	ip netns exec "$HUB_NS" sh -e -c "
		ip link set lo up
		ip link add br0 type bridge
		ip addr add $HUB_UL.1/24 dev br0
		ip link set br0 up
		# A hub sends forwarded packets back out the interface they came in on:
		# no ICMP redirects for that.
		sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0
	" || return 1
	for ((i = 0; i < HUB_CLIENTS; i++)); do
		ns="sth-${RUN_ID}-${tag}-c$i"
		ip netns add "$ns" || return 1
		BENCH_NETNS+=("$ns")
		HUB_CNS+=("$ns")
		ip link add ul0 netns "$ns" type veth peer name "c$i" netns "$HUB_NS" &&
			ip netns exec "$HUB_NS" ip link set "c$i" master br0 up &&
			ip netns exec "$ns" sh -e -c "ip link set lo up; ip addr add $HUB_UL.$((10 + i))/24 dev ul0; ip link set ul0 up" ||
			return 1
	done
	wait_until 10 "underlay to the hub" ip netns exec "${HUB_CNS[0]}" ping -c1 -W1 "$HUB_UL.1"
}

# hub_one IMPL: one hub run, on fresh namespaces.
hub_one() {
	local impl=$1
	log "hub round $HUB_ROUND/$HUB_ROUNDS: $impl, $HUB_PEERS peers, $HUB_CLIENTS clients"
	HUB_ERR="" HUB_PID=""
	if ! hub_topo "$HUB_ROUND${impl:0:2}"; then
		hub_record error "could not build the namespaces"
	elif ! case $impl in
		stunnel-aes) hub_stunnel_up ;;
		wireguard-go) hub_wg_up ;;
		esac; then
		log "hub $impl: $HUB_ERR"
		hub_record error "$HUB_ERR"
	elif ! hub_traffic; then
		log "hub $impl: $HUB_ERR"
		hub_record error "$HUB_ERR"
	fi
	stop_all_pids
	delete_all_netns
}

hub_fail() { HUB_ERR=$1; return 1; }

# hub_wait_clients: every client reaches the hub's overlay address (its
# handshake is done, the hub knows its endpoint), and client 0 reaches the
# last client through the hub.
hub_wait_clients() {
	local i last=$((HUB_CLIENTS - 1))
	for ((i = 0; i < HUB_CLIENTS; i++)); do
		alive "$HUB_PID" || { hub_fail "the hub exited: $(last_line "$1")"; return 1; }
		wait_until 20 "client $i -> hub" ip netns exec "${HUB_CNS[i]}" ping -c1 -W1 "$HUB_OL.1" ||
			{ hub_fail "client $i gets no ping reply from the hub through the tunnel: $(last_line "$1")"; return 1; }
	done
	wait_until 20 "client 0 -> client $last through the hub" \
		ip netns exec "${HUB_CNS[0]}" ping -c1 -W1 "$HUB_OL.$((10 + last))" ||
		hub_fail "client 0 gets no ping reply from client $last through the hub"
}

# --- stunnel ---------------------------------------------------------------

hub_stunnel_up() {
	[[ -n "$STUNNEL_BIN" ]] || { hub_fail "$STUNNEL_SKIP"; return 1; }
	local d=$WORK/hub-stunnel-$HUB_ROUND i hubpub
	mkdir -p "$d"
	hub_stunnel_key "$d/hub" || return 1
	hubpub=$(cat "$d/hub.pub")
	{
		printf '[interface]\nname = "st0"\npeer_id = "hub"\nprivate_key_file = "%s"\nstate_file = "%s"\n' "$d/hub.key" "$d/hub.state"
		printf 'listen_port = %d\naddress = ["%s.1/16"]\nmtu = %d\n\n[session]\ncipher = "aes256gcm"\n' \
			"$HUB_PORT" "$HUB_OL" "$TUN_MTU"
		for ((i = 0; i < HUB_CLIENTS; i++)); do
			hub_stunnel_key "$d/c$i" || return 1
			printf '\n[[peer]]\nid = "client-%d"\npublic_key = "%s"\nallowed_ips = ["%s.%d/32"]\n' \
				"$i" "$(cat "$d/c$i.pub")" "$HUB_OL" $((10 + i))
		done
		i=0
		while read -r pub; do
			printf '\n[[peer]]\nid = "idle-%d"\npublic_key = "%s"\nallowed_ips = ["%s/32"]\n' "$i" "$pub" "$(hub_fake_ip "$i")"
			i=$((i + 1))
		done <"$HUB_FAKE"
	} >"$d/hub.toml" || { hub_fail "writing the hub's config failed"; return 1; }
	"$STUNNEL_BIN" check -c "$d/hub.toml" >"$d/check.err" 2>&1 ||
		{ hub_fail "stunnel check rejected the hub config: $(last_line "$d/check.err")"; return 1; }
	mkdir -p "$d/run-hub"
	start_in "$HUB_NS" "$d/hub.log" env STUNNEL_RUN_DIR="$d/run-hub" "$STUNNEL_BIN" up -c "$d/hub.toml"
	HUB_PID=$START_PID
	for ((i = 0; i < HUB_CLIENTS; i++)); do
		cat >"$d/c$i.toml" <<-TOML
			[interface]
			name = "st0"
			peer_id = "client-$i"
			private_key_file = "$d/c$i.key"
			state_file = "$d/c$i.state"
			listen_port = $HUB_PORT
			address = ["$HUB_OL.$((10 + i))/16"]
			mtu = $TUN_MTU

			[session]
			cipher = "aes256gcm"

			[[peer]]
			id = "hub"
			public_key = "$hubpub"
			endpoint = "$HUB_UL.1:$HUB_PORT"
			allowed_ips = [$(hub_complement "$HUB_OL.$((10 + i))")]
		TOML
		mkdir -p "$d/run-c$i"
		start_in "${HUB_CNS[i]}" "$d/c$i.log" env STUNNEL_RUN_DIR="$d/run-c$i" "$STUNNEL_BIN" up -c "$d/c$i.toml"
	done
	hub_wait_clients "$d/hub.log"
}

# hub_stunnel_key PATH: PATH.key and PATH.pub.
hub_stunnel_key() {
	(umask 077 && "$STUNNEL_BIN" genkey >"$1.key" 2>/dev/null) && "$STUNNEL_BIN" pubkey <"$1.key" >"$1.pub" 2>/dev/null ||
		hub_fail "stunnel genkey/pubkey failed"
}

# --- wireguard-go ----------------------------------------------------------

hub_wg_up() {
	local d=$WORK/hub-wg-$HUB_ROUND i if_h="wg${RUN_ID}h" if_c
	mkdir -p "$d"
	(umask 077 && wg genkey >"$d/hub.key") && wg pubkey <"$d/hub.key" >"$d/hub.pub" ||
		{ hub_fail "wg genkey failed"; return 1; }
	{
		printf '[Interface]\nPrivateKey = %s\nListenPort = %d\n' "$(cat "$d/hub.key")" "$HUB_PORT"
		for ((i = 0; i < HUB_CLIENTS; i++)); do
			(umask 077 && wg genkey >"$d/c$i.key") && wg pubkey <"$d/c$i.key" >"$d/c$i.pub" ||
				{ hub_fail "wg genkey failed"; return 1; }
			printf '\n[Peer]\nPublicKey = %s\nAllowedIPs = %s.%d/32\n' "$(cat "$d/c$i.pub")" "$HUB_OL" $((10 + i))
		done
		i=0
		while read -r pub; do
			printf '\n[Peer]\nPublicKey = %s\nAllowedIPs = %s/32\n' "$pub" "$(hub_fake_ip "$i")"
			i=$((i + 1))
		done <"$HUB_FAKE"
	} >"$d/hub.conf" || return 1
	# wg finds a device by /var/run/wireguard/NAME.sock, shared by all
	# namespaces: names are unique per run.
	start_in "$HUB_NS" "$d/hub.log" env WG_PROCESS_FOREGROUND=1 "$WG_BIN" -f "$if_h"
	HUB_PID=$START_PID
	wait_until 10 "wireguard-go hub" ip netns exec "$HUB_NS" wg show "$if_h" &&
		ip netns exec "$HUB_NS" wg setconf "$if_h" "$d/hub.conf" &&
		ip netns exec "$HUB_NS" sh -e -c "ip addr add $HUB_OL.1/16 dev $if_h; ip link set $if_h mtu $TUN_MTU up" ||
		{ hub_fail "wireguard-go hub did not come up: $(last_line "$d/hub.log")"; return 1; }
	for ((i = 0; i < HUB_CLIENTS; i++)); do
		if_c="w${RUN_ID}c$i"
		start_in "${HUB_CNS[i]}" "$d/c$i.log" env WG_PROCESS_FOREGROUND=1 \
			GOMEMLIMIT="${HUB_WG_CLIENT_MEMLIMIT:-128MiB}" "$WG_BIN" -f "$if_c"
	done
	for ((i = 0; i < HUB_CLIENTS; i++)); do
		if_c="w${RUN_ID}c$i"
		wait_until 10 "wireguard-go client $i" ip netns exec "${HUB_CNS[i]}" wg show "$if_c" &&
			ip netns exec "${HUB_CNS[i]}" wg set "$if_c" private-key "$d/c$i.key" listen-port "$HUB_PORT" \
				peer "$(cat "$d/hub.pub")" allowed-ips 198.19.0.0/16 endpoint "$HUB_UL.1:$HUB_PORT" &&
			ip netns exec "${HUB_CNS[i]}" sh -e -c "ip addr add $HUB_OL.$((10 + i))/16 dev $if_c; ip link set $if_c mtu $TUN_MTU up" ||
			{ hub_fail "wireguard-go client $i did not come up: $(last_line "$d/c$i.log")"; return 1; }
	done
	hub_wait_clients "$d/hub.log"
}

# --- the measurement -------------------------------------------------------

# hub_status_kib FIELD: VmHWM or VmRSS of the hub, in KiB.
hub_status_kib() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$HUB_PID/status"; }

hub_ticks() { sed 's/^.*) //' "/proc/$HUB_PID/stat" | awk '{ print $12 + $13 }'; }

hub_traffic() {
	local half=$((HUB_CLIENTS / 2)) i t0 t1 pids=() out=$WORK/hub-iperf-$HUB_ROUND-$IMPL rate=()
	mkdir -p "$out"
	[[ -n "${HUB_RATE:-}" ]] && rate=(-b "$HUB_RATE")
	hub_record rss_idle "$(awk -v k="$(hub_status_kib VmRSS)" 'BEGIN { printf "%.1f", k / 1024 }')"
	for ((i = half; i < HUB_CLIENTS; i++)); do
		start_in "${HUB_CNS[i]}" "$out/server-$i.log" iperf3 -s
	done
	for ((i = half; i < HUB_CLIENTS; i++)); do
		wait_until 10 "iperf3 server in client $i" ip netns exec "${HUB_CNS[i]}" sh -c "ss -Hltn 'sport = :5201' | grep -q ." ||
			{ hub_fail "iperf3 server did not start in client $i"; return 1; }
	done
	t0=$(hub_ticks)
	for ((i = 0; i < half; i++)); do
		timeout -k 5 $((DURATION + 30)) ip netns exec "${HUB_CNS[i]}" iperf3 -c "$HUB_OL.$((10 + i + half))" \
			-t "$DURATION" -J --connect-timeout 5000 "${rate[@]}" >"$out/$i.json" 2>"$out/$i.err" &
		pids+=($!)
		track_pid $! # an interrupted run stops them too
	done
	for i in "${pids[@]}"; do wait "$i"; done
	t1=$(hub_ticks)
	alive "$HUB_PID" || { hub_fail "the hub exited during the traffic"; return 1; }
	hub_record rss_peak "$(awk -v k="$(hub_status_kib VmHWM)" 'BEGIN { printf "%.1f", k / 1024 }')"
	hub_record rss_end "$(awk -v k="$(hub_status_kib VmRSS)" 'BEGIN { printf "%.1f", k / 1024 }')"
	# Per pair: bytes and bits per second received; failed pairs count zero.
	local bytes=0 bps=0 ok=0 b s
	for ((i = 0; i < half; i++)); do
		if b=$(jq -er 'select(.error == null) | .end.sum_received.bytes' "$out/$i.json" 2>/dev/null) &&
			s=$(jq -er '.end.sum_received.bits_per_second' "$out/$i.json" 2>/dev/null); then
			bytes=$(awk -v a="$bytes" -v b="$b" 'BEGIN { printf "%.0f", a + b }')
			bps=$(awk -v a="$bps" -v b="$s" 'BEGIN { printf "%.0f", a + b }')
			ok=$((ok + 1))
		else
			log "hub $IMPL: pair $i -> $((i + half)): $(jq -r '.error // empty' "$out/$i.json" 2>/dev/null) $(last_line "$out/$i.err")"
		fi
	done
	hub_record pairs "$ok"
	((ok > 0)) || { hub_fail "no iperf3 pair completed through the hub"; return 1; }
	hub_record gbps "$(awk -v b="$bps" 'BEGIN { printf "%.3f", b / 1e9 }')"
	hub_record cpu_gb "$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v b="$bytes" 'BEGIN { printf "%.2f", t / hz / (b / 1e9) }')"
	hub_record cpu_core "$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v d="$DURATION" 'BEGIN { printf "%.2f", t / hz / d }')"
}
