package netns

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"stunnel/internal/roottest"
)

func needRoot(t *testing.T) { roottest.Require(t, "network namespaces") }

func addNS(t *testing.T, name string) {
	t.Helper()
	if err := Add(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Delete(name); err != nil {
			t.Error(err)
		}
	})
}

func TestVethTCPThroughDo(t *testing.T) {
	needRoot(t)
	a, b := fmt.Sprintf("sttna%d", os.Getpid()), fmt.Sprintf("sttnb%d", os.Getpid())
	addNS(t, a)
	addNS(t, b)
	pa, pb := netip.MustParsePrefix("198.18.250.1/24"), netip.MustParsePrefix("198.18.250.2/24")
	if err := Veth(a, "va", pa, b, "vb", pb); err != nil {
		t.Fatal(err)
	}
	// IPv6 on top, to check AddAddr is usable at once (nodad).
	if err := AddAddr(a, "va", netip.MustParsePrefix("fd00:250::1/64")); err != nil {
		t.Fatal(err)
	}

	var ln net.Listener
	if err := Do(b, func() (err error) {
		ln, err = net.Listen("tcp4", pb.Addr().String()+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		buf, _ := io.ReadAll(c)
		got <- string(buf) + " from " + c.RemoteAddr().(*net.TCPAddr).IP.String()
	}()

	// The veth addresses are not the test's own namespace's: a socket
	// there cannot bind them. (Probed by binding, not by dialling: from
	// here a dial goes out of the host's default route, and a test sends
	// nothing outside its own namespaces.)
	for _, p := range []netip.Prefix{pa, pb} {
		if l, err := net.Listen("tcp4", p.Addr().String()+":0"); err == nil {
			l.Close()
			t.Fatalf("bound %s in the test's own namespace: the veth address leaked out of its namespace", p.Addr())
		} else if !errors.Is(err, syscall.EADDRNOTAVAIL) {
			t.Fatalf("binding %s in the test's own namespace: %v, want EADDRNOTAVAIL", p.Addr(), err)
		}
	}

	var c net.Conn
	if err := Do(a, func() (err error) {
		c, err = net.Dial("tcp4", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Used outside Do: the socket stays in namespace a.
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if s := <-got; s != "hello from "+pa.Addr().String() {
		t.Fatalf("received %q, want hello from %s", s, pa.Addr())
	}

	out, err := Run(a, "ip", "-6", "addr", "show", "dev", "va")
	if err != nil || !strings.Contains(out, "fd00:250::1/64") {
		t.Fatalf("ipv6 address missing: %v %s", err, out)
	}
}

func TestErrors(t *testing.T) {
	needRoot(t)
	missing := fmt.Sprintf("sttnx%d", os.Getpid())
	if err := Delete(missing); err != nil {
		t.Fatalf("Delete of a missing namespace: %v, want nil", err)
	}
	if err := Do(missing, func() error { t.Error("fn ran in a missing namespace"); return nil }); err == nil {
		t.Fatal("Do in a missing namespace succeeded")
	}
	if err := Add("../etc"); err == nil {
		t.Fatal("Add accepted a path as a name")
	}
	ns := fmt.Sprintf("sttne%d", os.Getpid())
	addNS(t, ns)
	_, err := Run(ns, "ip", "link", "show", "dev", "nosuchdev0")
	if err == nil || !strings.Contains(err.Error(), ns) || !strings.Contains(err.Error(), "nosuchdev0") {
		t.Fatalf("Run error %v must name the namespace and the command", err)
	}
	if err := Do(ns, func() error { panic("boom") }); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Do with a panicking fn: %v", err)
	}
	// Every thread of the process is back in the test's namespace once Do
	// returns: Do runs fn on whichever thread the runtime gives it, so
	// /proc/self (the main thread alone) would not see one left behind.
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if err := Do(ns, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil || len(tasks) == 0 {
		t.Fatalf("listing the threads' namespaces: %d, %v", len(tasks), err)
	}
	for _, f := range tasks {
		now, err := os.Readlink(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread exited meanwhile
		}
		if err != nil || now != self {
			t.Fatalf("%s is %s (%v) after Do returned, want %s", f, now, err, self)
		}
	}
}
