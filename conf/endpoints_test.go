package conf

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEndpointList(t *testing.T) {
	src := iface + peerB + `endpoint = ["198.18.1.1:51820", "gw-b.example:51820"]
persistent_keepalive = "1s"
failover_after = "3s"
`
	c, err := Parse("test.toml", []byte(expand(t, src)))
	if err != nil {
		t.Fatal(err)
	}
	pr := c.Peers[0]
	if !slices.Equal(pr.Endpoints, []string{"198.18.1.1:51820", "gw-b.example:51820"}) || pr.Endpoint != "198.18.1.1:51820" {
		t.Errorf("endpoints %q, endpoint %q", pr.Endpoints, pr.Endpoint)
	}
	if pr.FailoverAfter != 3*time.Second {
		t.Errorf("failover_after %v", pr.FailoverAfter)
	}

	one, err := Parse("test.toml", []byte(expand(t, iface+peerB+"endpoint = \"198.18.1.1:51820\"\n")))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(one.Peers[0].Endpoints, []string{"198.18.1.1:51820"}) {
		t.Errorf("single endpoint: %q", one.Peers[0].Endpoints)
	}
}

func TestEndpointListMistakes(t *testing.T) {
	cases := []struct{ name, src, msg string }{
		{"empty list", "endpoint = []\n", "empty list"},
		{"not a string", "endpoint = 5\n", "endpoint must be a string"},
		{"element not a string", "endpoint = [\"198.18.1.1:1\", 5]\n", "endpoint[1] must be a string"},
		{"bad element", "endpoint = [\"198.18.1.1:1\", \"nope\"]\n", `endpoint "nope"`},
		{"duplicate", "endpoint = [\"198.18.1.1:1\", \"198.18.1.1:1\"]\n", "listed twice"},
		{"failover without keepalive", "endpoint = [\"198.18.1.1:1\"]\nfailover_after = \"3s\"\n", "needs persistent_keepalive"},
		{"failover below keepalive", "endpoint = [\"198.18.1.1:1\"]\npersistent_keepalive = \"5s\"\nfailover_after = \"3s\"\n", "must exceed persistent_keepalive"},
		{"failover too short", "endpoint = [\"198.18.1.1:1\"]\npersistent_keepalive = \"1s\"\nfailover_after = \"100ms\"\n", "below 1s"},
		{"second endpoint routed into the tunnel", "endpoint = [\"198.18.1.1:1\", \"198.19.0.2:1\"]\n", "lies inside allowed_ips"},
		{"failover bad duration", "endpoint = [\"198.18.1.1:1\"]\nfailover_after = \"soon\"\n", "not a duration"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("test.toml", []byte(expand(t, iface+peerB+tc.src)))
			if err == nil {
				t.Fatal("accepted")
			}
			found := false
			for _, p := range problems(t, err) { // lines 10-12: the keys after peerB
				for l := 10; l <= 12; l++ {
					if strings.HasPrefix(p.String(), fmt.Sprintf("test.toml:%d: ", l)) && strings.Contains(p.Msg, tc.msg) {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("want %q at line 10 or later, got:\n%v", tc.msg, err)
			}
		})
	}
}
