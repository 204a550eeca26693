package conf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// directoryKeys are the keys of [directory]: where the etcd peer directory
// lives and how to reach it.
var directoryKeys = []string{"etcd_endpoints", "prefix", "ca_file", "cert_file", "key_file", "cache_file", "advertise_endpoint", "records_within"}

// DefaultDirectoryCacheDir holds each interface's sealed copy of the
// directory (NAME.directory) when cache_file is not given.
const DefaultDirectoryCacheDir = "/var/lib/stunnel"

// Directory is the [directory] table: peers looked up by ID in etcd as well
// as in [[peer]]. Paths are absolute (relative ones are resolved against the
// config file's directory).
type Directory struct {
	Endpoints []string // etcd client URLs, http:// only on loopback
	Prefix    string   // key prefix, ends in "/"; one key per peer ID below it
	CAFile    string   // "" = system roots
	CertFile  string   // client certificate; with KeyFile or neither
	KeyFile   string
	CacheFile string // sealed last-known directory, used at start when etcd is down
	// AdvertiseEndpoint, when set, is published under a lease at
	// PREFIX endpoints/PEER_ID for peers whose record has no endpoint.
	AdvertiseEndpoint string
	// RecordsWithin, when set, are the prefixes a record's allowed_ips
	// must each lie inside: this host's opt-in to what etcd may route
	// here, as Tailscale's --accept-routes. None: any.
	RecordsWithin []netip.Prefix
	Line          int // line of the [directory] header
}

func (p *parser) directory(t table, in *Interface) *Directory {
	d := &Directory{Line: t.line}
	if list, line, ok := p.strList(t, "etcd_endpoints", "https://198.18.0.10:2379"); ok {
		if len(list) == 0 {
			p.addf(line, "etcd_endpoints is empty; give at least one etcd client URL")
		}
		for _, s := range list {
			if err := CheckEtcdEndpoint(s); err != nil {
				p.addf(line, "etcd_endpoints %q %v", s, err)
				continue
			}
			d.Endpoints = append(d.Endpoints, s)
		}
		if err := CheckEtcdSchemes(d.Endpoints); err != nil {
			p.addf(line, "etcd_endpoints %v", err)
		}
	} else if _, present := t.m["etcd_endpoints"]; !present {
		p.addf(t.line, "[directory] needs etcd_endpoints, e.g. [\"https://198.18.0.10:2379\"]")
	}
	if s, line, ok := p.str(t, "prefix"); ok {
		if err := CheckDirectoryPrefix(s); err != nil {
			p.addf(line, "prefix %q %v", s, err)
		}
		d.Prefix = s
	} else if _, present := t.m["prefix"]; !present {
		p.addf(t.line, "[directory] needs prefix, the etcd key prefix of this overlay, e.g. \"/stunnel/overlay1/\"")
	}
	// file returns a key's path, whether it is usable, and its line.
	file := func(key string, secret bool) (string, bool, int) {
		name, line, ok := p.str(t, key)
		if !ok {
			return "", false, 0
		}
		path := p.path(name)
		fi, err := os.Stat(path)
		switch {
		case err != nil:
			p.addf(line, "%s: cannot use %s: %v", key, path, unwrapPathError(err))
		case !fi.Mode().IsRegular():
			p.addf(line, "%s: %s is not a regular file", key, path)
		case secret && fi.Mode().Perm()&0o044 != 0:
			p.addf(line, "%s: %s is readable by group or others (mode %04o); run: chmod 600 %s", key, path, fi.Mode().Perm(), path)
		default:
			return path, true, line
		}
		return path, false, line
	}
	var caOK, certOK, keyOK bool
	var caLine, certLine int
	d.CAFile, caOK, caLine = file("ca_file", false)
	d.CertFile, certOK, certLine = file("cert_file", false)
	d.KeyFile, keyOK, _ = file("key_file", true)
	if (d.CertFile == "") != (d.KeyFile == "") {
		p.addf(t.line, "[directory] needs cert_file and key_file together (a client certificate and its key), or neither")
	}
	// Their contents are checked here too, not first at start (directory
	// TLSConfig loads them the same way), so check and up agree: a file
	// that holds no certificate is a config error (exit 2). The TLS
	// library's errors name what is missing, never a key's bytes.
	if caOK {
		if pem, err := os.ReadFile(d.CAFile); err != nil {
			p.addf(caLine, "ca_file: cannot read %s: %v", d.CAFile, unwrapPathError(err))
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			p.addf(caLine, "ca_file: %s holds no PEM certificate", d.CAFile)
		}
	}
	if certOK && keyOK {
		if _, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile); err != nil {
			p.addf(certLine, "cert_file %s and key_file %s are not a certificate and its key: %v", d.CertFile, d.KeyFile, err)
		}
	}
	if s, line, ok := p.str(t, "advertise_endpoint"); ok {
		if err := checkEndpoint(s); err != nil {
			p.addf(line, "advertise_endpoint %q: %v", s, err)
		}
		if strings.Contains(in.PeerID, "/") {
			// Published at PREFIX endpoints/PEER_ID, whose last part is
			// the ID: a deeper key is no one's endpoint (package directory).
			p.addf(line, "advertise_endpoint needs a peer_id without \"/\" (it is published at PREFIX endpoints/PEER_ID, and an ID there is the key's last part); [interface] peer_id is %q", in.PeerID)
		}
		d.AdvertiseEndpoint = s
	}
	if list, line, ok := p.strList(t, "records_within", "198.19.0.0/16"); ok {
		if len(list) == 0 {
			p.addf(line, "records_within is empty, so no record could be used; leave it out to accept any allowed_ips")
		}
		for _, s := range list {
			pfx, err := parseNetwork(s)
			if err != nil {
				p.addf(line, "records_within %q %v", s, err)
				continue
			}
			d.RecordsWithin = append(d.RecordsWithin, pfx)
		}
	}
	if name, line, ok := p.str(t, "cache_file"); ok {
		if name == "" {
			p.addf(line, "cache_file is empty; leave it out for %s/NAME.directory", DefaultDirectoryCacheDir)
		}
		d.CacheFile = p.path(name)
		p.cacheLine = line
	} else if in.Name != "" {
		d.CacheFile = filepath.Join(DefaultDirectoryCacheDir, in.Name+".directory")
	}
	return d
}

// CheckEtcdEndpoint accepts an etcd client URL: https://host:port, or
// http://host:port only when host is a loopback address, because plain
// HTTP would show the directory to, and let it be rewritten by, anyone on
// the path.
func CheckEtcdEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return errors.New("is not a URL such as https://198.18.0.10:2379")
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must be scheme://host:port only, without user, path or query")
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || port == "" || host == "" {
		return errors.New("needs a host and a port, e.g. https://198.18.0.10:2379")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("port %q must be a number from 1 to 65535", port)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if host == "localhost" {
			return nil
		}
		if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
			return nil
		}
		return errors.New("uses plain http to a non-loopback host; use https with ca_file (and cert_file/key_file)")
	}
	return fmt.Errorf("has scheme %q; use https (http only on loopback)", u.Scheme)
}

// CheckEtcdSchemes refuses http:// beside https://: etcd's client speaks
// the first endpoint's scheme to every member (clientv3
// dialWithBalancer), so a loopback http:// listed first would send the
// directory in clear to the https:// members across the network, where
// anyone on the path could rewrite it.
func CheckEtcdSchemes(endpoints []string) error {
	var plain, secure string
	for _, e := range endpoints {
		if u, err := url.Parse(e); err == nil && u.Scheme == "http" {
			plain = e
		} else if err == nil && u.Scheme == "https" {
			secure = e
		}
	}
	if plain != "" && secure != "" {
		return fmt.Errorf("mix http (%q) and https (%q): etcd's client uses the first one's scheme for every member, "+
			"so one of them would get the other's; list only https members, or only loopback http ones", plain, secure)
	}
	return nil
}

// PrefixKeySpaces are the names right below a prefix where a fleet keeps
// its keys (package directory: peers/, endpoints/; package ticketring:
// tickets/, tickets-rotator/). A prefix with one of them as a part could
// lie inside another fleet's key space: with fleets at "/f/" and
// "/f/peers/eu/", the outer one's readers would see the inner one's keys
// (and etcd's election waits on any key below tickets-rotator/, another
// fleet's too). Kept in step with those packages by their tests.
var PrefixKeySpaces = []string{"peers", "endpoints", "tickets", "tickets-rotator"}

// CheckDirectoryPrefix: an absolute-looking key prefix ending in "/", so
// "/a/" never matches the keys of "/ab/", and with no part named as a
// fleet's key space (PrefixKeySpaces), so no fleet nests in another's.
func CheckDirectoryPrefix(s string) error {
	switch {
	case !strings.HasPrefix(s, "/"):
		return errors.New("must start with \"/\", e.g. \"/stunnel/overlay1/\"")
	case !strings.HasSuffix(s, "/") || s == "/":
		return errors.New("must end with \"/\" and name a directory below the root, e.g. \"/stunnel/overlay1/\"")
	case strings.ContainsAny(s, " \t\n\x00"):
		return errors.New("must not contain spaces or control characters")
	}
	parts := strings.Split(strings.Trim(s, "/"), "/")
	for i, part := range parts {
		if slices.Contains(PrefixKeySpaces, part) {
			parent := "/" + strings.Join(parts[:i], "/") + "/"
			if i == 0 {
				parent = "/"
			}
			return fmt.Errorf("has the part %q, where a fleet at %q keeps its keys, so the two fleets would read each other's; "+
				"no part may be %s: e.g. %q", part, parent, strings.Join(PrefixKeySpaces, ", "), parent+"eu/")
		}
	}
	return nil
}
