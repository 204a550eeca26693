package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"stunnel/conf"
	"stunnel/tunnel/control"
)

// interfaceName reads a config only far enough to learn which tunnel it
// describes: [interface] name. It does not validate the rest (that is
// `stunnel check`'s job), so `show -c` works on a file that has since
// been broken, and never reads key files.
func interfaceName(cmd, path string) (string, error) {
	data, err := conf.ReadConfigFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		if errors.Is(err, fs.ErrPermission) {
			// A member of a [control] group may run the command but not
			// read root's /etc/stunnel: the socket needs only the name.
			return "", fmt.Errorf("stunnel %s: %s: cannot read config: %v; name the tunnel instead (stunnel %s -i NAME, NAME its [interface] name), or use sudo", cmd, path, err, cmd)
		}
		return "", fmt.Errorf("stunnel %s: %s: cannot read config: %v", cmd, path, err)
	}
	var c struct {
		Interface struct {
			Name any `toml:"name"`
		} `toml:"interface"`
	}
	if _, err := toml.Decode(string(data), &c); err != nil {
		// The parser's message can quote a key (an unquoted private_key):
		// masked as check masks it.
		line, msg := conf.TOMLSyntax(data, err)
		return "", fmt.Errorf("stunnel %s: %s:%d: TOML syntax: %s", cmd, path, line, msg)
	}
	name, ok := c.Interface.Name.(string)
	if !ok || name == "" {
		return "", fmt.Errorf("stunnel %s: %s: [interface] has no name; it names the tunnel (run stunnel check -c %s)", cmd, path, path)
	}
	if err := checkTunnelName(name); err != nil {
		// Quoted as check quotes it: never a key pasted there.
		return "", fmt.Errorf("stunnel %s: %s: [interface] name %s %v (run stunnel check -c %s)", cmd, path, conf.HideKeys(strconv.Quote(name)), err, path)
	}
	return name, nil
}

// checkTunnelName keeps a name from -i or a config to what can be a socket
// in control.Dir(): no path tricks.
func checkTunnelName(name string) error {
	if name == "" || len(name) > 15 || name == "." || name == ".." || strings.ContainsAny(name, "/:%\x00 \t\n") {
		return errors.New("is not a valid interface name")
	}
	return nil
}

// socketFor picks the tunnel's main socket from -c FILE or -i NAME (exactly
// one of them may be set). ok is false when neither is.
func socketFor(cmd, path, name string) (sock string, ok bool, err error) {
	switch {
	case path != "" && name != "":
		return "", false, fmt.Errorf("stunnel %s: give -c FILE or -i NAME, not both", cmd)
	case path != "":
		if name, err = interfaceName(cmd, path); err != nil {
			return "", false, err
		}
	case name != "":
		if err := checkTunnelName(name); err != nil {
			return "", false, fmt.Errorf("stunnel %s: -i %q %v", cmd, name, err)
		}
	default:
		return "", false, nil
	}
	return control.SocketPath(name), true, nil
}
