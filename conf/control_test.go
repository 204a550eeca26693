package conf

import (
	"os/user"
	"strings"
	"testing"
)

const controlBase = `[interface]
name = "st0"
peer_id = "a"
private_key = "PRIV_A"
address = ["198.19.0.1/24"]
`

// Groups every Debian system has: adm (4) and users (100).
func TestControlAndMetrics(t *testing.T) {
	c, err := Parse("x.toml", []byte(expand(t, controlBase+`
[control]
read_group = "users"
officer_group = "adm"

[metrics]
listen = "127.0.0.1:9586"
`)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Control.Read.Name != "users" || c.Control.Read.GID != 100 || c.Control.Officer.GID != 4 || c.Control.Operate.Name != "" {
		t.Errorf("control = %+v", c.Control)
	}
	if c.Metrics.Listen != "127.0.0.1:9586" {
		t.Errorf("metrics = %+v", c.Metrics)
	}
	// Absent tables: nothing set.
	c, err = Parse("x.toml", []byte(expand(t, controlBase)))
	if err != nil || c.Control != (Control{}) || c.Metrics.Listen != "" {
		t.Errorf("defaults: %+v %+v %v", c.Control, c.Metrics, err)
	}
}

func TestControlAndMetricsErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"[control]\nread_group = \"no-such-group-xq\"\n", `x.toml:8: read_group "no-such-group-xq": no such unix group`},
		{"[control]\noperate_group = \"\"\n", "x.toml:8: operate_group is empty"},
		{"[control]\nofficer_group = \"root\"\n", "x.toml:8: officer_group \"root\" is gid 0"},
		{"[control]\nread_group = \"users\"\noperate_group = \"users\"\n", `x.toml:9: operate_group "users" is also read_group`},
		{"[control]\nreader_group = \"users\"\n", `x.toml:8: unknown key "reader_group" in [control]`},
		{"[control]\nread_group = 5\n", "x.toml:8: read_group"},
		{"[metrics]\nlisten = \"0.0.0.0:9586\"\n", "x.toml:8: listen \"0.0.0.0:9586\": metrics are served on loopback only"},
		{"[metrics]\nlisten = \"198.18.0.1:9586\"\n", "loopback only"},
		{"[metrics]\nlisten = \"127.0.0.1\"\n", "is not host:port"},
		{"[metrics]\nlisten = \"127.0.0.1:0\"\n", "must be a number from 1 to 65535"},
		{"[metrics]\nport = 1\n", `unknown key "port" in [metrics]`},
	} {
		_, err := Parse("x.toml", []byte(expand(t, controlBase+"\n"+tc.text)))
		if err == nil {
			t.Errorf("%q: accepted", tc.text)
			continue
		}
		if probs := problems(t, err); len(probs) != 1 || !strings.Contains(probs[0].String(), tc.want) {
			t.Errorf("%q: got %v, want one problem containing %q", tc.text, err, tc.want)
		}
	}
	for _, ok := range []string{"[::1]:9586", "localhost:9586", "127.0.0.2:1"} {
		if _, err := Parse("x.toml", []byte(expand(t, controlBase+"\n[metrics]\nlisten = \""+ok+"\"\n"))); err != nil {
			t.Errorf("listen %q: %v", ok, err)
		}
	}
}

// Two names of one gid (groupadd -o) are one group: given to two roles,
// they would give each role's members the other's too, as one name twice
// would, so they are refused the same way.
func TestControlGroupAliases(t *testing.T) {
	defer func(f func(string) (*user.Group, error)) { lookupGroup = f }(lookupGroup)
	lookupGroup = func(name string) (*user.Group, error) {
		return &user.Group{Name: name, Gid: "5002"}, nil
	}
	_, err := Parse("x.toml", []byte(expand(t, controlBase+"\n[control]\noperate_group = \"st-ops\"\nofficer_group = \"st-keys\"\n")))
	want := `x.toml:9: officer_group "st-keys" is gid 5002, as operate_group "st-ops"; give each role its own group`
	if err == nil {
		t.Fatal("two names of one gid for two roles accepted")
	}
	if probs := problems(t, err); len(probs) != 1 || !strings.Contains(probs[0].String(), want) {
		t.Errorf("got %v, want %q", err, want)
	}
}
