package main

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestKeptCaps(t *testing.T) {
	admin := uint64(1) << unix.CAP_NET_ADMIN
	bind := uint64(1) << unix.CAP_NET_BIND_SERVICE
	for port, want := range map[int]uint64{51820: admin, 1024: admin, 0: admin, 1023: admin | bind, 53: admin | bind} {
		if got := keptCaps(boundPorts(port, ""), false); got != want {
			t.Errorf("keptCaps(%d) = %#x, want %#x", port, got, want)
		}
	}
}

// The [metrics] listener is bound after the narrowing: a port below 1024
// there needs CAP_NET_BIND_SERVICE kept, or `up` exits 1 on a config
// `check` accepts ("bind: permission denied").
func TestKeptCapsCoverMetricsPort(t *testing.T) {
	admin := uint64(1) << unix.CAP_NET_ADMIN
	bind := uint64(1) << unix.CAP_NET_BIND_SERVICE
	for _, c := range []struct {
		listen string
		want   uint64
	}{
		{"127.0.0.1:999", admin | bind},
		{"localhost:80", admin | bind},
		{"[::1]:1023", admin | bind},
		{"127.0.0.1:9586", admin},
		{"", admin},
	} {
		if got := keptCaps(boundPorts(51820, c.listen), false); got != c.want {
			t.Errorf("[metrics] listen = %q: keptCaps = %#x, want %#x", c.listen, got, c.want)
		}
	}
}

func TestProcCapsReadsSelf(t *testing.T) {
	c, err := procCaps("self")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if _, ok := c[k]; !ok {
			t.Errorf("no %s in /proc/self/status", k)
		}
	}
}
