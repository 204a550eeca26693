package tickets

import (
	"testing"
	"time"

	"stunnel/handshake"
	"stunnel/internal/cputimer"
)

// Handshakes per second per core, full (Noise IK, messages 1/2) against
// resumed (NNpsk0 with a ticket, messages 5/6), each side timed on its own:
// the other side's work runs in batches of benchBatch with the timer stopped.
// The responder side includes mac1, the handshake and sealing the next ticket
// (what it does per handshake); for a resumption also opening and spending the
// presented ticket. All four in one run:
//
//	go test -run XXX -bench Handshake ./tickets/
const benchBatch = 64

func BenchmarkFullHandshakeInitiator(b *testing.B) {
	w := newWorld(b)
	ct := cputimer.New(b)
	ct.Start()
	for done := 0; done < b.N; {
		n := min(benchBatch, b.N-done)
		ins := make([]*handshake.Initiation, n)
		msgs := make([][]byte, n)
		for i := range ins {
			in, err := handshake.NewInitiation(w.client, w.gwInfo(), uint32(i))
			if err != nil {
				b.Fatal(err)
			}
			ins[i], msgs[i] = in, in.Message()
			w.gen.AddMACs(msgs[i])
		}
		ct.Stop()
		for i := range msgs {
			w.clk.Advance(time.Second)
			if msgs[i], _, _ = w.resp.ConsumeInitiation(msgs[i], 1); msgs[i] == nil {
				b.Fatal("responder refused")
			}
		}
		ct.Start()
		for i := range msgs {
			if _, err := ins[i].ConsumeResponse(msgs[i]); err != nil {
				b.Fatal(err)
			}
		}
		done += n
	}
	ct.Report("handshakes")
}

func BenchmarkFullHandshakeResponder(b *testing.B) {
	w := newWorld(b)
	static := w.gwPeers["client"].PublicKey
	ct := cputimer.New(b)
	ct.Start()
	for done := 0; done < b.N; {
		n := min(benchBatch, b.N-done)
		ct.Stop()
		msgs := make([][]byte, n)
		for i := range msgs {
			in, err := handshake.NewInitiation(w.client, w.gwInfo(), uint32(i))
			if err != nil {
				b.Fatal(err)
			}
			msgs[i] = in.Message()
			w.gen.AddMACs(msgs[i])
		}
		ct.Start()
		for _, msg := range msgs {
			w.clk.Advance(time.Second)
			if !w.checker.CheckMAC1(msg) {
				b.Fatal("mac1")
			}
			_, s, err := w.resp.ConsumeInitiation(msg, 2)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := w.ring.Issue(s, w.gwPub, static, w.clk.Now()); err != nil {
				b.Fatal(err)
			}
		}
		done += n
	}
	ct.Report("handshakes")
}

// tickets issues n tickets for one full session, as n handshakes would.
func (w *world) tickets(b *testing.B, n int) []held {
	sc, sg, _ := w.full(b)
	out := make([]held, n)
	for i := range out {
		out[i] = w.issue(b, sc, sg, w.clk.Now())
	}
	return out
}

func BenchmarkResumedHandshakeInitiator(b *testing.B) {
	w := newWorld(b)
	ct := cputimer.New(b)
	ct.Start()
	for done := 0; done < b.N; {
		n := min(benchBatch, b.N-done)
		ct.Stop()
		hs := w.tickets(b, n)
		ct.Start()
		rs := make([]*handshake.Resumption, n)
		msgs := make([][]byte, n)
		for i := range rs {
			r, err := handshake.NewResumption(w.client, w.gwInfo(), hs[i].ticket, &hs[i].secret, uint32(i))
			if err != nil {
				b.Fatal(err)
			}
			rs[i], msgs[i] = r, r.Message()
			w.gen.AddMACs(msgs[i])
		}
		ct.Stop()
		for i := range msgs {
			w.clk.Advance(time.Second)
			resp, _, _, err := w.resp.ConsumeResumption(msgs[i], 1, w.ring)
			if err != nil {
				b.Fatal(err)
			}
			msgs[i] = resp
		}
		ct.Start()
		for i := range msgs {
			if _, err := rs[i].ConsumeResponse(msgs[i]); err != nil {
				b.Fatal(err)
			}
		}
		done += n
	}
	ct.Report("handshakes")
}

func BenchmarkResumedHandshakeResponder(b *testing.B) {
	w := newWorld(b)
	static := w.gwPeers["client"].PublicKey
	ct := cputimer.New(b)
	ct.Start()
	for done := 0; done < b.N; {
		n := min(benchBatch, b.N-done)
		ct.Stop()
		hs := w.tickets(b, n)
		msgs := make([][]byte, n)
		for i := range msgs {
			r, err := handshake.NewResumption(w.client, w.gwInfo(), hs[i].ticket, &hs[i].secret, uint32(i))
			if err != nil {
				b.Fatal(err)
			}
			msgs[i] = r.Message()
			w.gen.AddMACs(msgs[i])
		}
		ct.Start()
		for _, msg := range msgs {
			w.clk.Advance(time.Second)
			if !w.checker.CheckMAC1(msg) {
				b.Fatal("mac1")
			}
			_, s, st, err := w.resp.ConsumeResumption(msg, 2, w.ring)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := w.ring.Issue(s, w.gwPub, static, st.AuthTime); err != nil {
				b.Fatal(err)
			}
		}
		done += n
	}
	ct.Report("handshakes")
}
