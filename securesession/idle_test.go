package securesession

import (
	"context"
	"testing"
	"time"

	"stunnel/internal/fakeclock"
	"stunnel/internal/waitfor"
	"stunnel/rekey"
)

// A Conn left idle past reject_after has no usable key: both sides' keys
// expired. Send promises to wait for a session, as it does before the first
// one; it returned ErrNotEstablished at once instead, so an application had
// to retry by hand after every quiet spell of three minutes. Both sides are
// tried: the responder (who never rekeys on time) and the initiator.
func TestConnSendAfterIdlePastRejectAfterWaitsForNewSession(t *testing.T) {
	aKey, bKey := keys(t), keys(t)
	lookup := abLookup(aKey, bKey)
	policy := rekey.DefaultPolicy()
	policy.RekeyJitter = 0
	h, clk := newHub(), fakeclock.New(t0)
	server, err := Accept(Config{PeerID: "b", PrivateKey: bKey, Peers: lookup, Policy: policy, Now: clk.Now}, h.end(h.toClient, h.toServer))
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	client, err := Dial(Config{PeerID: "a", PrivateKey: aKey, Peers: lookup, Policy: policy, Now: clk.Now}, "b", h.end(h.toServer, h.toClient))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	exchange := func(from, to *Conn, what string) {
		t.Helper()
		if err := from.Send(ctx, []byte(what)); err != nil {
			t.Fatalf("Send %q: %v", what, err)
		}
		if m, err := to.Receive(ctx); err != nil || string(m) != what {
			t.Fatalf("Receive: %q, %v; want %q", m, err, what)
		}
	}
	exchange(client, server, "hello")
	exchange(server, client, "hello back")

	for _, tc := range []struct {
		from, to *Conn
		name     string
	}{{server, client, "responder"}, {client, server, "initiator"}} {
		clk.Advance(policy.RejectAfterTime + time.Second)
		waitfor.Cond(t, 5*time.Second, time.Millisecond, "both sides' keys to expire", func() bool {
			return !client.Session().Established() && !server.Session().Established()
		})
		exchange(tc.from, tc.to, tc.name+" after idle")
	}
}
