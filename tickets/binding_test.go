package tickets

import (
	"bytes"
	"path/filepath"
	"testing"

	"stunnel/handshake"
)

// gateway is one responder with its own ring loaded from a key file.
type gateway struct {
	resp *handshake.Responder
	ring *Ring
	pub  handshake.PublicKey
	gen  *handshake.CookieGenerator // toward it: mac1 keyed to its public key
}

func (w *world) gateway(t *testing.T, priv handshake.PrivateKey, keyFile string) *gateway {
	t.Helper()
	ring := NewRing(Options{Now: w.clk.Now})
	if err := ring.LoadFile(keyFile); err != nil {
		t.Fatal(err)
	}
	cfg := &handshake.Config{PeerID: []byte("gw"), PrivateKey: priv, Now: w.clk.Now, Peers: w.gwPeers}
	return &gateway{resp: handshake.NewResponder(cfg), ring: ring, pub: priv.PublicKey(),
		gen: handshake.NewCookieGenerator(priv.PublicKey(), w.clk.Now)}
}

// consume hands a copy of message 5, with mac1 for g, to g.
func (g *gateway) consume(t *testing.T, msg []byte, idx uint32) ([]byte, *handshake.Session, *handshake.TicketState, error) {
	t.Helper()
	m := bytes.Clone(msg)
	g.gen.AddMACs(m)
	return g.resp.ConsumeResumption(m, idx, g.ring)
}

// Interfaces of two identities, X and Y, share one ticket key file (the
// docs say a key file is for the gateways of one identity; nothing
// stopped another). A ticket X issued must not resume at Y: Y would answer
// the client's resumption to X as if it were X, with keys it can derive
// from the ticket. It used to, since the ticket named no responder. Two
// gateways of X sharing the file (a group failing over) still resume each
// other's tickets, and X its own.
func TestTicketBoundToIssuingIdentity(t *testing.T) {
	w := newWorld(t)
	k, err := GenerateKey(nil, t0, DefaultEncryptDecryptLifetime, DefaultDecryptLifetime)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "ticket.keys")
	if err := WriteKeyFile(keyFile, []Key{k}); err != nil {
		t.Fatal(err)
	}
	if err := w.ring.LoadFile(keyFile); err != nil { // X, as w's gw
		t.Fatal(err)
	}
	x2 := w.gateway(t, w.gw.PrivateKey, keyFile)
	yKey, err := handshake.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	y := w.gateway(t, yKey, keyFile) // knows the client as X does

	_, _, h := w.full(t) // with X, which issues the ticket
	r, msg := w.resumeMsg(t, h)
	w.clk.Advance(1)
	if resp, _, _, err := y.consume(t, msg, 100); err == nil || resp != nil {
		t.Fatalf("identity Y resumed a ticket identity X issued (error %v)", err)
	} else {
		wantErr(t, err, handshake.ErrTicketInvalid, "X's ticket at Y")
	}

	// The failover case: X's other gateway takes the same message 5.
	resp, sg, st, err := x2.consume(t, msg, 102)
	if err != nil {
		t.Fatalf("X's ticket at X's other gateway: %v", err)
	}
	sc, err := r.ConsumeResponse(resp)
	if err != nil {
		t.Fatalf("resumption response from X's other gateway: %v", err)
	}
	// x2 issues the next ticket over the resumed session; back at the
	// first gateway of X it resumes too.
	next := issueFrom(t, x2.ring, x2.pub, w.gwPeers["client"].PublicKey, sc, sg, st.AuthTime)
	if _, _, _, err := w.resume(t, next); err != nil {
		t.Fatalf("a ticket of X's other gateway at X: %v", err)
	}
}
