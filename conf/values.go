package conf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// checkIfName applies the kernel's dev_valid_name rules, plus '%', which
// the kernel would replace with a number, so the device would not be the
// one named here.
func checkIfName(s string) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case len(s) > 15:
		return fmt.Errorf("is %d bytes; Linux interface names are at most 15", len(s))
	case s == "." || s == "..":
		return errors.New("is not a usable interface name")
	case s[0] == '.':
		// The kernel takes it, but the control socket NAME.sock would be
		// a hidden file, which tunnel/control refuses to make.
		return errors.New("must not start with '.' (its control socket would be a hidden file)")
	}
	for _, r := range s {
		if r == '/' || r == ':' || r == '%' || unicode.IsSpace(r) || r < 0x20 || r == 0x7f {
			return fmt.Errorf("must not contain %q", r)
		}
		// The kernel tests bytes, and its isspace takes 0xa0 (Latin-1's
		// no-break space) for a space: refused by TUNSETIFF at up.
		if strings.IndexByte(string(r), 0xa0) >= 0 {
			return fmt.Errorf("must not contain %q: its UTF-8 holds byte 0xa0, which the kernel takes for a space", r)
		}
	}
	return nil
}

// checkPeerID: non-empty, at most MaxPeerIDLen bytes (the handshake field),
// printable UTF-8 so logs and `stunnel show` can print it safely.
func checkPeerID(s string) error {
	switch {
	case s == "":
		return errors.New("must not be empty")
	case len(s) > MaxPeerIDLen:
		return fmt.Errorf("is %d bytes; at most %d", len(s), MaxPeerIDLen)
	case !utf8.ValidString(s):
		return errors.New("is not valid UTF-8")
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("contains the unprintable character %U", r)
		}
	}
	return nil
}

// QuoteID is a peer ID as an error or a log line shows it. An ID that
// came from etcd (a key's last part) is chosen by whoever may write there,
// of any length (etcd takes keys of a megabyte) and with any bytes, and an
// error naming it is logged by every host: so only its first MaxPeerIDLen
// bytes are shown, then "..." after the closing quote, and strconv.Quote
// escapes control characters and invalid UTF-8, so the ID can neither
// flood a log nor break or forge its lines. A valid ID shows whole, as %q.
func QuoteID(id string) string {
	cut, more := truncate(id, MaxPeerIDLen)
	if more {
		return strconv.Quote(cut) + "..."
	}
	return strconv.Quote(cut)
}

// EscapeBounded is s escaped as QuoteID escapes an ID, without the quotes,
// and cut to its first max bytes, then "...": for a log attribute (an
// etcd key, whose last part is an ID) that the log handler quotes itself.
func EscapeBounded(s string, max int) string {
	cut, more := truncate(s, max)
	q := strconv.Quote(cut)
	q = q[1 : len(q)-1]
	if more {
		q += "..."
	}
	return q
}

// truncate is s's first max bytes at most, cut before a character that
// would not fit whole, and whether anything was cut.
func truncate(s string, max int) (string, bool) {
	if len(s) <= max {
		return s, false
	}
	n := max
	for n > 0 && !utf8.RuneStart(s[n]) && n > max-utf8.UTFMax {
		n--
	}
	return s[:n], true
}

// parsePrefix reads "addr/bits", requiring the length: a bare address is
// ambiguous (a host or a guess at a subnet), so we ask.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		if a, err := netip.ParseAddr(s); err == nil {
			return netip.Prefix{}, fmt.Errorf("needs a prefix length, e.g. %s/%d", s, a.BitLen())
		}
		return netip.Prefix{}, errors.New("is not an address with prefix length such as 10.77.0.1/24 or fd77::1/64")
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errors.New("is not an address with prefix length such as 10.77.0.1/24 or fd77::1/64")
	}
	if pfx.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("is an IPv4-mapped IPv6 prefix, which never matches: IPv6 packets are looked up among IPv6 prefixes only; write the IPv4 form")
	}
	return pfx, nil
}

// parseNetwork is parsePrefix for a network: no host bits. Its errors, like
// parsePrefix's, follow the key and value they are about.
func parseNetwork(s string) (netip.Prefix, error) {
	pfx, err := parsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if pfx.Masked() != pfx {
		return netip.Prefix{}, fmt.Errorf("has host bits set; write %s", pfx.Masked())
	}
	return pfx, nil
}

// checkHostAddress rejects interface addresses that cannot name this host.
func checkHostAddress(p netip.Prefix) error {
	a := p.Addr()
	switch {
	case a.IsUnspecified():
		return errors.New("is the unspecified address")
	case a.IsMulticast():
		return errors.New("is a multicast address")
	case a.IsLoopback():
		return errors.New("is a loopback address")
	}
	if a.Is4() && p.Bits() <= 30 {
		if a == p.Masked().Addr() {
			return fmt.Errorf("is the network address of %s; give this host an address inside it", p.Masked())
		}
		if a == lastAddr(p) {
			return fmt.Errorf("is the broadcast address of %s; give this host an address inside it", p.Masked())
		}
	}
	return nil
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// checkEndpoint accepts host:port where host is an IPv4 literal, a bracketed
// IPv6 literal or a DNS name (left unresolved: the tunnel resolves it).
func checkEndpoint(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
			return errors.New("IPv6 addresses must be in brackets, e.g. [fd00::2]:51820")
		}
		return errors.New("must be host:port, e.g. 198.18.0.2:51820 or gw.example.net:51820")
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("port %q must be a number from 1 to 65535", port)
	}
	if host == "" {
		return errors.New("needs a host before the port")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.IsUnspecified() || a.IsMulticast() {
			return fmt.Errorf("%s cannot be a peer's address", a)
		}
		if a.Is4In6() {
			return errors.New("is an IPv4-mapped IPv6 address; write the IPv4 form")
		}
		return nil
	}
	if strings.HasPrefix(s, "[") {
		return fmt.Errorf("%q in brackets is not an IPv6 address", host)
	}
	return checkDNSName(host)
}

func checkDNSName(h string) error {
	name := strings.TrimSuffix(h, ".")
	if len(name) > 253 {
		return errors.New("host name is longer than 253 bytes")
	}
	allDigits := true
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("host %q is not a valid IP address or DNS name", h)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host %q is not a valid DNS name: a label starts or ends with '-'", h)
		}
		for _, r := range label {
			switch {
			case r >= '0' && r <= '9':
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '-', r == '_':
				allDigits = false
			default:
				return fmt.Errorf("host %q is not a valid IP address or DNS name", h)
			}
		}
	}
	if allDigits {
		// "10.0.0.256" or "10.1": looks like IPv4 but is not one.
		return fmt.Errorf("host %q is not a valid IPv4 address", h)
	}
	return nil
}
