package directory

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// An http:// loopback member listed before an https:// one: etcd's client
// takes the first endpoint's scheme for all, so the https:// member would
// get plain gRPC (it did: the listener read the HTTP/2 preface, not a TLS
// ClientHello). Dial and DialWatcher refuse the mix instead.
func TestDialRefusesMixedSchemes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	first := make(chan byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err == nil {
			first <- b[0]
		}
	}()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String()
	dead.Close() // nothing answers there: the client turns to the https member
	endpoints := []string{deadURL, "https://" + ln.Addr().String()}
	for name, dial := range map[string]func([]string, *tls.Config) (io.Closer, error){
		"Dial":        func(e []string, c *tls.Config) (io.Closer, error) { return Dial(e, c) },
		"DialWatcher": func(e []string, c *tls.Config) (io.Closer, error) { return DialWatcher(e, c) },
	} {
		cli, err := dial(endpoints, &tls.Config{MinVersion: tls.VersionTLS12})
		if err == nil {
			cli.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "mix http") {
			t.Errorf("%s(%v): %v, want the mix refused", name, endpoints, err)
		}
	}
	cli, err := Dial(endpoints, &tls.Config{MinVersion: tls.VersionTLS12})
	if err != nil {
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, _ = cli.Get(ctx, "/x")
	select {
	case b := <-first:
		if b != 0x16 { // a TLS handshake record
			t.Fatalf("the https member got plain text (first byte %q), not a TLS ClientHello", b)
		}
	case <-time.After(3 * time.Second):
	}
}
