package conf

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"stunnel/handshake"
	"stunnel/rekey"
)

func (p *parser) iface(t table, in *Interface) {
	if name, line, ok := p.str(t, "name"); ok {
		if err := checkIfName(name); err != nil {
			p.addf(line, "name %q %v", name, err)
		}
		in.Name = name
	} else if _, present := t.m["name"]; !present {
		p.addf(t.line, "[interface] needs name, the TUN device name, e.g. name = \"st0\"")
	}

	if id, line, ok := p.str(t, "peer_id"); ok {
		if err := checkPeerID(id); err != nil {
			p.addf(line, "peer_id %q %v", id, err)
		}
		in.PeerID = id
	} else if _, present := t.m["peer_id"]; !present {
		p.addf(t.line, "[interface] needs peer_id, this host's ID as its peers know it")
	}

	p.privateKey(t, in)

	in.ListenPort = DefaultListenPort
	if n, line, ok := p.int(t, "listen_port"); ok {
		if n < 0 || n > 65535 {
			p.addf(line, "listen_port %d is out of range 0..65535 (0 = any free port)", n)
		}
		in.ListenPort = int(n)
	}

	if list, line, ok := p.strList(t, "address", "10.77.0.1/24"); ok {
		in.Addresses = p.addresses(list, line)
	}
	if _, present := t.m["address"]; !present {
		p.addf(t.line, "[interface] needs address, the overlay addresses of the TUN device, e.g. address = [\"10.77.0.1/24\"]")
	}

	in.MTU = DefaultMTU
	_, written := t.m["mtu"]
	in.MTUAuto = !written
	if n, line, ok := p.int(t, "mtu"); ok {
		if n < MinMTU || n > MaxMTU {
			p.addf(line, "mtu %d is out of range %d..%d", n, MinMTU, MaxMTU)
		}
		in.MTU = int(n)
	}

	in.LogLevel = slog.LevelInfo
	if s, line, ok := p.str(t, "log_level"); ok {
		switch s {
		case "debug":
			in.LogLevel = slog.LevelDebug
		case "info":
			in.LogLevel = slog.LevelInfo
		case "warn":
			in.LogLevel = slog.LevelWarn
		case "error":
			in.LogLevel = slog.LevelError
		default:
			p.addf(line, "log_level %q is not one of debug, info, warn, error", s)
		}
	}
	p.stateFile(t, in)
}

// addresses parses interface addresses: host address with prefix length.
func (p *parser) addresses(list []string, line int) []netip.Prefix {
	var out []netip.Prefix
	if len(list) == 0 {
		p.addf(line, "address is empty; give at least one, e.g. [\"10.77.0.1/24\"]")
	}
	for _, s := range list {
		pfx, err := parsePrefix(s)
		if err != nil {
			p.addf(line, "address %q %v", s, err)
			continue
		}
		if err := checkHostAddress(pfx); err != nil {
			p.addf(line, "address %q %v", s, err)
			continue
		}
		for _, o := range out {
			if o.Addr() == pfx.Addr() {
				p.addf(line, "address %q is listed twice", s)
			}
		}
		out = append(out, pfx)
	}
	return out
}

func (p *parser) privateKey(t table, in *Interface) {
	_, hasInline := t.m["private_key"]
	_, hasFile := t.m["private_key_file"]
	switch {
	case hasInline && hasFile:
		p.addf(p.keyLine(t, "private_key_file"), "give private_key or private_key_file, not both")
		return
	case !hasInline && !hasFile:
		p.addf(t.line, "[interface] needs private_key_file (or private_key); make one with: stunnel genkey > FILE && chmod 600 FILE")
		return
	}
	var k handshake.PrivateKey
	if hasInline {
		s, line, ok := p.str(t, "private_key")
		if !ok {
			return
		}
		if isPKCS11(s) {
			p.pkcs11Key(t, in, s, line) // a key in a token: conf/pkcs11.go
			return
		}
		p.strayTokenKeys(t)
		p.checkInlineKey(line, "private_key")
		var err error
		if k, err = handshake.ParsePrivateKey(s); err != nil {
			p.addf(line, "private_key: %v; make one with: stunnel genkey", err)
			return
		}
		if k.IsZero() {
			p.addf(line, "private_key is all zeros; make one with: stunnel genkey")
			return
		}
	} else {
		p.strayTokenKeys(t)
		name, line, ok := p.str(t, "private_key_file")
		if !ok {
			return
		}
		path := p.path(name)
		b, err := readKeyFile(path)
		if err != nil {
			p.addf(line, "private_key_file: %v", err)
			return
		}
		p.keyFiles = append(p.keyFiles, namedFile{"private_key_file", path})
		k, err = handshake.ParsePrivateKeyBytes(b)
		clear(b)
		if err != nil || k.IsZero() {
			p.addf(line, "private_key_file %s does not hold a private key (base64 of 32 bytes, as stunnel genkey prints)", name)
			return
		}
	}
	in.PrivateKey = k
	in.PublicKey = k.PublicKey()
}

func (p *parser) session(t table, s *Session) {
	before := len(p.probs)
	s.RekeyAfter = DefaultRekeyAfter
	s.RejectAfter = DefaultRejectAfter
	s.RekeyAfterMessages = DefaultRekeyAfterMessages
	s.ReplayWindow = DefaultReplayWindow
	s.Cipher = handshake.CipherAuto

	if d, line, ok := p.duration(t, "rekey_after"); ok {
		if d == 0 {
			p.addf(line, "rekey_after must be greater than zero")
		}
		s.RekeyAfter = d
	}
	if d, line, ok := p.duration(t, "reject_after"); ok {
		s.RejectAfter = d
		if s.RejectAfter <= s.RekeyAfter {
			p.addf(line, "reject_after %v must be longer than rekey_after %v, so a new key is agreed before the old one expires", s.RejectAfter, s.RekeyAfter)
		}
	} else if s.RejectAfter <= s.RekeyAfter {
		p.addf(p.keyLine(t, "rekey_after"), "rekey_after %v must be shorter than reject_after %v (the default); lower it or raise reject_after", s.RekeyAfter, s.RejectAfter)
	}
	if n, line, ok := p.int(t, "rekey_after_messages"); ok {
		if n <= 0 {
			p.addf(line, "rekey_after_messages %d must be greater than zero", n)
		}
		s.RekeyAfterMessages = uint64(n)
	}
	if n, line, ok := p.int(t, "replay_window"); ok {
		if n < MinReplayWindow || n > MaxReplayWindow || n&(n-1) != 0 {
			p.addf(line, "replay_window %d must be a power of two from %d to %d", n, MinReplayWindow, MaxReplayWindow)
		}
		s.ReplayWindow = uint64(n)
	}
	if d, line, ok := p.duration(t, "keepalive"); ok {
		if d > 0 && d < MinKeepalive {
			p.addf(line, "keepalive %v is below %v and would flood the link; use 0s for the default", d, MinKeepalive)
		}
		s.Keepalive = d
	}
	if c, line, ok := p.str(t, "cipher"); ok {
		pref, err := handshake.ParseCipherPreference(c)
		if err != nil || c == "" {
			p.addf(line, "cipher %q is not one of auto, chacha20poly1305, aes256gcm", c)
		}
		s.Cipher = pref
	}
	for _, k := range []struct {
		key string
		d   time.Duration
	}{{"rekey_after", s.RekeyAfter}, {"reject_after", s.RejectAfter}, {"keepalive", s.Keepalive}} {
		if k.d > rekey.MaxDuration {
			p.addf(p.keyLine(t, k.key), "%s %v is longer than %v, the longest the key timers can count", k.key, k.d, rekey.MaxDuration)
		}
	}
	// Each key can be right alone and the timers they make still be
	// refused by the tunnel (a reject_after of 200ms leaves no time for a
	// handshake): validate what the tunnel will run, so that check refuses
	// what up and a reload refuse. Only once the keys themselves are good,
	// so a bad key is reported once.
	if len(p.probs) == before {
		if err := s.Policy().Validate(); err != nil {
			p.addf(p.keyLine(t, "reject_after"), "[session]: %v", err)
		}
	}
}

// Policy is the rekey policy the tunnel runs for this [session]: the
// configured values over the defaults, with the handshake timers scaled
// down for a short key life.
func (s Session) Policy() rekey.Policy {
	p := rekey.DefaultPolicy()
	if s.RekeyAfter > 0 {
		p.RekeyAfterTime = s.RekeyAfter
	}
	if s.RejectAfter > 0 {
		p.RejectAfterTime = s.RejectAfter
	}
	if s.RekeyAfterMessages > 0 {
		p.RekeyAfterMessages = s.RekeyAfterMessages
	}
	if s.ReplayWindow > 0 {
		p.ReplayWindow = s.ReplayWindow
	}
	if s.Keepalive > 0 { // [session] keepalive: the passive keepalive (docs/CONFIGURATION.md)
		p.KeepaliveTimeout = s.Keepalive
	}
	// A short-lived key must be renewed well before it dies, or traffic
	// stalls at every rotation; scale the handshake timers down with it.
	// Only down: a long keepalive alone must not stretch the rekey timeout
	// past the time a handshake is given (RekeyAttemptTime), or a config
	// that check accepts would fail at start.
	if limit := p.RejectAfterTime - p.RekeyAfterTime; limit < p.RekeyTimeout+p.KeepaliveTimeout {
		third := max(limit/3, 100*time.Millisecond)
		p.RekeyTimeout = min(p.RekeyTimeout, third)
		p.KeepaliveTimeout = min(p.KeepaliveTimeout, third)
		p.RekeyJitter = min(p.RekeyJitter, p.RekeyTimeout/10)
	}
	return p
}

func (p *parser) peer(t table) Peer {
	pr := Peer{Line: t.line}
	if id, line, ok := p.str(t, "id"); ok {
		if err := checkPeerID(id); err != nil {
			p.addf(line, "id %q of %s %v", id, t.name, err)
		}
		pr.ID = id
	} else if _, present := t.m["id"]; !present {
		p.addf(t.line, "%s needs id, the peer's ID as it presents itself in the handshake", t.name)
	}

	if s, line, ok := p.str(t, "public_key"); ok {
		k, err := handshake.ParsePublicKey(s)
		if err != nil {
			p.addf(line, "public_key of %s: %v; get it on the peer with: sudo stunnel pubkey PEER.key", p.peerName(t, pr), err)
		}
		pr.PublicKey = k
	} else if _, present := t.m["public_key"]; !present {
		p.addf(t.line, "%s needs public_key; get it on the peer with: sudo stunnel pubkey PEER.key", p.peerName(t, pr))
	}

	p.presharedKey(t, &pr)

	if list, line, ok := p.strList(t, "allowed_ips", "10.77.0.2/32"); ok {
		if len(list) == 0 {
			p.addf(line, "allowed_ips of %s is empty; no traffic could reach or come from it", p.peerName(t, pr))
		}
		for _, s := range list {
			pfx, err := parseNetwork(s)
			if err != nil {
				p.addf(line, "allowed_ips %q of %s %v", s, p.peerName(t, pr), err)
				continue
			}
			if contains(prefixStrings(pr.AllowedIPs), pfx.String()) {
				p.addf(line, "allowed_ips %q of %s is listed twice", s, p.peerName(t, pr))
				continue
			}
			pr.AllowedIPs = append(pr.AllowedIPs, pfx)
		}
	} else if _, present := t.m["allowed_ips"]; !present {
		p.addf(t.line, "%s needs allowed_ips, the addresses it may send from and that are routed to it", p.peerName(t, pr))
	}

	if d, line, ok := p.duration(t, "persistent_keepalive"); ok {
		if d > 0 && d < MinKeepalive {
			p.addf(line, "persistent_keepalive %v is below %v and would flood the link; 25s suits most NATs", d, MinKeepalive)
		}
		pr.PersistentKeepalive = d
	}
	p.endpoints(t, &pr) // after persistent_keepalive: failover_after is checked against it
	return pr
}

// peerName names a peer in messages: by ID once known, else by position.
func (p *parser) peerName(t table, pr Peer) string {
	if pr.ID != "" {
		return fmt.Sprintf("peer %q", pr.ID)
	}
	return t.name
}

func (p *parser) presharedKey(t table, pr *Peer) {
	_, hasInline := t.m["preshared_key"]
	_, hasFile := t.m["preshared_key_file"]
	if hasInline && hasFile {
		p.addf(p.keyLine(t, "preshared_key_file"), "give preshared_key or preshared_key_file, not both")
		return
	}
	var s, name string
	var line int
	var ok bool
	var k handshake.PresharedKey
	var err error
	if hasInline {
		if s, line, ok = p.str(t, "preshared_key"); !ok {
			return
		}
		p.checkInlineKey(line, "preshared_key")
		k, err = handshake.ParsePresharedKey(s)
	} else if hasFile {
		if name, line, ok = p.str(t, "preshared_key_file"); !ok {
			return
		}
		path := p.path(name)
		b, rerr := readKeyFile(path)
		if rerr != nil {
			p.addf(line, "preshared_key_file: %v", rerr)
			return
		}
		p.keyFiles = append(p.keyFiles, namedFile{"preshared_key_file of " + p.peerName(t, *pr), path})
		k, err = handshake.ParsePresharedKeyBytes(b) // no string of the key (readKeyFile)
		clear(b)
	} else {
		return
	}
	if err != nil || k.IsZero() {
		p.addf(line, "preshared key of %s must be base64 of 32 non-zero bytes (make one with: stunnel genkey)", p.peerName(t, *pr))
		return
	}
	pr.PresharedKey = k
}

func prefixStrings(list []netip.Prefix) []string {
	out := make([]string, len(list))
	for i, p := range list {
		out[i] = p.String()
	}
	return out
}
