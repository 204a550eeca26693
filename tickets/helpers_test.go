package tickets

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/internal/fakeclock"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// peers is a handshake.PeerLookup backed by a map (the config, reloadable).
type peers map[string]handshake.PeerInfo

func (m peers) LookupPeer(id []byte) (handshake.PeerInfo, error) {
	p, ok := m[string(id)]
	if !ok {
		return handshake.PeerInfo{}, handshake.ErrUnknownPeer
	}
	return p, nil
}

// world is an initiator "client" and a responder "gw" with a ticket ring.
type world struct {
	clk     *fakeclock.Clock
	ring    *Ring
	client  *handshake.Config
	gw      *handshake.Config
	resp    *handshake.Responder
	checker *handshake.CookieChecker
	gen     *handshake.CookieGenerator // client's, toward gw
	gwPeers peers
	gwPub   handshake.PublicKey
	psk     handshake.PresharedKey // the client's for gw (gwPeers holds gw's)
	idx     uint32
}

func newWorld(t testing.TB) *world {
	t.Helper()
	clk := fakeclock.New(t0)
	w := &world{clk: clk, gwPeers: peers{}}
	w.ring = NewRing(Options{Now: clk.Now})
	cpriv, err := handshake.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	gpriv, err := handshake.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	w.client = &handshake.Config{PeerID: []byte("client"), PrivateKey: cpriv, Now: clk.Now, Peers: peers{"gw": {PublicKey: gpriv.PublicKey(), ID: "gw"}}}
	w.gw = &handshake.Config{PeerID: []byte("gw"), PrivateKey: gpriv, Now: clk.Now, Peers: w.gwPeers}
	w.gwPeers["client"] = handshake.PeerInfo{PublicKey: cpriv.PublicKey(), ID: "client"}
	w.gwPub = gpriv.PublicKey()
	w.resp = handshake.NewResponder(w.gw)
	w.checker = handshake.NewCookieChecker(gpriv.PublicKey(), clk.Now, nil)
	w.gen = handshake.NewCookieGenerator(gpriv.PublicKey(), clk.Now)
	return w
}

func (w *world) gwInfo() handshake.PeerInfo {
	return handshake.PeerInfo{PublicKey: w.gwPub, ID: "gw", PresharedKey: w.psk}
}

// setPSK configures psk for the pair on both ends (a rotation done on both).
func (w *world) setPSK(psk handshake.PresharedKey) {
	w.psk = psk
	info := w.gwPeers["client"]
	info.PresharedKey = psk
	w.gwPeers["client"] = info
}

// held is what the client keeps: the ticket and the secret of the session that delivered it.
type held struct {
	ticket []byte
	secret [32]byte
	life   time.Duration
}

// full runs a full handshake and the gw issues a ticket over it.
func (w *world) full(t testing.TB) (sc, sg *handshake.Session, h held) {
	t.Helper()
	w.clk.Advance(time.Second)
	w.idx += 2
	in, err := handshake.NewInitiation(w.client, w.gwInfo(), w.idx)
	if err != nil {
		t.Fatal(err)
	}
	msg := in.Message()
	w.gen.AddMACs(msg)
	r, sg, err := w.resp.ConsumeInitiation(msg, w.idx+1)
	if err != nil {
		t.Fatalf("full handshake: %v", err)
	}
	sc, err = in.ConsumeResponse(r)
	if err != nil {
		t.Fatalf("full handshake response: %v", err)
	}
	return sc, sg, w.issue(t, sc, sg, w.clk.Now())
}

// issue delivers a ticket for the session pair (sc, sg) as the daemon would.
func (w *world) issue(t testing.TB, sc, sg *handshake.Session, authTime time.Time) held {
	t.Helper()
	return issueFrom(t, w.ring, w.gwPub, w.gwPeers["client"].PublicKey, sc, sg, authTime)
}

// issueFrom is issue by the responder gwPub with its ring: another gateway
// than w's gw.
func issueFrom(t testing.TB, ring *Ring, gwPub, clientPub handshake.PublicKey, sc, sg *handshake.Session, authTime time.Time) held {
	t.Helper()
	m, err := ring.Issue(sg, gwPub, clientPub, authTime)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if !handshake.IsControlMessage(m) {
		t.Fatal("ticket message is not a control message")
	}
	tk, life, err := handshake.ParseTicketMessage(m)
	if err != nil {
		t.Fatalf("ParseTicketMessage: %v", err)
	}
	return held{ticket: bytes.Clone(tk), secret: sc.ResumptionSecret, life: life}
}

// resumeMsg builds a MAC'd message 5.
func (w *world) resumeMsg(t testing.TB, h held) (*handshake.Resumption, []byte) {
	t.Helper()
	w.idx += 2
	r, err := handshake.NewResumption(w.client, w.gwInfo(), h.ticket, &h.secret, w.idx)
	if err != nil {
		t.Fatal(err)
	}
	msg := r.Message()
	w.gen.AddMACs(msg)
	return r, msg
}

// resume runs a resumption; on success it also issues the next ticket.
func (w *world) resume(t testing.TB, h held) (sc, sg *handshake.Session, next held, err error) {
	t.Helper()
	w.clk.Advance(time.Second)
	r, msg := w.resumeMsg(t, h)
	if !w.checker.CheckMAC1(msg) {
		t.Fatal("CheckMAC1 refuses a genuine message 5")
	}
	resp, sg, st, err := w.resp.ConsumeResumption(msg, w.idx+1, w.ring)
	if err != nil {
		if resp != nil || sg != nil || st != nil {
			t.Fatalf("refusal %v returned a response or a session", err)
		}
		return nil, nil, held{}, err
	}
	sc, err = r.ConsumeResponse(resp)
	if err != nil {
		t.Fatalf("resumption response: %v", err)
	}
	next = w.issue(t, sc, sg, st.AuthTime)
	st.Zero()
	return sc, sg, next, nil
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %v", what, target)
	}
	if !errors.Is(err, target) {
		t.Fatalf("%s: got %v, want %v", what, err, target)
	}
}
