package main

import (
	"log/slog"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"stunnel/conf"
	"stunnel/internal/sdfd"
	"stunnel/tunnel/tundev"
	"stunnel/tunnel/udpbind"
)

// Names of the descriptors in systemd's store (FDNAME, LISTEN_FDNAMES).
const (
	fdNameTUN  = "tun"
	fdNameUDP4 = "udp4"
	fdNameUDP6 = "udp6"
)

// storedFDs are the descriptors systemd handed back at start (LISTEN_FDS),
// by name; empty without systemd or on a first start.
type storedFDs map[string][]int

// takeStoredFDs reads LISTEN_FDS once, at start, and closes every descriptor
// the daemon does not know, so nothing leaks into the tunnel.
func takeStoredFDs(log *slog.Logger) storedFDs {
	fds, err := sdfd.Listen()
	if err != nil {
		log.Warn("ignoring descriptors from systemd", "err", err.Error())
		return storedFDs{}
	}
	for name, list := range fds {
		if name == fdNameTUN || name == fdNameUDP4 || name == fdNameUDP6 {
			continue
		}
		for _, fd := range list {
			unix.Close(fd)
		}
		delete(fds, name)
	}
	return fds
}

// take removes and returns the one descriptor stored under name, or -1;
// extra copies (a store that kept two) are closed.
func (s storedFDs) take(name string) int {
	list := s[name]
	delete(s, name)
	if len(list) == 0 {
		return -1
	}
	for _, fd := range list[1:] {
		unix.Close(fd)
	}
	return list[0]
}

// openDevice adopts the TUN device from systemd's store when it is there and
// is the configured one, else creates it. inherited says which: an inherited
// device keeps its addresses and routes from the previous run.
func openDevice(cfg *conf.Config, fds storedFDs, log *slog.Logger) (dev *tundev.Device, inherited bool, err error) {
	name := cfg.Interface.Name
	if fd := fds.take(fdNameTUN); fd >= 0 {
		if !inOurNetns(fd, unix.TUNGETDEVNETNS) {
			// Checked before FromFD, which sets the MTU by name: here that
			// name is another device or none.
			log.Warn("not reusing the TUN device kept by systemd: it is in another network namespace (NetworkNamespacePath= changed?); creating a new one",
				"interface", name)
			unix.Close(fd)
			_, _ = sdfd.Remove(fdNameTUN) // systemd's copy would keep the old device alive
			dev, err = tundev.Create(name, cfg.Interface.MTU)
			return dev, false, err
		}
		d, err := tundev.FromFD(fd, cfg.Interface.MTU)
		switch {
		case err != nil:
			log.Warn("not reusing the TUN device kept by systemd; creating a new one", "err", err.Error())
			_, _ = sdfd.Remove(fdNameTUN)
		case mustName(d) != name:
			log.Warn("not reusing the TUN device kept by systemd: the config names another device; creating a new one",
				"kept", mustName(d), "interface", name)
			d.Close()
			_, _ = sdfd.Remove(fdNameTUN) // systemd's copy would keep the old device alive
		default:
			log.Info("reusing the TUN device kept by systemd across the restart", "interface", name)
			return d, true, nil
		}
	}
	dev, err = tundev.Create(name, cfg.Interface.MTU)
	return dev, false, err
}

func mustName(d *tundev.Device) string {
	n, _ := d.Name()
	return n
}

// newBind returns the UDP bind: one that adopts the sockets from systemd's
// store at its first Open when there are any, else a fresh one.
func newBind(fds storedFDs, log *slog.Logger) conn.Bind {
	fd4, fd6 := fds.take(fdNameUDP4), fds.take(fdNameUDP6)
	if fd4 >= 0 && (!inOurNetns(fd4, unix.SIOCGSKNS) || fd6 >= 0 && !inOurNetns(fd6, unix.SIOCGSKNS)) {
		// A socket keeps the namespace it was made in: adopted, it would
		// send by that namespace's routes and receive nothing sent here.
		log.Warn("not reusing the UDP sockets kept by systemd: they are in another network namespace (NetworkNamespacePath= changed?); binding new ones")
		unix.Close(fd4)
		fd4 = -1
		_, _ = sdfd.Remove(fdNameUDP4)
		_, _ = sdfd.Remove(fdNameUDP6)
	}
	if fd4 < 0 {
		if fd6 >= 0 {
			unix.Close(fd6)
		}
		return udpbind.New()
	}
	return udpbind.NewInherited(fd4, fd6)
}

// inOurNetns reports whether fd, a TUN device (req TUNGETDEVNETNS) or a
// socket (SIOCGSKNS), belongs to this process's network namespace: both
// ioctls return a descriptor of the fd's namespace. The store outlives a
// restart into another namespace (a NetworkNamespacePath= drop-in), and
// a device or socket from there must not be adopted. A kernel that cannot
// tell (TUNGETDEVNETNS is Linux 5.2) gets true: adopted as before.
func inOurNetns(fd int, req uint) bool {
	ns, err := unix.IoctlRetInt(fd, req)
	if err != nil {
		return true
	}
	defer unix.Close(ns)
	var theirs, ours unix.Stat_t
	if unix.Fstat(ns, &theirs) != nil || unix.Stat("/proc/thread-self/ns/net", &ours) != nil {
		return true
	}
	return theirs.Dev == ours.Dev && theirs.Ino == ours.Ino
}

// baseBind is the udpbind.Bind under b (an inherited one embeds it), for
// what only it offers, such as the full tunnel's socket mark.
func baseBind(b conn.Bind) *udpbind.Bind {
	switch x := b.(type) {
	case *udpbind.Bind:
		return x
	case *udpbind.Inherited:
		return x.Bind
	}
	return nil
}

// logBindInheritance says, after the tunnel opened its bind, whether the
// sockets kept by systemd were reused.
func logBindInheritance(b conn.Bind, log *slog.Logger) {
	in, ok := b.(*udpbind.Inherited)
	if !ok {
		return
	}
	if in.Adopted() {
		log.Info("reusing the UDP sockets kept by systemd across the restart")
	} else if err := in.Refused(); err != nil {
		log.Warn("not reusing the UDP sockets kept by systemd; bound new ones", "err", err.Error())
		// Forget the old ones, or every later start would meet them first.
		_, _ = sdfd.Remove(fdNameUDP4)
		_, _ = sdfd.Remove(fdNameUDP6)
	}
}

// storeFDs hands copies of the TUN device and UDP sockets to systemd's
// descriptor store (the unit's FileDescriptorStoreMax=), so a restart finds
// the device with its addresses and routes, and the sockets with the
// datagrams that arrived meanwhile. It reports whether systemd has them:
// then the device outlives this process, and its addresses and routes must
// stay (systemd closes its copies at a full stop, and the device goes then).
func storeFDs(dev *tundev.Device, b conn.Bind, log *slog.Logger) bool {
	type dupper interface{ DupFDs() (int, int, error) }
	var d dupper
	switch x := b.(type) {
	case *udpbind.Bind:
		d = x
	case *udpbind.Inherited:
		d = x.Bind
	default:
		return false
	}
	tun, err := dev.DupFD()
	if err != nil {
		log.Warn("cannot hand the TUN device to systemd", "err", err.Error())
		return false
	}
	defer unix.Close(tun)
	ok, err := sdfd.Store(fdNameTUN, tun)
	if !ok || err != nil {
		if err != nil {
			log.Warn("cannot hand the TUN device to systemd; a restart will recreate it", "err", err.Error())
		}
		return false
	}
	fd4, fd6, err := d.DupFDs()
	if err != nil {
		log.Warn("cannot hand the UDP sockets to systemd", "err", err.Error())
		return true
	}
	for _, s := range []struct {
		name string
		fd   int
	}{{fdNameUDP4, fd4}, {fdNameUDP6, fd6}} {
		if s.fd < 0 {
			continue
		}
		if _, err := sdfd.Store(s.name, s.fd); err != nil {
			log.Warn("cannot hand a UDP socket to systemd", "socket", s.name, "err", err.Error())
		}
		unix.Close(s.fd)
	}
	return true
}
