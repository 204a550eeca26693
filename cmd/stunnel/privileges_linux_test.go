package main

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestKeptCaps(t *testing.T) {
	admin := uint64(1) << unix.CAP_NET_ADMIN
	bind := uint64(1) << unix.CAP_NET_BIND_SERVICE
	for port, want := range map[int]uint64{51820: admin, 1024: admin, 0: admin, 1023: admin | bind, 53: admin | bind} {
		if got := keptCaps(port, false); got != want {
			t.Errorf("keptCaps(%d) = %#x, want %#x", port, got, want)
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
