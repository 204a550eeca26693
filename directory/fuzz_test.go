package directory

import (
	"bytes"
	"encoding/json"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// FuzzOpenCache: the disk cache is read back at start. Raw bytes never
// open (forging needs the key); bytes sealed under the right key (reaching
// the decoder behind the AEAD) open exactly when they are a snapshot of
// this prefix, and a refusal never comes with a half-read snapshot.
func FuzzOpenCache(f *testing.F) {
	key := bytes.Repeat([]byte{3}, chacha20poly1305.KeySize)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(&snapshot{Prefix: "/st/", Revision: 7, Records: map[string][]byte{"b": []byte(`{"version":1}`)}})
	f.Add(append(append([]byte{}, cacheMagic...), make([]byte, 60)...), false)
	f.Add([]byte("x"), false)
	f.Add(good, true)
	f.Add([]byte(`{"prefix":"/other/"}`), true)
	f.Add([]byte(`{"prefix":"/st/","records":{"b":"not base64"}}`), true)
	f.Fuzz(func(t *testing.T, data []byte, seal bool) {
		in := data
		if seal {
			in = append(append([]byte{}, cacheMagic...), make([]byte, aead.NonceSize())...)
			in = aead.Seal(in, in[len(cacheMagic):], data, cacheMagic)
		}
		snap, err := openCache(in, key, "/st/")
		if (err == nil) == (snap == nil) {
			t.Fatalf("snapshot %v with error %v", snap != nil, err)
		}
		if !seal {
			if err == nil {
				t.Fatal("bytes never sealed opened")
			}
			return
		}
		var want snapshot
		wantOK := len(in) <= cacheLimit("/st/") && json.Unmarshal(data, &want) == nil && want.Prefix == "/st/"
		if wantOK != (err == nil) {
			t.Fatalf("sealed %q: %v, want it opened: %v", data, err, wantOK)
		}
		if err == nil && (snap.Prefix != "/st/" || snap.Revision != want.Revision || len(snap.Records) != len(want.Records)) {
			t.Fatalf("opened as %+v, not as written", snap)
		}
	})
}
