package tunnel

import (
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
	uri string
}

func (k uriKey) URI() string { return k.uri }

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
	key := uriKey{handshake.MemoryKey(priv), u.String()}
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
