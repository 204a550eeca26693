package netcfg

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ProcIPv4Conf is where the kernel keeps the per-interface IPv4 settings.
const ProcIPv4Conf = "/proc/sys/net/ipv4/conf"

// StrictReversePath lists the interfaces (under confDir, normally
// ProcIPv4Conf; but lo and except) whose reverse-path filter is strict: the
// kernel applies the larger of conf/all/rp_filter and the interface's own,
// and 1 is strict. A full tunnel needs loose (2) or none (0) on the
// interface its replies come in by when the endpoint is reached through a
// gateway: the reply's reverse route is looked up without our firewall mark,
// so it points into the tunnel and a strict filter drops the reply.
// src_valid_mark does not help there, since the reply carries no mark;
// wg-quick copies the mark back with conntrack rules, which stunnel does not
// install, so the daemon warns instead (addFullTunnel).
func StrictReversePath(confDir, except string) ([]string, error) {
	all, err := readRPFilter(filepath.Join(confDir, "all"))
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(confDir)
	if err != nil {
		return nil, err
	}
	var strict []string
	for _, e := range entries {
		name := e.Name()
		if name == "all" || name == "default" || name == "lo" || name == except {
			continue
		}
		own, err := readRPFilter(filepath.Join(confDir, name))
		if err != nil {
			continue // gone since ReadDir, or not an interface
		}
		if max(all, own) == 1 {
			strict = append(strict, name)
		}
	}
	return strict, nil
}

func readRPFilter(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "rp_filter"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
