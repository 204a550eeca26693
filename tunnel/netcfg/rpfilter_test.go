package netcfg

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestStrictReversePath: an interface is strict when the larger of all's
// and its own rp_filter is 1; loose (2) anywhere wins over strict, lo and
// the tunnel's own device are not asked about.
func TestStrictReversePath(t *testing.T) {
	cases := []struct {
		all  string
		ifs  map[string]string
		want []string
	}{
		{"0", map[string]string{"eth0": "0", "eth1": "2"}, nil},
		{"0", map[string]string{"eth0": "1", "eth1": "2", "lo": "1", "st0": "1"}, []string{"eth0"}},
		{"1", map[string]string{"eth0": "0", "eth1": "2", "lo": "0"}, []string{"eth0"}},
		{"2", map[string]string{"eth0": "1", "eth1": "0"}, nil},
	}
	for _, c := range cases {
		dir := t.TempDir()
		write := func(name, v string) {
			if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name, "rp_filter"), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("all", c.all)
		write("default", "1")
		for name, v := range c.ifs {
			write(name, v)
		}
		got, err := StrictReversePath(dir, "st0")
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("all=%s %v: %v, %v; want %v", c.all, c.ifs, got, err, c.want)
		}
	}
	if _, err := StrictReversePath(filepath.Join(t.TempDir(), "missing"), "st0"); err == nil {
		t.Error("no conf directory: no error")
	}
}
