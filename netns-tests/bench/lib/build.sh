# shellcheck shell=bash disable=SC2034,SC2015
# (SC2034: variables are shared between the sourced files; SC2015: `a && b || fail` is meant.)
# Getting the tools and the three implementations. Sourced by ../run.

# install_tools: apt-get only what is missing (Debian package per command).
install_tools() {
	local -A pkg_of=([iperf3]=iperf3 [ping]=iputils-ping [wg]=wireguard-tools [ip]=iproute2 [jq]=jq)
	local missing=() cmd
	for cmd in "${!pkg_of[@]}"; do
		command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}")
	done
	((${#missing[@]} == 0)) && return 0
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed; install them by hand and rerun"
}

# build_stunnel: bin/stunnel from this checkout. A failed build does not
# stop the run: the stunnel columns show n/a with the compiler's message.
build_stunnel() {
	log "building stunnel"
	STUNNEL_BIN=$REPO/bin/stunnel STUNNEL_SKIP=""
	if ! (cd "$REPO" && go build -o "$STUNNEL_BIN" ./cmd/stunnel) >"$WORK/stunnel-build.log" 2>&1; then
		STUNNEL_SKIP="go build ./cmd/stunnel failed: $(grep -m1 -v '^#' "$WORK/stunnel-build.log" | cut -c1-160)"
		log "$STUNNEL_SKIP"
		STUNNEL_BIN=""
	fi
}

# build_bench_tool NAME VAR WITHOUT: builds ./netns-tests/bench/NAME into
# $WORK/bin/NAME and sets VAR to its path; if it does not build, logs why and
# WITHOUT (what the run does without it) and sets VAR empty.
build_bench_tool() {
	local name=$1 var=$2 without=$3 bin=$WORK/bin/$1
	if (cd "$REPO" && go build -o "$bin" "./netns-tests/bench/$name") >"$WORK/$name-build.log" 2>&1; then
		printf -v "$var" '%s' "$bin"
	else
		log "$name did not build: $(last_line "$WORK/$name-build.log"); $without"
		printf -v "$var" '%s' ""
	fi
}

# build_flood: the valid-mac1 flood generator for the flood rows.
build_flood() { build_bench_tool flood FLOOD_BIN "flood rows n/a"; }

# build_wireguard_go: golang.zx2c4.com/wireguard at exactly the version our
# go.mod pins. We build in a copy of go.mod/go.sum so -mod=mod may add sums
# without touching the checkout other people are editing.
build_wireguard_go() {
	local mod=$WORK/wgmod
	mkdir -p "$mod"
	cp "$REPO/go.mod" "$REPO/go.sum" "$mod/"
	WG_VERSION=$(cd "$mod" && go list -m -f '{{.Version}}' golang.zx2c4.com/wireguard) ||
		die "golang.zx2c4.com/wireguard is not in $REPO/go.mod"
	log "building wireguard-go $WG_VERSION"
	(cd "$mod" && GOFLAGS=-mod=mod go build -o "$WORK/bin/wireguard-go" golang.zx2c4.com/wireguard) ||
		die "go build golang.zx2c4.com/wireguard@$WG_VERSION failed"
	WG_BIN=$WORK/bin/wireguard-go
}

# build_nebula: Nebula is a reference column only; if it does not build we
# say why and go on without it.
NEBULA_VERSION=v1.11.1
build_nebula() {
	NEBULA_BIN="" NEBULA_CERT=""
	[[ "${NEBULA:-1}" == 0 ]] && { NEBULA_SKIP="skipped (NEBULA=0)"; return 0; }
	local gobin=$WORK/nebula-bin
	log "building nebula $NEBULA_VERSION (about a minute the first time)"
	if (cd "$WORK" && GOBIN=$gobin GOFLAGS='' go install \
		"github.com/slackhq/nebula/cmd/nebula@$NEBULA_VERSION" \
		"github.com/slackhq/nebula/cmd/nebula-cert@$NEBULA_VERSION") >"$WORK/nebula-build.log" 2>&1; then
		NEBULA_BIN=$gobin/nebula NEBULA_CERT=$gobin/nebula-cert
	else
		NEBULA_SKIP="nebula $NEBULA_VERSION did not build: $(tail -n1 "$WORK/nebula-build.log")"
		log "$NEBULA_SKIP; its column is left out"
	fi
}
