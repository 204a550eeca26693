package conf

import (
	"strings"
	"testing"
)

// A full tunnel with an IP endpoint is valid: the daemon keeps the
// endpoint's packets out of the tunnel with a firewall mark. A narrower
// prefix holding the endpoint is still the routing loop it always was.
func TestFullTunnelWithIPEndpoint(t *testing.T) {
	full := expand(t, iface+`[[peer]]
id = "gw"
public_key = "PUB_B"
endpoint = "198.18.0.2:51820"
allowed_ips = ["0.0.0.0/0", "::/0"]
`)
	if _, err := Parse("full.toml", []byte(full)); err != nil {
		t.Fatalf("full tunnel with an IP endpoint refused: %v", err)
	}
	loop := expand(t, iface+`[[peer]]
id = "gw"
public_key = "PUB_B"
endpoint = "198.18.0.2:51820"
allowed_ips = ["198.18.0.0/16"]
`)
	_, err := Parse("loop.toml", []byte(loop))
	if err == nil || !strings.Contains(err.Error(), "lies inside allowed_ips 198.18.0.0/16") {
		t.Fatalf("endpoint inside a /16 of allowed_ips: err = %v, want the routing-loop error", err)
	}
}
