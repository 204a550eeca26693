// Package conf reads the TOML configuration (docs/CONFIGURATION.md) into typed values
// with defaults, and rejects every mistake it can find, each reported as
// FILE:LINE: message, all of them in one run.
package conf

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
	"stunnel/replay"
)

// Defaults and limits. Documented in docs/CONFIGURATION.md; keep both in step.
// The session's come from the packages that enforce them (one source).
const (
	DefaultListenPort         = 51820
	DefaultMTU                = 1420
	DefaultRekeyAfter         = rekey.DefaultRekeyAfterTime
	DefaultRejectAfter        = rekey.DefaultRejectAfterTime
	DefaultRekeyAfterMessages = rekey.DefaultRekeyAfterMessages
	DefaultReplayWindow       = replay.DefaultWindow

	MinMTU          = 576   // the IPv4 minimum reassembly size
	MinMTUIPv6      = 1280  // RFC 8200: every IPv6 link carries 1280 bytes
	MaxMTU          = 65535 // the largest IP packet
	MinReplayWindow = replay.MinWindow
	// MaxReplayWindow bounds the per-keypair bitmap (window/8 bytes) so a
	// config cannot make every session allocate megabytes.
	MaxReplayWindow = replay.MaxWindow
	// MaxPeerIDLen is the longest peer ID the handshake carries.
	MaxPeerIDLen = handshake.MaxPeerIDLen
	// MinKeepalive stops a keepalive so short that it floods the link.
	MinKeepalive = time.Second
	// maxKeyFileSize bounds what we read from a key file: a key is 44 bytes of base64.
	maxKeyFileSize = 4096
)

// Config is one parsed, validated config file.
type Config struct {
	Path      string
	Interface Interface
	Session   Session
	Peers     []Peer
	Control   Control    // [control]: conf/control.go
	Metrics   Metrics    // [metrics]: conf/metrics.go
	Tickets   Tickets    // [tickets]: conf/tickets.go
	Directory *Directory // nil without [directory]
}

// Interface is the [interface] table: this host.
type Interface struct {
	Name       string
	PeerID     string
	PrivateKey handshake.PrivateKey
	PublicKey  handshake.PublicKey // derived from PrivateKey
	ListenPort int                 // 0 = any free port
	Addresses  []netip.Prefix      // as written: host address and its prefix length
	MTU        int
	LogLevel   slog.Level
	// MTUAuto: no mtu key in the file. MTU holds DefaultMTU; `up` derives
	// the MTU from the route to the endpoints instead (cmd/stunnel/mtu.go).
	MTUAuto   bool
	StateFile string // sealed sessions across a restart; "" = off (conf/state.go)

	// PKCS11 is set when private_key names a key in a PKCS#11 token;
	// PrivateKey and PublicKey are then zero (conf/pkcs11.go).
	PKCS11 *PKCS11Key
}

// Session is the [session] table: key lifetimes and data-plane choices.
type Session struct {
	RekeyAfter, RejectAfter time.Duration
	RekeyAfterMessages      uint64
	ReplayWindow            uint64
	Keepalive               time.Duration // 0 = default passive keepalive
	Cipher                  handshake.CipherPreference
}

// Peer is one [[peer]] table, or a record of the etcd directory that
// MergePeers accepted (FromDirectory).
type Peer struct {
	ID                  string
	PublicKey           handshake.PublicKey
	PresharedKey        handshake.PresharedKey // zero = none
	Endpoint            string                 // "" = roaming peer; else host:port as written
	Endpoints           []string               // every endpoint in order (a gateway group); Endpoints[0] == Endpoint
	FailoverAfter       time.Duration          // 0 = off: silence after sending that moves to the next endpoint
	AllowedIPs          []netip.Prefix         // masked: no host bits
	PersistentKeepalive time.Duration          // 0 = off
	Line                int                    // line of its [[peer]] header, for later messages
	// FromDirectory marks a peer that came from the etcd directory: its
	// /0 never makes a full tunnel, which only the host's own file may ask
	// for (whoever can write to etcd must not take all of a host's traffic).
	FromDirectory bool
}

// Equal reports whether p and q are the same peer configuration, field by
// field: the directory's relist and its apply to the device both ask
// whether a list changed anything. The keys compare in constant time
// (reflect.DeepEqual, which this was, stops at the first byte that
// differs); TestPeerEqualEveryField fails when a field is added to Peer
// and not here.
func (p Peer) Equal(q Peer) bool {
	keys := p.PublicKey.Equal(q.PublicKey) && subtle.ConstantTimeCompare(p.PresharedKey[:], q.PresharedKey[:]) == 1
	return keys && p.ID == q.ID && p.Endpoint == q.Endpoint && slices.Equal(p.Endpoints, q.Endpoints) &&
		p.FailoverAfter == q.FailoverAfter && slices.Equal(p.AllowedIPs, q.AllowedIPs) &&
		p.PersistentKeepalive == q.PersistentKeepalive && p.Line == q.Line && p.FromDirectory == q.FromDirectory
}

// Load reads path (and the key files it names, relative to its directory)
// and returns the validated config, or *Errors listing every problem.
func Load(path string) (*Config, error) {
	data, err := ReadConfigFile(path)
	if err != nil {
		return nil, &Errors{{File: path, Line: 1, Msg: fmt.Sprintf("cannot read config: %v", unwrapPathError(err))}}
	}
	return parse(path, data, true)
}

// maxConfigSize bounds a config file: 10,000 peers take under 2 MB. A var
// for the tests.
var maxConfigSize int64 = 64 << 20

// ReadConfigFile reads a config file (Load, and `show -c`, which needs only
// its name). A device, a socket or a file too large to be a config is
// refused: `-c /dev/zero` read until memory ran out and the runtime died
// with a stack trace. A pipe or FIFO is read, bounded the same way.
// Errors from opening it are *os.PathError, as os.ReadFile's.
func ReadConfigFile(path string) ([]byte, error) {
	fi, err := os.Stat(path) // before opening: no device is ever opened
	if err != nil {
		return nil, err
	}
	switch m := fi.Mode(); {
	case m.IsDir():
		return nil, &os.PathError{Op: "read", Path: path, Err: syscall.EISDIR}
	case m&(os.ModeDevice|os.ModeCharDevice|os.ModeSocket) != 0:
		return nil, fmt.Errorf("it is a %s, not a config file", fileKind(m))
	case m.IsRegular() && fi.Size() > maxConfigSize:
		return nil, fmt.Errorf("it is %d bytes, more than the %d a config may hold; is it the config file?", fi.Size(), maxConfigSize)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxConfigSize {
		return nil, fmt.Errorf("it holds more than the %d bytes a config may hold; is it the config file?", maxConfigSize)
	}
	return data, nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeCharDevice != 0:
		return "character device"
	}
	return "device"
}

// unwrapPathError drops the path from an *os.PathError, which our message
// already names. A permission error also says what to do: stunnel's files
// are root's (0600 keys in a 0700 /etc/stunnel), so for anyone else the
// cure is sudo; root itself is refused under the systemd unit, which runs
// without CAP_DAC_OVERRIDE and with ProtectHome=, when a file lies in a
// home directory or belongs to another user.
func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		err = pe.Err
	}
	if !errors.Is(err, fs.ErrPermission) {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w (run it as root, e.g. with sudo)", err)
	}
	return fmt.Errorf("%w even as root (the systemd unit runs without CAP_DAC_OVERRIDE and with ProtectHome=: keep the file under /etc/stunnel, owned by root)", err)
}
