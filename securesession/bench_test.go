package securesession

import (
	"testing"

	"stunnel/rekey"
)

// BenchmarkWrapUnwrap1400 seals and opens one 1400-byte message with
// caller buffers: the hot path of an embedding application.
func BenchmarkWrapUnwrap1400(b *testing.B) {
	p := newPair(b, rekey.DefaultPolicy())
	p.connect(b)
	msg := make([]byte, 1400)
	wire := make([]byte, 0, len(msg)+WrapOverhead)
	plain := make([]byte, 0, len(msg)+WrapOverhead)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		out, err := p.alice.WrapTo(wire, msg)
		if err != nil {
			b.Fatal(err)
		}
		res, err := p.bob.UnwrapTo(plain, out)
		if err != nil || len(res.Data) != len(msg) {
			b.Fatal(err)
		}
	}
}
