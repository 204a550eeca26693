package main

import (
	"net"
	"os"
)

// sdNotify tells systemd about the service's state (Type=notify): READY=1
// once the device is up, RELOADING=1 / READY=1 around a reload, STOPPING=1.
// Outside systemd (no $NOTIFY_SOCKET) it does nothing. Twelve lines are
// not worth a dependency.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' { // abstract socket
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
