package tundev

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// FromFD wraps an already attached TUN descriptor, one this process got back
// from systemd's descriptor store (internal/sdfd) after a restart, so the
// device, its addresses and its routes outlive the process. The Device owns
// fd from now on (Close closes it; on error FromFD closes it too).
//
// It checks the descriptor is a TUN device opened as Create opens one
// (IFF_TUN, IFF_NO_PI, IFF_VNET_HDR: a device made otherwise would give
// frames this package misreads), makes it non-blocking and close-on-exec,
// sets the offloads again (to learn whether the kernel takes USO) and sets
// the MTU. A plain int rather than an *os.File: os.NewFile would register
// the descriptor with the Go netpoller, which this package avoids.
func FromFD(fd int, mtu int) (*Device, error) {
	return openDevice(fd, mtu, (*Device).adopt)
}

// adopt checks that fd is an attached TUN device made as Create makes one,
// and makes it non-blocking and close-on-exec.
func (d *Device) adopt() error {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return fmt.Errorf("tundev: %w", err)
	}
	if err := unix.IoctlIfreq(d.fd, unix.TUNGETIFF, ifr); err != nil {
		return fmt.Errorf("tundev: descriptor %d is not an attached TUN device (TUNGETIFF: %w); create a new one", d.fd, err)
	}
	d.name = ifr.Name()
	const want = unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR
	if flags := ifr.Uint16(); flags&want != want || flags&unix.IFF_TAP != 0 {
		return fmt.Errorf("tundev: inherited device %s has flags %#x, want IFF_TUN|IFF_NO_PI|IFF_VNET_HDR; create a new one", d.name, flags)
	}
	if err := unix.SetNonblock(d.fd, true); err != nil {
		return fmt.Errorf("tundev: making %s non-blocking: %w", d.name, err)
	}
	unix.CloseOnExec(d.fd)
	return nil
}

// DupFD returns a new close-on-exec descriptor for the device (the same open
// file), for handing to systemd's descriptor store; the caller closes it
// once handed over. While any copy stays open (systemd's, after this process
// exits), the kernel keeps the device with its addresses and routes.
func (d *Device) DupFD() (int, error) {
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed.Load() {
		return -1, fmt.Errorf("tundev: %s is closed", d.name)
	}
	fd, err := unix.FcntlInt(uintptr(d.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("tundev: duplicating the descriptor of %s: %w", d.name, err)
	}
	return fd, nil
}
