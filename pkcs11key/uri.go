// Package pkcs11key keeps stunnel's static X25519 key in a PKCS#11 token
// (an HSM, a smart card, SoftHSM2): the key is made in the token (or
// imported into it, with a warning: origin.go), sensitive and
// non-extractable, and every operation with it is a token operation
// (C_DeriveKey with CKM_ECDH1_DERIVE), made on the key's own worker and
// waited for with a deadline (worker.go). The process never holds the
// private key.
//
// The token code needs cgo (github.com/miekg/pkcs11 loads the module with
// dlopen). A build without cgo still parses pkcs11: URIs, so `stunnel check`
// validates them, and Open says that this build has no PKCS#11 support.
package pkcs11key

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// URI is the part of an RFC 7512 PKCS#11 URI that names stunnel's key: the
// token, the key object, the module to load and where the PIN comes from.
type URI struct {
	// Token attributes: the token is the one whose every given attribute matches.
	Token, Manufacturer, Serial, Model string
	// Object is the key's CKA_LABEL, ID its CKA_ID; at least one is set.
	Object string
	ID     []byte
	// ModulePath is the PKCS#11 module (a shared library) to load.
	ModulePath string
	// PinFile is the path of pin-source=file:PATH; "" when absent. A relative
	// path is left as written (conf resolves it against the config's directory).
	PinFile string
}

// path attributes of RFC 7512 that stunnel accepts; the rest are refused
// rather than ignored, so a URI never names something other than it seems.
var pathAttrs = map[string]bool{"token": true, "manufacturer": true, "serial": true, "model": true, "object": true, "id": true, "type": true}

// maxValueLen bounds a URI's attribute values, decoded, together: a config
// value, not a document. maxURILen bounds what ParseURI reads: those values
// percent-encoded throughout (3 bytes each, as String writes an id) and the
// attribute names, so that whatever parses prints back (String) to a URI
// that parses. (A single bound on the raw text let a URI of 4,096 bytes
// print as one three times longer, which it then refused; found by
// FuzzParseURI.)
const (
	maxValueLen = 4096
	maxURILen   = 3*maxValueLen + 256
)

// ParseURI parses s, which starts with "pkcs11:". Errors say which part is
// wrong and never contain the URI (it could carry a PIN in pin-value).
func ParseURI(s string) (*URI, error) {
	if len(s) > maxURILen {
		return nil, fmt.Errorf("pkcs11 URI is longer than %d bytes", maxURILen)
	}
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return nil, errors.New(`pkcs11 URI must start with "pkcs11:"`)
	}
	path, query, _ := strings.Cut(rest, "?")
	u := &URI{}
	seen := map[string]bool{}
	values := 0 // decoded bytes of every value so far
	count := func(v string) error {
		if values += len(v); values > maxValueLen {
			return fmt.Errorf("pkcs11 URI: its values are longer than %d bytes together", maxValueLen)
		}
		return nil
	}
	if path != "" {
		for i, attr := range strings.Split(path, ";") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok || name == "" {
				// Not echoed: a mistyped attribute may hold a PIN.
				return nil, fmt.Errorf("pkcs11 URI: path attribute %d is not name=value", i+1)
			}
			if !pathAttrs[name] {
				return nil, fmt.Errorf("pkcs11 URI: unsupported path attribute %q (stunnel knows token, manufacturer, serial, model, object, id, type)", clip(name))
			}
			if seen[name] {
				return nil, fmt.Errorf("pkcs11 URI: %s is given twice", name)
			}
			seen[name] = true
			v, err := unescape(raw)
			if err != nil {
				return nil, fmt.Errorf("pkcs11 URI: %s: %v", name, err)
			}
			if err := count(v); err != nil {
				return nil, err
			}
			if name != "id" {
				if err := checkText(v); err != nil {
					return nil, fmt.Errorf("pkcs11 URI: %s: %v", name, err)
				}
			}
			switch name {
			case "token":
				u.Token = v
			case "manufacturer":
				u.Manufacturer = v
			case "serial":
				u.Serial = v
			case "model":
				u.Model = v
			case "object":
				u.Object = v
			case "id":
				u.ID = []byte(v)
			case "type":
				if v != "private" {
					return nil, fmt.Errorf("pkcs11 URI: type=%q; stunnel's key is a private key (type=private, or leave type out)", clip(v))
				}
			}
		}
	}
	if query != "" {
		for i, attr := range strings.Split(query, "&") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok || name == "" {
				return nil, fmt.Errorf("pkcs11 URI: query attribute %d is not name=value", i+1)
			}
			if name == "pin-value" {
				// Not even its length is echoed: it is a secret.
				return nil, errors.New("pkcs11 URI: pin-value puts the PIN in the config; use pin-source=file:PATH (a file of mode 0600) or [interface] pkcs11_pin_file")
			}
			if seen[name] {
				return nil, fmt.Errorf("pkcs11 URI: %s is given twice", name)
			}
			seen[name] = true
			// Refused before its value is decoded: a misspelt attribute
			// may hold a secret (a PIN under another name), and a bad
			// percent-encoding's error would quote part of it.
			switch name {
			case "module-path", "pin-source":
			case "module-name":
				return nil, errors.New("pkcs11 URI: module-name is not supported; give module-path=/path/to/module.so")
			default:
				return nil, fmt.Errorf("pkcs11 URI: unsupported query attribute %q (stunnel knows module-path and pin-source)", clip(name))
			}
			v, err := unescape(raw)
			if err == nil {
				err = checkText(v)
			}
			if err != nil {
				return nil, fmt.Errorf("pkcs11 URI: %s: %v", name, err)
			}
			if err := count(v); err != nil {
				return nil, err
			}
			switch name {
			case "module-path":
				u.ModulePath = v
			case "pin-source":
				p, ok := strings.CutPrefix(v, "file:")
				if !ok || p == "" {
					return nil, errors.New("pkcs11 URI: pin-source must be file:PATH (stunnel reads the PIN from that file)")
				}
				// file:///etc/pin and file:/etc/pin are the same file.
				if strings.HasPrefix(p, "///") {
					p = p[2:]
				}
				u.PinFile = p
			}
		}
	}
	switch {
	case u.Token == "" && u.Serial == "":
		return nil, errors.New("pkcs11 URI names no token: add token=LABEL (or serial=...)")
	case u.Object == "" && len(u.ID) == 0:
		return nil, errors.New("pkcs11 URI names no key: add object=LABEL (or id=...)")
	case u.ModulePath == "":
		return nil, errors.New("pkcs11 URI has no module: add ?module-path=/path/to/module.so (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)")
	}
	return u, nil
}

// KeyString is String without the PIN source: what names the key itself
// (module and path attributes). A reload compares it, and the PIN file
// apart, so that moving the PIN file between pin-source and
// pkcs11_pin_file, or naming it by another path, is not taken for another
// key.
func (u *URI) KeyString() string {
	c := *u
	c.PinFile = ""
	return c.String()
}

// SameKey reports whether uri (a URI's String, as a running Key gives it)
// names the key that u names (KeyString).
func SameKey(uri string, u *URI) bool {
	v, err := ParseURI(uri)
	return err == nil && v.KeyString() == u.KeyString()
}

// String is the URI in a canonical form (fixed attribute order, everything
// outside the unreserved set percent-encoded). It holds no secret.
func (u *URI) String() string {
	var path []string
	add := func(name, v string) {
		if v != "" {
			path = append(path, name+"="+escape(v))
		}
	}
	add("token", u.Token)
	add("manufacturer", u.Manufacturer)
	add("serial", u.Serial)
	add("model", u.Model)
	add("object", u.Object)
	if len(u.ID) > 0 {
		var b strings.Builder
		for _, c := range u.ID {
			b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
		}
		path = append(path, "id="+b.String())
	}
	s := "pkcs11:" + strings.Join(path, ";")
	var q []string
	if u.ModulePath != "" {
		q = append(q, "module-path="+escape(u.ModulePath))
	}
	if u.PinFile != "" {
		q = append(q, "pin-source="+escape("file:"+u.PinFile))
	}
	if len(q) > 0 {
		s += "?" + strings.Join(q, "&")
	}
	return s
}

// unescape decodes RFC 3986 percent-encoding; a bare '%' is an error.
func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("truncated percent-encoding")
		}
		v, err := hex.DecodeString(s[i+1 : i+3])
		if err != nil {
			return "", fmt.Errorf("bad percent-encoding %q", s[i:i+3])
		}
		b = append(b, v[0])
		i += 2
	}
	return string(b), nil
}

// checkText refuses control characters in textual attributes: they have no
// place in a label or a path and would garble a log line.
func checkText(s string) error {
	for _, c := range []byte(s) {
		if c < 0x20 || c == 0x7f {
			return errors.New("contains a control character")
		}
	}
	return nil
}

func escape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if isUnreserved(c) || c == '/' || c == ':' || c == '@' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// clip bounds untrusted text quoted in an error.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
