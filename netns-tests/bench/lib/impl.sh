# shellcheck shell=bash disable=SC2034,SC2015
# (SC2034: variables are shared between the sourced files; SC2015: `a && b || fail` is meant.)
# Bringing each implementation up on the current topology (NS_A, NS_B).
# impl_up NAME sets TARGET (B's address to measure against) and DAEMONS
# (the PIDs whose CPU and memory we account); on failure it returns 1 with
# IMPL_ERR saying why in one line. Sourced by ../run.

TARGET="" DAEMONS=() IMPL_ERR="" FLOOD_PROTO="" FLOOD_PUB=""

impl_up() {
	TARGET="" DAEMONS=() IMPL_ERR="" FLOOD_PROTO="" FLOOD_PUB=""
	case $1 in
	raw) TARGET=$UL_B ;;
	wireguard-go) wg_up ;;
	nebula) nebula_up ;;
	stunnel-chacha) stunnel_up chacha20poly1305 ;;
	stunnel-aes) stunnel_up aes256gcm ;;
	*) IMPL_ERR="unknown implementation $1"; return 1 ;;
	esac
}

# column_up TAG WHAT [CHECK WHY]: IMPL up on fresh namespaces tagged TAG,
# beside the columns already up (the side-by-side measurements: idle, the
# interleaved pings). CHECK IMPL, if given, must hold too, else WHY is the
# reason. On failure it logs why, for WHAT, and returns 1.
column_up() {
	local tag=$1 what=$2 check=${3:-} why=${4:-}
	log "round $ROUND/$ROUNDS: $IMPL up for $what"
	if ! topo_up "$tag"; then
		log "$IMPL: $what: could not build the namespaces"
	elif ! impl_up "$IMPL"; then
		log "$IMPL: $what: $IMPL_ERR"
	elif [[ -n $check ]] && ! "$check" "$IMPL"; then
		log "$IMPL: $what: $why"
	else
		return 0
	fi
	return 1
}

# fail MSG: set IMPL_ERR and return 1, for `... || fail "..."`.
fail() { IMPL_ERR=$1; return 1; }

# last_line FILE: the last non-empty line of a daemon's log, for errors.
last_line() { grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n1 | cut -c1-200; }

# wait_tunnel NAME LOG_A LOG_B: ping B's overlay address from A until it
# answers (the first packet also triggers the handshake); fail early with
# the daemon's own message if a daemon exits.
wait_tunnel() {
	local name=$1 log_a=$2 log_b=$3 deadline=$((SECONDS + 20)) pid
	while ((SECONDS < deadline)); do
		for pid in "${DAEMONS[@]}"; do
			if ! alive "$pid"; then
				fail "$name exited during start-up: $(last_line "$log_a") / $(last_line "$log_b")"
				return 1
			fi
		done
		ipa ping -c1 -W1 "$OL_B" >/dev/null 2>&1 && return 0
	done
	fail "$name: no ping through the tunnel within 20s: $(last_line "$log_a") / $(last_line "$log_b")"
}

# --- wireguard-go, configured with wg(8) as its users do --------------------

wg_up() {
	local d=$WORK/wg-$NS_A side
	# wg finds a device through /var/run/wireguard/NAME.sock, which the
	# namespaces share: the interface names must be unique per run.
	local if_a="wg${RUN_ID}a" if_b="wg${RUN_ID}b"
	mkdir -p "$d"
	for side in a b; do
		(umask 077 && wg genkey >"$d/$side.key") &&
			wg pubkey <"$d/$side.key" >"$d/$side.pub" || { fail "wg genkey failed"; return 1; }
	done
	start_in "$NS_A" "$d/a.log" env WG_PROCESS_FOREGROUND=1 "$WG_BIN" -f "$if_a"
	DAEMONS+=("$START_PID")
	start_in "$NS_B" "$d/b.log" env WG_PROCESS_FOREGROUND=1 "$WG_BIN" -f "$if_b"
	DAEMONS+=("$START_PID")
	wait_until 10 "wireguard-go $if_a" ipa wg show "$if_a" &&
		wait_until 10 "wireguard-go $if_b" ipb wg show "$if_b" ||
		{ fail "wireguard-go did not come up: $(last_line "$d/a.log")"; return 1; }
	ipa wg set "$if_a" private-key "$d/a.key" listen-port 51820 \
		peer "$(cat "$d/b.pub")" allowed-ips "$OL_B/32" endpoint "$UL_B:51820" &&
		ipb wg set "$if_b" private-key "$d/b.key" listen-port 51820 \
			peer "$(cat "$d/a.pub")" allowed-ips "$OL_A/32" endpoint "$UL_A:51820" &&
		ipa ip addr add "$OL_A/$OL_PREFIX" dev "$if_a" &&
		ipb ip addr add "$OL_B/$OL_PREFIX" dev "$if_b" &&
		ipa ip link set "$if_a" mtu "$TUN_MTU" up &&
		ipb ip link set "$if_b" mtu "$TUN_MTU" up || { fail "configuring wireguard-go with wg/ip failed"; return 1; }
	wait_tunnel wireguard-go "$d/a.log" "$d/b.log" || return 1
	TARGET=$OL_B
	FLOOD_PROTO=wireguard FLOOD_PUB=$(cat "$d/b.pub")
}

# --- Nebula, two static hosts, no lighthouse, allow-all firewall ----------

nebula_up() {
	[[ -n "$NEBULA_BIN" ]] || { fail "$NEBULA_SKIP"; return 1; }
	local d=$WORK/nebula-$NS_A side ol ul_peer ol_peer
	mkdir -p "$d"
	"$NEBULA_CERT" ca -name stunnel-bench -out-crt "$d/ca.crt" -out-key "$d/ca.key" >/dev/null 2>&1 ||
		{ fail "nebula-cert ca failed"; return 1; }
	for side in a b; do
		if [[ $side == a ]]; then ol=$OL_A ol_peer=$OL_B ul_peer=$UL_B; else ol=$OL_B ol_peer=$OL_A ul_peer=$UL_A; fi
		"$NEBULA_CERT" sign -name "host-$side" -networks "$ol/$OL_PREFIX" -ca-crt "$d/ca.crt" -ca-key "$d/ca.key" \
			-out-crt "$d/$side.crt" -out-key "$d/$side.key" >/dev/null 2>&1 || { fail "nebula-cert sign failed"; return 1; }
		cat >"$d/$side.yml" <<-YAML
			pki:
			  ca: $d/ca.crt
			  cert: $d/$side.crt
			  key: $d/$side.key
			static_host_map:
			  "$ol_peer": ["$ul_peer:4242"]
			lighthouse:
			  am_lighthouse: false
			  hosts: []
			listen:
			  host: 0.0.0.0
			  port: 4242
			punchy:
			  punch: false
			tun:
			  dev: neb0
			  mtu: $TUN_MTU
			logging:
			  level: warning
			firewall:
			  outbound:
			    - {port: any, proto: any, host: any}
			  inbound:
			    - {port: any, proto: any, host: any}
		YAML
	done
	start_in "$NS_A" "$d/a.log" "$NEBULA_BIN" -config "$d/a.yml"
	DAEMONS+=("$START_PID")
	start_in "$NS_B" "$d/b.log" "$NEBULA_BIN" -config "$d/b.yml"
	DAEMONS+=("$START_PID")
	wait_tunnel nebula "$d/a.log" "$d/b.log" || return 1
	TARGET=$OL_B
}

# --- stunnel, configured as docs/CONFIGURATION.md says -------------------------------

# stunnel_up CIPHER
stunnel_up() {
	local cipher=$1 d=$WORK/stunnel-$NS_A side
	mkdir -p "$d"
	[[ -n "$STUNNEL_BIN" ]] || { fail "$STUNNEL_SKIP"; return 1; }
	for side in a b; do
		(umask 077 && "$STUNNEL_BIN" genkey >"$d/$side.key" 2>"$d/genkey.err") ||
			{ fail "stunnel genkey failed: $(last_line "$d/genkey.err")"; return 1; }
		"$STUNNEL_BIN" pubkey <"$d/$side.key" >"$d/$side.pub" 2>"$d/pubkey.err" ||
			{ fail "stunnel pubkey failed: $(last_line "$d/pubkey.err")"; return 1; }
		mkdir -p "$d/run-$side"
	done
	stunnel_conf a "$OL_A" b "$UL_B" "$OL_B" "$cipher" "$d" >"$d/a.toml"
	stunnel_conf b "$OL_B" a "$UL_A" "$OL_A" "$cipher" "$d" >"$d/b.toml"
	"$STUNNEL_BIN" check -c "$d/a.toml" >"$d/check.err" 2>&1 ||
		{ fail "stunnel check rejected the bench config: $(last_line "$d/check.err")"; return 1; }
	# STUNNEL_RUN_DIR keeps each host's control socket out of the shared /run.
	start_in "$NS_A" "$d/a.log" env STUNNEL_RUN_DIR="$d/run-a" "$STUNNEL_BIN" up -c "$d/a.toml"
	DAEMONS+=("$START_PID")
	start_in "$NS_B" "$d/b.log" env STUNNEL_RUN_DIR="$d/run-b" "$STUNNEL_BIN" up -c "$d/b.toml"
	DAEMONS+=("$START_PID")
	wait_tunnel "stunnel ($cipher)" "$d/a.log" "$d/b.log" || return 1
	TARGET=$OL_B
	FLOOD_PROTO=stunnel FLOOD_PUB=$(cat "$d/b.pub")
}

# stunnel_conf SELF SELF_OL PEER PEER_UL PEER_OL CIPHER DIR: one host's TOML.
# Each daemon saves its sessions in DIR: with the default state_file both
# hosts (both named st0), and every run after them, would share
# /var/lib/stunnel/st0.state and each start would try the last one's sessions.
stunnel_conf() {
	local self=$1 self_ol=$2 peer=$3 peer_ul=$4 peer_ol=$5 cipher=$6 d=$7
	cat <<-TOML
		[interface]
		name = "st0"
		peer_id = "host-$self"
		private_key_file = "$d/$self.key"
		state_file = "$d/$self.state"
		listen_port = 51820
		address = ["$self_ol/$OL_PREFIX"]
		mtu = $TUN_MTU

		[session]
		cipher = "$cipher"

		[[peer]]
		id = "host-$peer"
		public_key = "$(cat "$d/$peer.pub")"
		endpoint = "$peer_ul:51820"
		allowed_ips = ["$peer_ol/32"]
	TOML
}
