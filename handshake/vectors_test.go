package handshake

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// Test vectors (docs/PROTOCOL.md, section 11): fixed keys, ephemerals,
// timestamp, indices and cookie randomness give the exact bytes of every
// message and the derived keys. The test runs the code against them, so the
// page and the code cannot drift apart; STUNNEL_PRINT_VECTORS=1 prints them.

func fill(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// vectorKey is 32 bytes of b as a private key.
func vectorKey(b byte) PrivateKey {
	var k PrivateKey
	copy(k[:], fill(b, 32))
	return k
}

type vectorLookup struct{ info PeerInfo }

func (l vectorLookup) LookupPeer(id []byte) (PeerInfo, error) {
	if string(id) != "site-a" {
		return PeerInfo{}, ErrUnknownPeer
	}
	return l.info, nil
}

// vectorRun performs the fixed handshake and returns every named value.
func vectorRun(t *testing.T, pref CipherPreference) map[string][]byte {
	t.Helper()
	now := func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
	// Timestamps are monotonic per process: other tests may have issued a
	// later one. Start from nothing so message 1 carries exactly now.
	stampClock.mu.Lock()
	stampClock.last = 0
	stampClock.mu.Unlock()
	iPriv, rPriv := vectorKey(0x11), vectorKey(0x22)
	var psk PresharedKey
	copy(psk[:], fill(0x33, 32))
	icfg := &Config{PeerID: []byte("site-a"), PrivateKey: iPriv, Cipher: pref, Now: now,
		Rand: bytes.NewReader(fill(0x44, 32)), AESHardware: func() bool { return true }}
	rcfg := &Config{PeerID: []byte("site-b"), PrivateKey: rPriv, Cipher: pref, Now: now,
		Rand:        bytes.NewReader(fill(0x55, 32)),
		Peers:       vectorLookup{PeerInfo{PublicKey: iPriv.PublicKey(), PresharedKey: psk}},
		AESHardware: func() bool { return true }}
	in, err := NewInitiation(icfg, PeerInfo{PublicKey: rPriv.PublicKey(), PresharedKey: psk, ID: "site-b"}, 0x04030201)
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddrPort("198.18.0.1:51820")
	gen := NewCookieGenerator(rPriv.PublicKey(), now)
	msg1 := in.Message()
	gen.AddMACs(msg1)
	ipub, rpub := iPriv.PublicKey(), rPriv.PublicKey()
	out := map[string][]byte{"initiator static public": ipub[:], "responder static public": rpub[:], "message 1": append([]byte{}, msg1...)}

	// The responder is under load: a cookie reply, then message 1 again
	// with mac2 (the initiator rebuilds nothing: same message, new MACs).
	checker := NewCookieChecker(rPriv.PublicKey(), now, bytes.NewReader(append(fill(0x66, 32), fill(0x77, 24)...)))
	reply, err := checker.CreateReply(msg1, src)
	if err != nil {
		t.Fatal(err)
	}
	out["cookie reply"] = reply
	if err := gen.ConsumeReply(reply); err != nil {
		t.Fatal(err)
	}
	msg1c := append([]byte{}, msg1...)
	gen.AddMACs(msg1c)
	if !checker.CheckMAC2(msg1c, src) {
		t.Fatal("mac2 does not verify")
	}
	out["message 1 with mac2"] = msg1c
	var cookie [cookieLen]byte
	checker.mu.RLock()
	checker.cookieLocked(&cookie, src)
	checker.mu.RUnlock()
	out["cookie"] = cookie[:]

	resp, rs, err := NewResponder(rcfg).ConsumeInitiation(msg1c, 0x0d0c0b0a)
	if err != nil {
		t.Fatal(err)
	}
	NewCookieGenerator(iPriv.PublicKey(), now).AddMACs(resp) // the responder's MACs for the initiator
	out["message 2"] = resp
	is, err := in.ConsumeResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	if is.SendKey != rs.RecvKey || is.RecvKey != rs.SendKey || is.SessionID != rs.SessionID || is.Cipher != rs.Cipher {
		t.Fatal("the two sides derived different sessions")
	}
	out["key_i2r"] = is.SendKey[:]
	out["key_r2i"] = is.RecvKey[:]
	out["session_id"] = is.SessionID[:]
	out["cipher"] = []byte{byte(is.Cipher)}
	aead, err := NewAEAD(is.Cipher, &is.SendKey)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte{MessageTypeData, ProtocolVersion, 0, 0, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 0, 0, 0, 0, 0}
	var nonce [12]byte
	out["data (counter 0, initiator to responder)"] = aead.Seal(data, nonce[:], []byte("stunnel test vector"), nil)
	return out
}

// vectorNames is the order of the page.
var vectorNames = []string{"initiator static public", "responder static public", "message 1", "cookie", "cookie reply",
	"message 1 with mac2", "message 2", "cipher", "key_i2r", "key_r2i", "session_id", "data (counter 0, initiator to responder)"}

func TestVectors(t *testing.T) {
	for _, v := range []struct {
		pref CipherPreference
		want map[string]string
	}{{PreferChaCha20Poly1305, vectorsChaCha}, {PreferAES256GCM, vectorsAES}} {
		got := vectorRun(t, v.pref)
		if os.Getenv("STUNNEL_PRINT_VECTORS") != "" {
			var b strings.Builder
			for _, n := range vectorNames {
				fmt.Fprintf(&b, "%q: %q,\n", n, hex.EncodeToString(got[n]))
			}
			t.Logf("cipher preference %v:\n%s", v.pref, b.String())
		}
		for _, n := range vectorNames {
			want := strings.ReplaceAll(v.want[n], " ", "")
			if hex.EncodeToString(got[n]) != want {
				t.Errorf("%v: %s:\n got %x\nwant %s", v.pref, n, got[n], want)
			}
		}
	}
}

var vectorsChaCha = map[string]string{
	"initiator static public": "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13",
	"responder static public": "0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20",
	"message 1": "" +
		"01010000ff2ee45601ec1b67310c7790404585ae697331eee1c1f8cf2419731c" +
		"1fff3e6b3b6f1324884f7dfcb616f1440bce015ad114bc97a5052c5972a42150" +
		"ca66244ec9ce9fdf26dfb07915b7c4bdecf53f584fd61155f1852673434b113b" +
		"ac947c0f6b4a9d2abc832cf35c2c05df041beb345759cbdc0b814af18781e282" +
		"e9885a9a3438ccb8626545675047ff17fe94bc8e3721daf22ab387fcb6b12364" +
		"80647229c13ec6a5c21219a20aba549201629a0b18acf06aa4bd39589be3a5c3" +
		"e2dd403f4c3400000000000000000000000000000000",
	"cookie": "810c3fdacc0c5f57f9d20f4db8eea5dd",
	"cookie reply": "" +
		"03010000777777777777777777777777777777777777777777777777a0704ff3" +
		"49eafb59f16257ca32901995308a13cd6c24ff9d511250eae76bb049",
	"message 1 with mac2": "" +
		"01010000ff2ee45601ec1b67310c7790404585ae697331eee1c1f8cf2419731c" +
		"1fff3e6b3b6f1324884f7dfcb616f1440bce015ad114bc97a5052c5972a42150" +
		"ca66244ec9ce9fdf26dfb07915b7c4bdecf53f584fd61155f1852673434b113b" +
		"ac947c0f6b4a9d2abc832cf35c2c05df041beb345759cbdc0b814af18781e282" +
		"e9885a9a3438ccb8626545675047ff17fe94bc8e3721daf22ab387fcb6b12364" +
		"80647229c13ec6a5c21219a20aba549201629a0b18acf06aa4bd39589be3a5c3" +
		"e2dd403f4c342f57436e65c7eacecb10de989f52dd5a",
	"message 2": "" +
		"020100000102030438ab664bd86f77d7e66bdd9ae0792913a94fd8b33a126002" +
		"7e4b46c1f4884c67d37f18df6f1035854474009b26d64f5efc6699726b5d9ae9" +
		"7426a7a5d0b02d9794929cfd5bb600000000000000000000000000000000",
	"cipher":     "01",
	"key_i2r":    "7d6254c6219e2cf30a1d76f7c741db7c2c7906f2ffb35dbd042683ed144ef241",
	"key_r2i":    "08d2157224e18bc17c73d8d2cc73d584a5b7c48ffb7fb0c69d2fcdf38cee3943",
	"session_id": "45b8854b1bae332ab50722a5c1f89ea71186570ef9704efc0578cbf4c6e12a96",
	"data (counter 0, initiator to responder)": "" +
		"040100000a0b0c0d000000000000000067008b84dd93738742dfd4dfe68ed822" +
		"6feecf2ca66d86d8b0024a927d7c26ccfadc23",
}
var vectorsAES = map[string]string{
	"initiator static public": "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13",
	"responder static public": "0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20",
	"message 1": "" +
		"01010000ff2ee45601ec1b67310c7790404585ae697331eee1c1f8cf2419731c" +
		"1fff3e6b3b6f1324884f7dfcb616f1440bce015ad114bc97a5052c5972a42150" +
		"ca66244ec9ce9fdf26dfb07915b7c4bdecf53f584fd61155f1852673434b113b" +
		"ac947c0f684a9d2abc832cf35c2c05df041beb345759cbdc0b814af18781e282" +
		"e9885a9a3438ccb8626545675047ff17fe94bc8e3721daf22ab387fcb6b12364" +
		"80647229c13e51a2c211b386a6036386d5762718c443aea41944b7e71650ef26" +
		"9f7f4625192400000000000000000000000000000000",
	"cookie": "810c3fdacc0c5f57f9d20f4db8eea5dd",
	"cookie reply": "" +
		"03010000777777777777777777777777777777777777777777777777a0704ff3" +
		"49eafb59f16257ca32901995ca050a11eafc5064fb69a91569b6117b",
	"message 1 with mac2": "" +
		"01010000ff2ee45601ec1b67310c7790404585ae697331eee1c1f8cf2419731c" +
		"1fff3e6b3b6f1324884f7dfcb616f1440bce015ad114bc97a5052c5972a42150" +
		"ca66244ec9ce9fdf26dfb07915b7c4bdecf53f584fd61155f1852673434b113b" +
		"ac947c0f684a9d2abc832cf35c2c05df041beb345759cbdc0b814af18781e282" +
		"e9885a9a3438ccb8626545675047ff17fe94bc8e3721daf22ab387fcb6b12364" +
		"80647229c13e51a2c211b386a6036386d5762718c443aea41944b7e71650ef26" +
		"9f7f462519248305e680968d41aeda22a0e6b2c6df7d",
	"message 2": "" +
		"020100000102030438ab664bd86f77d7e66bdd9ae0792913a94fd8b33a126002" +
		"7e4b46c1f4884c67d37f18df6c139fcab9acb1469e2a5e0d42b9015ab62f09da" +
		"efb6f7a9846d6bb9b1b63319a69200000000000000000000000000000000",
	"cipher":     "02",
	"key_i2r":    "50ee3ff83449c88ba933fdfb002bc4418298d5a42e3aa6d46446eedb754e385a",
	"key_r2i":    "5a2e461bf8dd1022873a8f994cf294e82ead18f64192b0810ecf647ab6bb68bc",
	"session_id": "35d00825282e0130431cb8745160a36924a9f679bf004935fb5ea4543fbc7dac",
	"data (counter 0, initiator to responder)": "" +
		"040100000a0b0c0d0000000000000000761c3d1095a163bf85f1bfa759e8e2f8" +
		"a38e7c9eb0a7b8671f5ada3e749fc53c32cdc7",
}
