#!/bin/sh
# install.sh install|uninstall: what `make install` and `make uninstall` do.
#
# Puts the binary at $DESTDIR$BINDIR/stunnel, the unit at
# $DESTDIR$UNITDIR/$UNIT_NAME@.service and makes $DESTDIR$CONFDIR (0700;
# an existing directory is left as it is). Uninstall removes the binary and
# the unit, and $CONFDIR only if it is empty: keys and configs are never
# deleted; it removes nothing while an instance is enabled or running.
#
# Debian's stunnel4 (the TLS wrapper) ships /usr/bin/stunnel and
# /lib/systemd/system/stunnel@.service. A unit of ours in /etc/systemd/system
# would silently override that package's unit, so install refuses when it
# finds the package, unless UNIT_NAME names another unit (README.md, "Next to
# Debian's stunnel4"). SYSROOT and DPKG let the test run the checks against a
# fake system.
set -eu

: "${DESTDIR:=}" "${PREFIX:=/usr/local}" "${UNITDIR:=/etc/systemd/system}" "${CONFDIR:=/etc/stunnel}"
: "${BINDIR:=$PREFIX/bin}" "${UNIT_NAME:=stunnel}" "${BIN:=bin/stunnel}" "${SYSROOT:=}" "${DPKG:=dpkg}"
UNIT_SRC=contrib/stunnel@.service
unit="$DESTDIR$UNITDIR/$UNIT_NAME@.service"
bin="$DESTDIR$BINDIR/stunnel"
# What marks a file as ours: the unit runs `stunnel up`; the binary's
# `version` names the Go toolchain (another stunnel takes "version" for a
# config file name and fails).
ours_unit() { grep -q 'stunnel up -c' "$1" 2>/dev/null; }
ours_bin() { "$1" version 2>/dev/null | grep -q '^go: go'; }

die() { echo "make $action: $*" >&2; exit 1; }

# other_stunnel prints what of another stunnel package it finds.
other_stunnel() {
	if command -v "$DPKG" >/dev/null 2>&1 && pkg=$("$DPKG" -S /usr/bin/stunnel 2>/dev/null); then
		echo "${pkg%%:*} (dpkg: /usr/bin/stunnel)"
		return
	fi
	for f in /lib/systemd/system/stunnel@.service /usr/lib/systemd/system/stunnel@.service; do
		if [ -e "$SYSROOT$f" ] && ! ours_unit "$SYSROOT$f"; then
			echo "another package's unit $f"
			return
		fi
	done
}

install_() {
	[ -x "$BIN" ] || die "$BIN is not built; run make build first"
	if [ "$UNIT_NAME" = stunnel ] && other=$(other_stunnel) && [ -n "$other" ]; then
		die "found Debian's stunnel4 (the TLS wrapper): $other. Our unit $UNITDIR/stunnel@.service would silently override its stunnel@.service. Install ours under another unit name: sudo make install UNIT_NAME=stunnel-tunnel (then: systemctl enable --now stunnel-tunnel@st0); see README.md, \"Next to Debian's stunnel4\". Nothing was installed."
	fi
	if [ -e "$unit" ] && ! ours_unit "$unit"; then
		die "$unit exists and is not stunnel's tunnel unit; not overwriting it. Move it away, or pick another UNIT_NAME=. Nothing was installed."
	fi
	if [ -e "$bin" ] && ! ours_bin "$bin"; then
		die "$bin exists and is another program (not this tunnel's stunnel); not overwriting it. Move it away, or install with PREFIX=/another/prefix. Nothing was installed."
	fi
	install -d -m 0755 "$DESTDIR$BINDIR" "$DESTDIR$UNITDIR"
	install -m 0755 "$BIN" "$bin"
	sed "s#/usr/local/bin/stunnel#$BINDIR/stunnel#g; s#/etc/stunnel/#$CONFDIR/#g" "$UNIT_SRC" >"$unit.tmp"
	chmod 0644 "$unit.tmp"
	mv "$unit.tmp" "$unit"
	if [ ! -d "$DESTDIR$CONFDIR" ]; then
		install -d -m 0700 "$DESTDIR$CONFDIR"
	fi
	echo "installed $bin, $unit and $DESTDIR$CONFDIR"
	reload_systemd
	echo "next: keys and $CONFDIR/NAME.toml (README.md, Quick start), then: systemctl enable --now $UNIT_NAME@NAME"
}

# instances prints the instances of our unit that are enabled (a symlink in
# a .wants/ or .requires/ directory) or, on a host that runs systemd,
# active. Removing the unit under them would leave a tunnel that runs on
# from a deleted binary and a unit file, enabled through a dangling symlink
# (`systemctl disable` then says the unit does not exist). We do not stop
# them ourselves: the tunnel may carry the operator's own session.
instances() {
	for l in "$DESTDIR$UNITDIR"/*.wants/"$UNIT_NAME"@*.service "$DESTDIR$UNITDIR"/*.requires/"$UNIT_NAME"@*.service; do
		[ -L "$l" ] && basename "$l" .service
	done
	if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl list-units --plain --no-legend --state=active,activating,reloading "$UNIT_NAME@*.service" 2>/dev/null |
			while read -r u _; do echo "${u%.service}"; done
	fi
}

uninstall_() {
	if [ -e "$unit" ]; then
		ours_unit "$unit" || die "$unit is not stunnel's tunnel unit; leaving it (and everything else) alone"
		inst=$(instances | sort -u | tr '\n' ' ')
		if [ -n "$inst" ]; then
			die "still enabled or running: ${inst% }. First run: systemctl disable --now ${inst% } (this stops those tunnels: not from a session that runs through one). Nothing was removed."
		fi
		rm -f "$unit"
		echo "removed $unit"
	fi
	if [ -e "$bin" ]; then
		if ours_bin "$bin"; then
			rm -f "$bin"
			echo "removed $bin"
		else
			echo "kept $bin: it is another program, not this tunnel's stunnel"
		fi
	fi
	if [ -d "$DESTDIR$CONFDIR" ]; then
		if rmdir "$DESTDIR$CONFDIR" 2>/dev/null; then
			echo "removed the empty $DESTDIR$CONFDIR"
		else
			echo "kept $DESTDIR$CONFDIR: it holds keys and configs; remove it yourself if you mean to"
		fi
	fi
	reload_systemd
}

# Only for a real install on a host that runs systemd.
reload_systemd() {
	if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl daemon-reload
	fi
}

action=${1:-}
case "$action" in
install) install_ ;;
uninstall) uninstall_ ;;
*) echo "usage: contrib/install.sh install|uninstall" >&2; exit 2 ;;
esac
