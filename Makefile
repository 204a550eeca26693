# The project's two commands are `sudo make demo` and `sudo make test`.
# sudo's secure_path usually lacks /usr/local/go/bin, so find go ourselves.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)

# Netns tests skip when not root, and fail instead of skipping when this is 1.
# sudo drops the caller's environment, so when we run as root we require them
# anyway: `sudo make test` means "run everything".
ifeq ($(shell id -u),0)
STUNNEL_REQUIRE_NETNS ?= 1
endif
export STUNNEL_REQUIRE_NETNS

# The netns suite is budgeted at 15 minutes on 2 cores; leave headroom.
TEST_TIMEOUT ?= 25m

BIN := bin/stunnel

# What `stunnel version` prints; safe.directory lets `sudo make` read a
# user's clone (git refuses a repository owned by someone else).
VERSION ?= $(shell git -c safe.directory='*' describe --always --dirty 2>/dev/null)

.PHONY: all build demo test bench clean install uninstall go-version

# make install: the binary, the systemd unit and /etc/stunnel (contrib/install.sh).
PREFIX ?= /usr/local
DESTDIR ?=
UNIT_NAME ?= stunnel
export PREFIX DESTDIR UNIT_NAME

all: build

# go.mod's go line is the oldest Go that builds stunnel. Debian's golang
# package is older (1.19 in bookworm), and an old go's own words about
# go.mod do not say what to do; this says it in one line.
GO_NEED := $(shell sed -n 's/^go //p' go.mod)
go-version:
	@have=$$($(GO) env GOVERSION 2>/dev/null | sed 's/^go//'); \
	if [ -z "$$have" ] || [ "$$(printf '%s\n%s\n' "$(GO_NEED)" "$$have" | sort -V | head -n 1)" != "$(GO_NEED)" ]; then \
		echo "make: stunnel needs Go $(GO_NEED) or newer, and $(GO) is $${have:-not a working go}: get Go from https://go.dev/dl (Debian's golang package is older), then put its bin first in PATH or run make GO=/usr/local/go/bin/go" >&2; \
		exit 1; \
	fi

build: go-version
	$(GO) build -ldflags "-X stunnel/internal/buildinfo.Version=$(VERSION)" -o $(BIN) ./cmd/stunnel
	@# Under sudo, give bin/ back to the user, so `make clean` works without root.
	@if [ "$$(id -u)" = 0 ] && [ -n "$${SUDO_UID:-}" ]; then chown -R "$$SUDO_UID:$$SUDO_GID" $(dir $(BIN)); fi

install: build
	BIN=$(BIN) sh contrib/install.sh install

uninstall:
	sh contrib/install.sh uninstall

demo: build
	./$(BIN) demo

# -count=1: the netns tests build bin/stunnel themselves, which the test cache cannot see.
test: go-version
	@echo "go test (STUNNEL_REQUIRE_NETNS=$(STUNNEL_REQUIRE_NETNS))"
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	GO=$(GO) ./scripts/fuzz-short

# The benchmark driver finds go through PATH.
bench: build
	PATH="$(dir $(GO)):$$PATH" ./netns-tests/bench/run

clean:
	rm -rf bin
