package pkcs11key

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	good := []struct {
		in   string
		want URI
	}{
		{"pkcs11:token=gw;object=site-a?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/stunnel/pin",
			URI{Token: "gw", Object: "site-a", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PinFile: "/etc/stunnel/pin"}},
		{"pkcs11:token=My%20Token;id=%01%02%ff;type=private?module-path=/m.so&pin-source=file:///etc/pin",
			URI{Token: "My Token", ID: []byte{1, 2, 0xff}, ModulePath: "/m.so", PinFile: "/etc/pin"}},
		{"pkcs11:serial=abc;manufacturer=SoftHSM%20project;model=SoftHSM%20v2;object=k?module-path=/m.so&pin-source=file:pin",
			URI{Serial: "abc", Manufacturer: "SoftHSM project", Model: "SoftHSM v2", Object: "k", ModulePath: "/m.so", PinFile: "pin"}},
		{"pkcs11:token=t;object=a%3Bb%3Fc?module-path=/m.so",
			URI{Token: "t", Object: "a;b?c", ModulePath: "/m.so"}},
	}
	for _, c := range good {
		u, err := ParseURI(c.in)
		if err != nil {
			t.Errorf("ParseURI(%q): %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(*u, c.want) {
			t.Errorf("ParseURI(%q) = %+v, want %+v", c.in, *u, c.want)
		}
		back, err := ParseURI(u.String())
		if err != nil || !reflect.DeepEqual(back, u) {
			t.Errorf("String() %q does not parse back to the same URI: %+v %v", u.String(), back, err)
		}
	}

	bad := []struct{ in, want string }{
		{"pkcs12:token=a", `must start with "pkcs11:"`},
		{"pkcs11:object=k?module-path=/m.so", "names no token"},
		{"pkcs11:token=t?module-path=/m.so", "names no key"},
		{"pkcs11:token=t;object=k", "no module"},
		{"pkcs11:token=t;object=k?module-path=/m.so&pin-value=1234", "pin-value puts the PIN in the config"},
		{"pkcs11:token=t;object=k;token=u?module-path=/m.so", "token is given twice"},
		{"pkcs11:token=t;object=k;slot-id=1?module-path=/m.so", "unsupported path attribute"},
		{"pkcs11:token=t;object=k;type=cert?module-path=/m.so", "private key"},
		{"pkcs11:token=t;object=k%4?module-path=/m.so", "percent-encoding"},
		{"pkcs11:token=t;object=k%zz?module-path=/m.so", "percent-encoding"},
		{"pkcs11:token=t;object=k%0a?module-path=/m.so", "control character"},
		{"pkcs11:token=t;object?module-path=/m.so", "not name=value"},
		{"pkcs11:token=t;object=k?module-name=softhsm2", "module-name is not supported"},
		{"pkcs11:token=t;object=k?module-path=/m.so&pin-source=|/bin/echo", "pin-source must be file:PATH"},
		{"pkcs11:token=t;object=k?module-path=/m.so&max-sessions=2", "unsupported query attribute"},
		{"pkcs11:token=" + strings.Repeat("a", maxURILen), "longer than"},
		{"pkcs11:token=" + strings.Repeat("%3D", maxValueLen/2) + ";object=" + strings.Repeat("b", maxValueLen/2+1) + "?module-path=/m.so", "values are longer than 4096 bytes together"},
	}
	for _, c := range bad {
		_, err := ParseURI(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseURI(%q): %v, want an error containing %q", c.in, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "1234") {
			t.Errorf("ParseURI(%q): the error shows the PIN: %v", c.in, err)
		}
	}
}

// FuzzParseURI: no panic; whatever parses prints back to a URI that parses
// to the same value; a URI with a pin-value never parses and its error
// never shows the value.
func FuzzParseURI(f *testing.F) {
	f.Add("pkcs11:token=gw;object=site-a?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/stunnel/pin")
	f.Add("pkcs11:token=My%20Token;id=%01%02%ff;type=private?module-path=/m.so&pin-source=file:///etc/pin")
	f.Add("pkcs11:token=t;object=k?module-path=/m.so&pin-value=SECRETPIN")
	f.Add("pkcs11:serial=%;object=?")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			if strings.Count(s, "SECRETPIN") == 1 && strings.Contains(s, "pin-value=SECRETPIN") && strings.Contains(err.Error(), "SECRETPIN") {
				t.Fatalf("error shows the pin-value: %v", err)
			}
			return
		}
		if hasPinValue(s) {
			t.Fatalf("a URI with pin-value parsed: %q", s)
		}
		back, err := ParseURI(u.String())
		if err != nil {
			t.Fatalf("String() %q of %q does not parse: %v", u.String(), s, err)
		}
		if !reflect.DeepEqual(back, u) && !(len(back.ID) == 0 && len(u.ID) == 0) {
			t.Fatalf("round trip of %q: %+v, want %+v", s, back, u)
		}
		if back.String() != u.String() || !bytes.Equal(back.ID, u.ID) {
			t.Fatalf("String() is not canonical for %q", s)
		}
	})
}

// TestLongestURIPrintsBack: values at the limit that all need escaping
// print three times longer than they are; that must still parse.
func TestLongestURIPrintsBack(t *testing.T) {
	u := &URI{Token: strings.Repeat("=", maxValueLen-len("k")-len("/m.so")), Object: "k", ModulePath: "/m.so"}
	s := u.String()
	if len(s) <= maxValueLen {
		t.Fatalf("the test's URI prints in %d bytes; it should need more than %d", len(s), maxValueLen)
	}
	back, err := ParseURI(s)
	if err != nil {
		t.Fatalf("ParseURI(String()) of values %d bytes long: %v", maxValueLen, err)
	}
	if !reflect.DeepEqual(back, u) {
		t.Fatalf("round trip: %+v, want %+v", back, u)
	}
	u.Object = "kk" // one byte over
	if _, err := ParseURI(u.String()); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("values one byte over the limit: %v, want a length error", err)
	}
}

// hasPinValue reports whether s has a query attribute named pin-value (not
// merely the text "pin-value=" inside another attribute's value, such as
// module-path=pin-value=, which FuzzParseURI once took for one).
func hasPinValue(s string) bool {
	_, query, ok := strings.Cut(s, "?")
	if !ok {
		return false
	}
	for _, attr := range strings.Split(query, "&") {
		if name, _, _ := strings.Cut(attr, "="); name == "pin-value" {
			return true
		}
	}
	return false
}

// A query attribute stunnel does not know is refused by its name alone:
// its value may be a secret under a misspelt name (a PIN), so not even a
// bad percent-encoding in it is quoted.
func TestUnknownQueryAttributeValueNeverQuoted(t *testing.T) {
	for _, uri := range []string{
		"pkcs11:token=gw;object=k?module-path=/m.so&pin-valeu=12%g4",
		"pkcs11:token=gw;object=k?pinvalue=9%z9&module-path=/m.so",
	} {
		_, err := ParseURI(uri)
		if err == nil || !strings.Contains(err.Error(), "unsupported query attribute") {
			t.Fatalf("ParseURI(%q): %v, want the attribute refused by name", uri, err)
		}
		for _, part := range []string{"%g4", "%z9", "g4", "z9"} {
			if strings.Contains(err.Error(), part) {
				t.Errorf("ParseURI(%q): error %q quotes part of the value (%q)", uri, err, part)
			}
		}
	}
}
