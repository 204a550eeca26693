package tunnel

import (
	"crypto/cipher"
	"fmt"
	"testing"

	"stunnel/handshake"
)

// The hot path without the kernel: sealing and opening one data packet in
// place, per packet and per batch of 128, with each cipher.
// Reproduce: go test -run '^$' -bench 'Seal|Open' -benchmem ./tunnel/

func benchAEAD(b *testing.B, c handshake.Cipher) cipher.AEAD {
	var key [32]byte
	key[0] = 7
	aead, err := handshake.NewAEAD(c, &key)
	if err != nil {
		b.Fatal(err)
	}
	return aead
}

var benchCiphers = []handshake.Cipher{handshake.CipherChaCha20Poly1305, handshake.CipherAES256GCM}

func BenchmarkSealPacket(b *testing.B) {
	for _, c := range benchCiphers {
		for _, size := range []int{64, 1420} {
			b.Run(fmt.Sprintf("%s/%d", c, size), func(b *testing.B) {
				aead := benchAEAD(b, c)
				buf := new([bufferSize]byte)
				var nonce [12]byte
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for i := range b.N {
					writeDataHeader(buf[:], 1, uint64(i))
					putNonce(&nonce, uint64(i))
					aead.Seal(buf[:headerLen], nonce[:], buf[headerLen:headerLen+size], nil)
				}
			})
		}
	}
}

func BenchmarkOpenPacket(b *testing.B) {
	for _, c := range benchCiphers {
		for _, size := range []int{64, 1420} {
			b.Run(fmt.Sprintf("%s/%d", c, size), func(b *testing.B) {
				aead := benchAEAD(b, c)
				sealed := new([bufferSize]byte)
				var nonce [12]byte
				writeDataHeader(sealed[:], 1, 0)
				putNonce(&nonce, 0)
				pkt := aead.Seal(sealed[:headerLen], nonce[:], sealed[headerLen:headerLen+size], nil)
				work := new([bufferSize]byte)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for range b.N {
					copy(work[:], pkt) // opening in place destroys the ciphertext
					putNonce(&nonce, dataCounter(work[:]))
					if _, err := aead.Open(work[headerLen:headerLen], nonce[:], work[headerLen:len(pkt)], nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSealBatch measures what an encrypt worker does with one batch of
// 128 MTU-sized packets, including the header and nonce bookkeeping.
func BenchmarkSealBatch(b *testing.B) {
	const batch, size = 128, 1420
	for _, c := range benchCiphers {
		b.Run(c.String(), func(b *testing.B) {
			aead := benchAEAD(b, c)
			bufs := make([]*[bufferSize]byte, batch)
			packets := make([][]byte, batch)
			for i := range bufs {
				bufs[i] = new([bufferSize]byte)
			}
			var nonce [12]byte
			b.SetBytes(batch * size)
			b.ReportAllocs()
			var counter uint64
			for range b.N {
				for i, buf := range bufs {
					writeDataHeader(buf[:], 1, counter)
					counter++
					packets[i] = buf[:headerLen+size]
				}
				for i, pkt := range packets {
					putNonce(&nonce, dataCounter(pkt))
					packets[i] = aead.Seal(pkt[:headerLen], nonce[:], pkt[headerLen:], nil)
				}
			}
		})
	}
}
