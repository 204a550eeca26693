package directory

import (
	"fmt"
	"testing"

	"stunnel/conf"
)

func FuzzParseRecord(f *testing.F) {
	b, _ := EncodeRecord(testPeer(f, "x", 1))
	f.Add(b)
	f.Add([]byte(`{"version":1,"public_key":"","allowed_ips":["::/0"],"endpoint":"[::1]:1","persistent_keepalive":"2s"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseRecord("id", data)
		if err != nil {
			return
		}
		if err := conf.ValidatePeer(p); err != nil {
			t.Fatalf("ParseRecord accepted an invalid peer: %v", err)
		}
		again, err := EncodeRecord(p)
		if err != nil {
			t.Fatal(err)
		}
		if q, err := ParseRecord("id", again); err != nil || q.PublicKey != p.PublicKey || len(q.AllowedIPs) != len(p.AllowedIPs) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzParseEndpointRecord(f *testing.F) {
	f.Add([]byte(`{"version":1,"endpoint":"198.18.0.2:51820"}`))
	f.Add([]byte(`{"version":1,"endpoint":"[fd00::1]:1"} x`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ep, err := ParseEndpointRecord(data)
		if err == nil && conf.CheckEndpoint(ep) != nil {
			t.Fatalf("accepted an invalid endpoint %q", ep)
		}
	})
}

// Field names are exact and appear once: encoding/json alone would read a
// case variant or a repeat as the field, so hosts would use a key or
// prefixes other than those a reader of the record sees first.
func TestRecordFieldNamesExact(t *testing.T) {
	a, b := testPeer(t, "x", 1).PublicKey, testPeer(t, "x", 2).PublicKey
	for _, v := range []string{
		fmt.Sprintf(`{"version":1,"public_key":%q,"PUBLIC_KEY":%q,"allowed_ips":["10.77.0.1/32"]}`, a, b),
		fmt.Sprintf(`{"version":1,"public_key":%q,"public_key":%q,"allowed_ips":["10.77.0.1/32"]}`, a, b),
		fmt.Sprintf(`{"version":1,"public_key":%q,"allowed_ips":["10.77.0.1/32"],"Allowed_IPs":["10.0.0.0/8"]}`, a),
		fmt.Sprintf(`{"Version":1,"public_key":%q,"allowed_ips":["10.77.0.1/32"]}`, a),
	} {
		if p, err := ParseRecord("x", []byte(v)); err == nil {
			t.Errorf("ParseRecord(%s) = key %s, %v; want malformed", v, p.PublicKey, p.AllowedIPs)
		}
	}
	if _, err := ParseRecord("x", []byte(fmt.Sprintf(`{"version":1,"public_key":%q,"allowed_ips":["10.77.0.1/32"],"endpoint":"198.18.0.1:1","persistent_keepalive":"25s"}`, a))); err != nil {
		t.Fatalf("a record with every field: %v", err)
	}
	for _, v := range []string{
		`{"version":1,"endpoint":"198.18.0.1:1","Endpoint":"198.18.0.2:1"}`,
		`{"version":1,"endpoint":"198.18.0.1:1","endpoint":"198.18.0.2:1"}`,
	} {
		if ep, err := ParseEndpointRecord([]byte(v)); err == nil {
			t.Errorf("ParseEndpointRecord(%s) = %s; want malformed", v, ep)
		}
	}
}
