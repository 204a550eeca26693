package tundev

import (
	"fmt"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
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
	d := &Device{fd: fd, eventFd: -1, kickFd: -1, mtu: mtu, events: make(chan tun.Event)}
	if err := d.adopt(); err != nil {
		unix.Close(fd)
		for _, efd := range []int{d.eventFd, d.kickFd} {
			if efd >= 0 {
				unix.Close(efd)
			}
		}
		return nil, err
	}
	d.spare = make([]byte, bufSize)
	d.plan.uso = d.uso
	d.iov = make([]unix.Iovec, 0, maxGroupSegs+1)
	d.readPoll = [3]unix.PollFd{{Fd: int32(d.fd), Events: unix.POLLIN}, {Fd: int32(d.eventFd), Events: unix.POLLIN}, {Fd: int32(d.kickFd), Events: unix.POLLIN}}
	d.writePoll = [2]unix.PollFd{{Fd: int32(d.fd), Events: unix.POLLOUT}, {Fd: int32(d.eventFd), Events: unix.POLLIN}}
	return d, nil
}

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
	base := tunFCsum | tunFTSO4 | tunFTSO6
	if err := unix.IoctlSetInt(d.fd, unix.TUNSETOFFLOAD, base|tunFUSO4|tunFUSO6); err == nil {
		d.uso = true
	} else if err := unix.IoctlSetInt(d.fd, unix.TUNSETOFFLOAD, base); err != nil {
		return fmt.Errorf("tundev: TUNSETOFFLOAD %s: %w", d.name, err)
	}
	if err := setMTU(d.name, d.mtu); err != nil {
		return err
	}
	if d.eventFd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("tundev: eventfd for %s: %w", d.name, err)
	}
	if d.kickFd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("tundev: eventfd for %s: %w", d.name, err)
	}
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
