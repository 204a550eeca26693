package directory

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
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

// A record's ID is its key's last part, chosen by whoever may write to
// etcd: a megabyte ID with a newline in it makes a bounded error, and one
// log line of bounded length; both used to carry the whole ID.
func TestHugeIDBoundedInErrorAndLog(t *testing.T) {
	id := "evil\nlevel=ERROR msg=forged " + strings.Repeat("h", 1<<20)
	good, err := EncodeRecord(testPeer(t, "x", 2))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseRecord(id, good)
	if err == nil {
		t.Fatal("a record with a megabyte ID parsed")
	}
	if msg := err.Error(); len(msg) > 512 || strings.Contains(msg, "\n") || !strings.Contains(msg, `"evil\nlevel=ERROR`) {
		t.Fatalf("error for a megabyte ID (%d bytes): %.600q", len(msg), msg)
	}
	if err := CheckRecordID(id + "/x"); err == nil || len(err.Error()) > 512 {
		t.Fatalf("CheckRecordID of a megabyte ID with a \"/\": %.600v", err)
	}

	var logs bytes.Buffer
	d := newDirectory(Options{Prefix: "/st/", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	d.mu.Lock()
	d.putLocked(PeerKey("/st/", id), good, 7)
	d.putLocked(PeerKey("/st/", id)+"/deeper", good, 8) // another fleet's, or a record at a wrong key
	d.putLocked(EndpointKey("/st/", id), []byte("{"), 9)
	d.mu.Unlock()
	out := logs.String()
	if lines := strings.Count(out, "\n"); lines != 3 || len(out) > 3*1024 {
		t.Fatalf("3 malformed keys with a megabyte ID logged %d lines, %d bytes, want 3 lines of at most 1 KiB:\n%.3000s", lines, len(out), out)
	}
	for _, line := range strings.SplitAfter(strings.TrimSuffix(out, "\n"), "\n") {
		if !strings.Contains(line, "directory: skipping malformed") || !strings.Contains(line, `/st/`) {
			t.Errorf("log line %q does not name the malformed key", line)
		}
	}
	if st := d.State(); st.Malformed != 3 {
		t.Fatalf("state %+v, want the 3 keys malformed", st)
	}
}
