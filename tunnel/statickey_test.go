package tunnel

import (
	"net/netip"
	"slices"
	"strings"
	"stunnel/rekey"
	"stunnel/session"
	"testing"

	"stunnel/conf"
	"stunnel/handshake"
	"stunnel/pkcs11key"
)

// uriKey stands for a token key: a StaticKey that a URI names.
type uriKey struct {
	handshake.StaticKey
	uri, pinFile string
}

func (k uriKey) URI() string     { return k.uri }
func (k uriKey) PinFile() string { return k.pinFile }

func TestStaticKeyFromOptions(t *testing.T) {
	priv, _ := handshake.GeneratePrivateKey(nil)
	u, err := pkcs11key.ParseURI("pkcs11:token=gw;object=a?module-path=/m.so")
	if err != nil {
		t.Fatal(err)
	}
	tokenCfg := &conf.Config{Interface: conf.Interface{PKCS11: &conf.PKCS11Key{URI: u}}}
	if err := checkStaticKey(tokenCfg, Options{}); err == nil || !strings.Contains(err.Error(), "PKCS#11") {
		t.Fatalf("a token config without an opened key: %v", err)
	}
	key := uriKey{handshake.MemoryKey(priv), u.String(), ""}
	if err := checkStaticKey(tokenCfg, Options{StaticKey: key}); err != nil {
		t.Fatal(err)
	}
	running := &Device{host: session.NewHost(&handshake.Config{Static: key}, rekey.DefaultPolicy())}
	if running.host.PublicKey() != priv.PublicKey() {
		t.Fatal("the device's public key is not the token key's")
	}
	other, _ := pkcs11key.ParseURI("pkcs11:token=gw;object=b?module-path=/m.so")
	for _, c := range []struct {
		name    string
		in      conf.Interface
		changed bool
	}{
		{"same URI", conf.Interface{PKCS11: &conf.PKCS11Key{URI: u}}, false},
		{"other object", conf.Interface{PKCS11: &conf.PKCS11Key{URI: other}}, true},
		{"to a key file", conf.Interface{PrivateKey: priv}, true},
	} {
		if got := running.staticKeyChanged(c.in); got != c.changed {
			t.Errorf("token key, reload with %s: changed = %v, want %v", c.name, got, c.changed)
		}
	}
	inMemory := &Device{host: session.NewHost(&handshake.Config{PrivateKey: priv}, rekey.DefaultPolicy())}
	if inMemory.staticKeyChanged(conf.Interface{PrivateKey: priv}) {
		t.Error("in-memory key, same key: reported as changed")
	}
	if !inMemory.staticKeyChanged(conf.Interface{PKCS11: &conf.PKCS11Key{URI: u}}) {
		t.Error("in-memory key, reload to a token key: not reported as changed")
	}
}

// The running token key reads its PIN file at each login, so a reload
// that names another one (pkcs11_pin_file, with the same URI) would be
// taken and never used: it is refused like the key itself, by name.
func TestReloadRefusesOtherPINFile(t *testing.T) {
	priv, _ := handshake.GeneratePrivateKey(nil)
	u, err := pkcs11key.ParseURI("pkcs11:token=gw;object=a?module-path=/m.so")
	if err != nil {
		t.Fatal(err)
	}
	key := uriKey{handshake.MemoryKey(priv), u.String(), "/etc/stunnel/pin"}
	d := &Device{host: session.NewHost(&handshake.Config{Static: key}, rekey.DefaultPolicy())}
	reload := func(pinFile string) error {
		return d.fixedSettingsChanged(&conf.Config{Path: "st.toml", Interface: conf.Interface{PKCS11: &conf.PKCS11Key{URI: u, PinFile: pinFile}}})
	}
	if err := reload("/etc/stunnel/pin"); err != nil {
		t.Fatalf("reload with the same PIN file: %v", err)
	}
	for _, pinFile := range []string{"/etc/stunnel/new-pin", ""} {
		if err := reload(pinFile); err == nil || !strings.Contains(err.Error(), "cannot change pkcs11_pin_file") {
			t.Errorf("reload with PIN file %q: %v, want a refusal naming pkcs11_pin_file", pinFile, err)
		}
	}
}

// A peer with this host's own public key is refused by the device itself,
// for a config that did not go through conf's check (the daemon's token
// key, whose public key conf learns only at start): Reload keeps the
// running peers and New does not start.
func TestPeerWithOwnKeyRefused(t *testing.T) {
	p := newPair(t, nil)
	self := conf.Peer{ID: "mirror", PublicKey: p.a.key.PublicKey(), Line: 9,
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.0.9/32")}}
	cfg := *p.a.cfg
	cfg.Peers = append(slices.Clone(cfg.Peers), self)
	err := p.a.dev.Reload(&cfg)
	if err == nil || err.Error() != `a.toml:9: public_key of peer "mirror" is this host's own public key` {
		t.Errorf("reload with a peer that has this host's key: %v", err)
	}
	if st := p.a.dev.Status(); len(st.Peers) != 1 || st.Peers[0].ID != "beta" {
		t.Errorf("the refused reload changed the running peers: %+v", st.Peers)
	}
	self.Line = 0 // a directory record
	cfg.Peers[1] = self
	if err := p.a.dev.Reload(&cfg); err == nil || err.Error() != `a.toml: directory peer "mirror" has this host's own public key` {
		t.Errorf("reload with a directory peer that has this host's key: %v", err)
	}
	cfg.Interface.Name = "stc"
	d, err := New(&cfg, Options{TUN: newMemTUN(), Bind: p.net.bind("198.18.0.3:51820"), TickInterval: -1, QuietStart: true})
	if err == nil {
		d.Close()
		t.Errorf("New started a device with a peer that has its own key")
	} else if err.Error() != `a.toml: directory peer "mirror" has this host's own public key` {
		t.Errorf("New with a directory peer that has this host's key: %v", err)
	}
}

// tokenStatusKey stands for a token key as show reports it.
type tokenStatusKey struct {
	uriKey
	origin     pkcs11key.Origin
	hung       bool
	unanswered uint64
}

func (k tokenStatusKey) Origin() pkcs11key.Origin { return k.origin }
func (k tokenStatusKey) Hung() bool               { return k.hung }
func (k tokenStatusKey) Unanswered() uint64       { return k.unanswered }

// TestStatusShowsTokenKey: show's static_key says where a token key came
// from and whether the token answers; a key in the config has none.
func TestStatusShowsTokenKey(t *testing.T) {
	priv, _ := handshake.GeneratePrivateKey(nil)
	const uri = "pkcs11:token=gw;object=a?module-path=/m.so"
	key := tokenStatusKey{uriKey{handshake.MemoryKey(priv), uri, ""}, pkcs11key.Origin{Known: true}, true, 7}
	d := &Device{host: session.NewHost(&handshake.Config{Static: key}, rekey.DefaultPolicy())}
	want := StaticKeyStatus{URI: uri, Origin: "imported", Hung: true, Unanswered: 7}
	if got := d.staticKeyStatus(); got == nil || *got != want {
		t.Fatalf("static_key of an imported key in a hung token: %+v, want %+v", got, want)
	}
	key.origin, key.hung, key.unanswered = pkcs11key.Origin{Known: true, Local: true, NeverExtractable: true, AlwaysSensitive: true}, false, 0
	d = &Device{host: session.NewHost(&handshake.Config{Static: key}, rekey.DefaultPolicy())}
	if got := d.staticKeyStatus(); got == nil || got.Origin != "generated" || got.Hung {
		t.Fatalf("static_key of a generated key: %+v", got)
	}
	p := newPair(t, nil)
	if st := p.a.dev.Status(); st.StaticKey != nil {
		t.Fatalf("static_key of a key in the config: %+v, want none", st.StaticKey)
	}
}

// The PIN source is not part of the key's name: a reload that moves the
// same PIN file from the URI's pin-source to pkcs11_pin_file (conf gives
// both as PKCS11Key.PinFile) names the running key and its PIN file, and is
// taken; it was refused as "cannot change private key".
func TestReloadMovesPINSourceOutOfTheURI(t *testing.T) {
	priv, _ := handshake.GeneratePrivateKey(nil)
	withPin, err := pkcs11key.ParseURI("pkcs11:token=gw;object=a?module-path=/m.so&pin-source=file:/etc/stunnel/pin")
	if err != nil {
		t.Fatal(err)
	}
	bare, err := pkcs11key.ParseURI("pkcs11:token=gw;object=a?module-path=/m.so")
	if err != nil {
		t.Fatal(err)
	}
	key := uriKey{handshake.MemoryKey(priv), withPin.String(), "/etc/stunnel/pin"}
	d := &Device{host: session.NewHost(&handshake.Config{Static: key}, rekey.DefaultPolicy())}
	moved := &conf.Config{Path: "st.toml", Interface: conf.Interface{PKCS11: &conf.PKCS11Key{URI: bare, PinFile: "/etc/stunnel/pin"}}}
	if err := d.fixedSettingsChanged(moved); err != nil {
		t.Fatalf("reload with the PIN file moved out of the URI: %v", err)
	}
	other := &conf.Config{Path: "st.toml", Interface: conf.Interface{PKCS11: &conf.PKCS11Key{URI: bare, PinFile: "/etc/stunnel/other-pin"}}}
	if err := d.fixedSettingsChanged(other); err == nil || !strings.Contains(err.Error(), "pkcs11_pin_file") {
		t.Fatalf("reload with another PIN file: %v, want it refused by name", err)
	}
}
