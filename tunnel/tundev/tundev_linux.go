package tundev

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"stunnel/internal/busypoll"
)

// Device is a TUN device with virtio-net offloads. It implements tun.Device.
//
// Concurrency: Read and ReadReady are serialized by the caller (the tunnel's
// TUN reader and the UDP readers that pick up replies, under one lock); their
// state is frame, readIov and the pend* fields, unguarded. WaitReadable runs
// in one goroutine beside them and reads only held and readPoll. Write may be
// called from many goroutines at once; writeMu serialises them because they
// share the planning scratch. Close may be called from any goroutine, once
// or more, at any time.
type Device struct {
	fd      int // the TUN fd, O_NONBLOCK; closed only under life.Lock
	eventFd int // readable once Close started: wakes blocked polls
	kickFd  int // readable when ReadReady held a frame back: wakes WaitReadable
	name    string
	mtu     int
	uso     bool // the kernel took TUN_F_USO4|TUN_F_USO6
	events  chan tun.Event

	// life: Read and Write hold it shared while they use the fds, Close
	// takes it exclusively to close them, so an fd number is never reused
	// under a running call.
	life      sync.RWMutex
	closed    atomic.Bool
	closeOnce sync.Once

	// Read's state (one reader).
	frame    []byte          // receives what of a frame does not fit the caller's buffer (see setReadIov), and holds pend
	readIov  [2]unix.Iovec   // the caller's buffer and frame, for readv
	pend     gsoFrame        // a GSO frame held over, in frame; valid while pendNext < pend.nseg
	pendNext int             // next segment of pend to hand out
	pendErr  error           // error to return on the next Read
	held     atomic.Bool     // pend or pendErr is set; read by WaitReadable beside ReadReady
	readPoll [3]unix.PollFd  // the TUN fd, eventFd, kickFd
	spin     busypoll.Poller // the reader's, in waitReadable

	writeMu   sync.Mutex // guards plan, iov and writePoll
	plan      planner
	iov       []unix.Iovec
	writePoll [2]unix.PollFd

	stats struct{ readFrames, readGSO, readSegs, readHeld, badFrames, writePkts, writeGroups, writeCoalesced atomic.Uint64 }
}

// Stats counts what the offloads did, for tests and status output.
type Stats struct {
	ReadFrames     uint64 // frames read from the kernel
	ReadGSOFrames  uint64 // of which GSO super-packets
	ReadSegments   uint64 // packets handed out from GSO frames
	ReadHeld       uint64 // GSO frames that did not fit and were held over
	BadFrames      uint64 // frames dropped as malformed
	WritePackets   uint64 // packets passed to Write
	WriteGroups    uint64 // GSO frames of 2 or more packets written
	WriteCoalesced uint64 // packets written inside those frames
}

// Create makes (or attaches to) the TUN device name with the given MTU and
// enables checksum and segmentation offloads. It does not configure
// addresses or bring the link up.
func Create(name string, mtu int) (*Device, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("tundev: opening /dev/net/tun: %w", err)
	}
	return openDevice(fd, mtu, func(d *Device) error { return d.attach(name) })
}

// openDevice makes the Device of an open TUN descriptor: attach names it (a
// new device, or an inherited one checked), then configure sets what every
// device needs. On error everything opened is closed, fd included.
func openDevice(fd, mtu int, attach func(*Device) error) (*Device, error) {
	d := &Device{fd: fd, eventFd: -1, kickFd: -1, mtu: mtu, events: make(chan tun.Event)}
	err := attach(d)
	if err == nil {
		err = d.configure()
	}
	if err != nil {
		unix.Close(fd)
		for _, efd := range []int{d.eventFd, d.kickFd} {
			if efd >= 0 {
				unix.Close(efd)
			}
		}
		return nil, err
	}
	d.frame = make([]byte, bufSize)
	d.plan.uso = d.uso
	d.iov = make([]unix.Iovec, 0, maxGroupSegs+1)
	d.readPoll = [3]unix.PollFd{{Fd: int32(d.fd), Events: unix.POLLIN}, {Fd: int32(d.eventFd), Events: unix.POLLIN}, {Fd: int32(d.kickFd), Events: unix.POLLIN}}
	d.writePoll = [2]unix.PollFd{{Fd: int32(d.fd), Events: unix.POLLOUT}, {Fd: int32(d.eventFd), Events: unix.POLLIN}}
	return d, nil
}

// attach makes fd the TUN device name (TUNSETIFF).
func (d *Device) attach(name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("tundev: interface name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(d.fd, unix.TUNSETIFF, ifr); err != nil {
		return fmt.Errorf("tundev: TUNSETIFF %s: %w", name, err)
	}
	d.name = ifr.Name()
	return nil
}

// configure sets the offloads (learning whether the kernel takes USO) and
// the MTU, and makes the eventfds that wake and stop blocked readers.
func (d *Device) configure() error {
	base := tunFCsum | tunFTSO4 | tunFTSO6
	if err := unix.IoctlSetInt(d.fd, unix.TUNSETOFFLOAD, base|tunFUSO4|tunFUSO6); err == nil {
		d.uso = true
	} else if err := unix.IoctlSetInt(d.fd, unix.TUNSETOFFLOAD, base); err != nil {
		return fmt.Errorf("tundev: TUNSETOFFLOAD %s: %w", d.name, err)
	}
	if err := setMTU(d.name, d.mtu); err != nil {
		return err
	}
	var err error
	if d.eventFd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("tundev: eventfd for %s: %w", d.name, err)
	}
	if d.kickFd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("tundev: eventfd for %s: %w", d.name, err)
	}
	return nil
}

func setMTU(name string, mtu int) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("tundev: socket to set the MTU of %s: %w", name, err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("tundev: interface name %q: %w", name, err)
	}
	ifr.SetUint32(uint32(mtu))
	if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr); err != nil {
		return fmt.Errorf("tundev: setting MTU %d on %s: %w", mtu, name, err)
	}
	return nil
}

// File returns nil: wrapping the fd in an *os.File would register it with
// the Go netpoller, which this package exists to avoid.
func (d *Device) File() *os.File { return nil }

// MTU returns the MTU given to Create.
func (d *Device) MTU() (int, error) { return d.mtu, nil }

// Name returns the interface name the kernel gave the device.
func (d *Device) Name() (string, error) { return d.name, nil }

// Events returns a channel that is never sent on and is closed by Close.
func (d *Device) Events() <-chan tun.Event { return d.events }

// BatchSize is the number of bufs Read and Write are best called with.
func (d *Device) BatchSize() int { return batchSize }

// UDPOffload reports whether the kernel accepted UDP segmentation offload.
func (d *Device) UDPOffload() bool { return d.uso }

// Stats returns the offload counters.
func (d *Device) Stats() Stats {
	s := &d.stats
	return Stats{
		ReadFrames: s.readFrames.Load(), ReadGSOFrames: s.readGSO.Load(), ReadSegments: s.readSegs.Load(),
		ReadHeld:  s.readHeld.Load(),
		BadFrames: s.badFrames.Load(), WritePackets: s.writePkts.Load(), WriteGroups: s.writeGroups.Load(),
		WriteCoalesced: s.writeCoalesced.Load(),
	}
}

// Close wakes any blocked Read or Write (they return os.ErrClosed), waits
// for them to leave the fds, then closes the fds and the Events channel.
func (d *Device) Close() error {
	var err error
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		var one = [8]byte{1}
		if _, werr := unix.Write(d.eventFd, one[:]); werr != nil {
			err = fmt.Errorf("tundev: waking readers of %s: %w", d.name, werr)
		}
		d.life.Lock()
		defer d.life.Unlock()
		if cerr := unix.Close(d.fd); cerr != nil && err == nil {
			err = fmt.Errorf("tundev: closing %s: %w", d.name, cerr)
		}
		unix.Close(d.eventFd)
		unix.Close(d.kickFd)
		d.spin.Close() // the reader has left (life)
		close(d.events)
	})
	return err
}

// waitReadable is wait for the reader: it also returns when kickFd says a
// frame was held back (and resets the kick).
func (d *Device) waitReadable() error {
	for {
		if err := d.wait(d.readPoll[:], &d.spin); err != nil {
			return err
		}
		if d.readPoll[2].Revents == 0 {
			return nil
		}
		var buf [8]byte
		_, _ = unix.Read(d.kickFd, buf[:]) // EAGAIN if another wait already reset it
		if d.held.Load() || d.readPoll[0].Revents != 0 {
			return nil
		}
	}
}

// wait blocks in poll(2) until the TUN fd has events (POLLIN or POLLOUT) or
// Close started. It is a plain blocking syscall: the kernel wakes this
// thread directly, with no netpoller hand-off. With a spin Poller, it polls
// without sleeping for a moment first, and sleeps in the netpoller instead
// (see internal/busypoll).
func (d *Device) wait(fds []unix.PollFd, spin *busypoll.Poller) error {
	if spin != nil && !d.closed.Load() && spin.Poll(fds) {
		if done, err := d.verdict(fds); done {
			return err
		}
	}
	for {
		if d.closed.Load() {
			return os.ErrClosed
		}
		var err error
		if spin != nil {
			err = spin.Sleep(fds) // in the netpoller
		} else {
			_, err = unix.Poll(fds, -1)
		}
		if err != nil && err != unix.EINTR {
			return fmt.Errorf("tundev: poll on %s: %w", d.name, err)
		}
		if done, err := d.verdict(fds); done {
			return err
		}
	}
}

// verdict reads a poll's results: done when Close started (os.ErrClosed),
// the fd failed, or it (or the kick, fds[2]) has events.
func (d *Device) verdict(fds []unix.PollFd) (done bool, err error) {
	if fds[1].Revents != 0 || d.closed.Load() {
		return true, os.ErrClosed
	}
	if fds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
		return true, fmt.Errorf("tundev: poll on %s: revents %#x", d.name, fds[0].Revents)
	}
	return fds[0].Revents != 0 || (len(fds) > 2 && fds[2].Revents != 0), nil
}

var errOffset = errors.New("tundev: offset is smaller than the 10-byte virtio header")
