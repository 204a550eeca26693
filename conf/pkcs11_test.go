package conf

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func TestPKCS11PrivateKey(t *testing.T) {
	dir := t.TempDir()
	module := filepath.Join(dir, "module.so") // only its existence is checked here
	writeFile(t, module, "", 0o644)
	writeFile(t, filepath.Join(dir, "pin"), "1234\n", 0o600)
	writeFile(t, filepath.Join(dir, "open-pin"), "1234\n", 0o644)
	uri := func(extra string) string {
		return fmt.Sprintf("pkcs11:token=gw;object=site-a?module-path=%s%s", module, extra)
	}
	config := func(lines ...string) string {
		return "[interface]\nname = \"st0\"\npeer_id = \"a\"\n" + strings.Join(lines, "\n") + "\naddress = [\"198.19.0.1/24\"]\n"
	}

	t.Run("valid", func(t *testing.T) {
		for _, src := range []string{
			config(`private_key = "` + uri("&pin-source=file:pin") + `"`),
			config(`private_key = "`+uri("")+`"`, `pkcs11_pin_file = "pin"`),
		} {
			c, err := Parse(filepath.Join(dir, "c.toml"), []byte(src))
			if err != nil {
				t.Fatalf("%v\n%s", err, src)
			}
			k := c.Interface.PKCS11
			if k == nil || k.URI.Token != "gw" || k.URI.Object != "site-a" || k.PinFile != filepath.Join(dir, "pin") || k.Line != 4 {
				t.Fatalf("PKCS11 = %+v", k)
			}
			if !c.Interface.PrivateKey.IsZero() || !c.Interface.PublicKey.IsZero() {
				t.Fatal("a token key left a private or public key in the config")
			}
			if k.RequireLocal || k.RequireLine != 0 {
				t.Fatalf("pkcs11_require_local is set without the key: %+v", k)
			}
		}
	})

	t.Run("pkcs11_require_local", func(t *testing.T) {
		for _, v := range []bool{true, false} {
			src := config(`private_key = "`+uri("&pin-source=file:pin")+`"`, fmt.Sprintf("pkcs11_require_local = %v", v))
			c, err := Parse(filepath.Join(dir, "c.toml"), []byte(src))
			if err != nil {
				t.Fatalf("%v\n%s", err, src)
			}
			if k := c.Interface.PKCS11; k.RequireLocal != v || k.RequireLine != 5 {
				t.Fatalf("pkcs11_require_local = %v: %+v", v, k)
			}
		}
	})

	bad := []struct {
		name string
		src  string
		line int
		msg  string
	}{
		{"URI does not parse", config(`private_key = "pkcs11:object=k?module-path=/x"`), 4, "names no token"},
		{"pin-value", config(`private_key = "` + uri("&pin-value=1234") + `"`), 4, "pin-value puts the PIN in the config"},
		{"module missing", config(`private_key = "pkcs11:token=gw;object=k?module-path=/nonexistent/p11.so"`), 4, "module /nonexistent/p11.so: no such file"},
		{"PIN file readable by others", config(`private_key = "`+uri("")+`"`, `pkcs11_pin_file = "open-pin"`), 5, "readable by group or others"},
		{"PIN file missing", config(`private_key = "` + uri("&pin-source=file:/nonexistent/pin") + `"`), 4, "no such file"},
		{"two PIN sources", config(`private_key = "`+uri("&pin-source=file:pin")+`"`, `pkcs11_pin_file = "pin"`), 5, "give one of them"},
		{"PIN file without a token", config(`private_key = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="`, `pkcs11_pin_file = "pin"`), 5, "only for private_key = \"pkcs11:"},
		{"require_local without a token", config(`private_key = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="`, `pkcs11_require_local = true`), 5, "pkcs11_require_local is only for private_key = \"pkcs11:"},
		{"require_local not a bool", config(`private_key = "`+uri("&pin-source=file:pin")+`"`, `pkcs11_require_local = "yes"`), 5, "pkcs11_require_local must be true or false, not a string"},
	}
	for _, c := range bad {
		_, err := Parse(filepath.Join(dir, "c.toml"), []byte(c.src))
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		ps := problems(t, err)
		if len(ps) != 1 || ps[0].Line != c.line || !strings.Contains(ps[0].Msg, c.msg) {
			t.Errorf("%s: %v, want one problem at line %d containing %q", c.name, err, c.line, c.msg)
		}
		if strings.Contains(err.Error(), "1234") {
			t.Errorf("%s: the PIN shows in %v", c.name, err)
		}
	}
}
