package conf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzParse: a config file is read by `stunnel check` and `up` from
// whatever is on disk. Whatever it holds, Parse does not panic; a refusal
// is *Errors with no config, every problem one line at a line of the file;
// a TOML syntax error quotes nothing key-like but our own key names; the
// value of private_key or preshared_key is never in the error text (when
// the file holds it nowhere else); and every [[peer]] accepted passes the
// rules a directory record must pass.
func FuzzParse(f *testing.F) {
	dir := f.TempDir()
	for name, fill := range map[string]byte{"a.key": 1, "c.psk": 5} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(testKey(f, fill).Base64()+"\n"), 0o600); err != nil {
			f.Fatal(err)
		}
	}
	f.Add([]byte(strings.ReplaceAll(expand(f, validFull), "/ABS", dir)))
	f.Add([]byte(expand(f, iface+peerB)))
	f.Add([]byte(expand(f, iface+peerB+"preshared_key = \"PSK\"\nendpoint = [\"198.18.0.2:1\", \"gw.example.net:2\"]\nfailover_after = \"30s\"\npersistent_keepalive = \"10s\"\n")))
	f.Add([]byte(expand(f, iface+"[session]\ncipher = \"chacha20poly1305\"\n[tickets]\nencrypt_decrypt_lifetime = \"1h\"\n")))
	f.Add([]byte(expand(f, "[interface]\nprivate_key = \"PRIV_A\n")))
	f.Add([]byte(expand(f, iface+"[[peer]]\nid = \"b\"\npreshared_key = \"PSK\"\npublic_key = \"PRIV_A\"\n")))
	path := filepath.Join(dir, "st0.toml")
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(path, data)
		if err == nil {
			checkAccepted(t, c)
			return
		}
		var errs *Errors
		if !errors.As(err, &errs) || c != nil || len(*errs) == 0 {
			t.Fatalf("refused with config %v and error %T %v", c != nil, err, err)
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, p := range *errs {
			if p.File != path || p.Line < 1 || p.Line > lines || strings.Contains(p.String(), "\n") {
				t.Fatalf("problem %q at %s:%d of a %d-line file", p.Msg, p.File, p.Line, lines)
			}
			if msg, ok := strings.CutPrefix(p.Msg, "TOML syntax: "); ok {
				for _, s := range keyish.FindAllString(msg, -1) {
					if !knownKeyPath(s) {
						t.Fatalf("a syntax error quotes %q: %s", s, msg)
					}
				}
			}
		}
		var raw map[string]any
		if _, derr := toml.Decode(string(data), &raw); derr != nil {
			return
		}
		for _, v := range keyValues(raw) {
			if len(v) >= 20 && bytes.Count(data, []byte(v)) == 1 && strings.Contains(err.Error(), v) {
				t.Fatalf("the error shows a key's value %q: %v", v, err)
			}
		}
	})
}

// checkAccepted holds for any config Parse accepts.
func checkAccepted(t *testing.T, c *Config) {
	in := c.Interface
	if in.Name == "" || in.PeerID == "" || len(in.Addresses) == 0 {
		t.Fatalf("accepted an interface without name, peer_id or address: %+v", in)
	}
	if in.PKCS11 == nil && (in.PrivateKey.IsZero() || in.PublicKey != in.PrivateKey.PublicKey()) {
		t.Fatal("accepted without a private key, or with a public key not derived from it")
	}
	for _, p := range c.Peers {
		if err := ValidatePeer(p); err != nil {
			t.Fatalf("accepted a [[peer]] that a directory record could not be: %v", err)
		}
	}
}

// keyValues is every string value of private_key and preshared_key.
func keyValues(raw map[string]any) []string {
	var out []string
	if in, ok := raw["interface"].(map[string]any); ok {
		if s, ok := in["private_key"].(string); ok {
			out = append(out, s)
		}
	}
	peers, _ := raw["peer"].([]map[string]any)
	for _, p := range peers {
		if s, ok := p["preshared_key"].(string); ok {
			out = append(out, s)
		}
	}
	return out
}
