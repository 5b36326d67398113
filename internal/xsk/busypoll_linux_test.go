package xsk

import (
	"errors"
	"net"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/testutil"
)

// busyPollOpts reads SO_PREFER_BUSY_POLL and SO_BUSY_POLL back from the
// kernel (it has no getsockopt for SO_BUSY_POLL_BUDGET).
func busyPollOpts(t *testing.T, s *Socket) [2]int {
	t.Helper()
	var v [2]int
	for i, opt := range []int{unix.SO_PREFER_BUSY_POLL, unix.SO_BUSY_POLL} {
		var err error
		if v[i], err = unix.GetsockoptInt(s.FD(), unix.SOL_SOCKET, opt); err != nil {
			t.Fatalf("getsockopt %d: %v", opt, err)
		}
	}
	return v
}

// TestSocketBusyPollOptions opens sockets on a veth and reads their
// busy-poll options back, also from a thread without CAP_NET_ADMIN, where
// the kernel refuses them.
func TestSocketBusyPollOptions(t *testing.T) {
	testutil.RequireAFXDP(t)
	ns := testutil.NewNetns(t, "bp")
	testutil.IPCmd(t, "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	testutil.IPCmd(t, "-n", ns, "link", "set", "v0", "up")
	testutil.IPCmd(t, "-n", ns, "link", "set", "v1", "up")

	// open runs Open in the namespace, on a thread without CAP_NET_ADMIN
	// if dropAdmin (the thread then exits with its goroutine).
	open := func(t *testing.T, o Options, dropAdmin bool) (*Socket, error) {
		var s *Socket
		err := testutil.InNetns(ns, func() error {
			ifi, err := net.InterfaceByName("v0")
			if err != nil {
				return err
			}
			u, err := NewUMEM(UMEMConfig{FrameCount: 64})
			if err != nil {
				return err
			}
			t.Cleanup(func() { u.Close() })
			if !dropAdmin {
				s, err = Open(ifi.Index, 0, u, o)
				return err
			}
			errc := make(chan error, 1)
			go func() {
				runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
				errc <- func() error {
					if err := dropCapability(unix.CAP_NET_ADMIN); err != nil {
						return err
					}
					var err error
					s, err = Open(ifi.Index, 0, u, o)
					return err
				}()
			}()
			return <-errc
		})
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
		return s, err
	}

	t.Run("default", func(t *testing.T) {
		s, err := open(t, Options{RxSize: 64, TxSize: 64}, false)
		if err != nil {
			t.Fatal(err)
		}
		if on, err := s.BusyPoll(); !on || err != nil {
			t.Fatalf("BusyPoll() = %v, %v", on, err)
		}
		if got, want := busyPollOpts(t, s), [2]int{1, 20}; got != want {
			t.Fatalf("prefer, busy_poll µs = %v, want %v", got, want)
		}
		if st, err := s.Stats(); err != nil || !st.BusyPoll {
			t.Fatalf("stats %+v, %v", st, err)
		}
		s.Close()
	})
	t.Run("explicit", func(t *testing.T) {
		s, err := open(t, Options{RxSize: 64, TxSize: 64, BusyPollTimeout: 50_000, BusyPollBudget: 256}, false)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := busyPollOpts(t, s), [2]int{1, 50}; got != want {
			t.Fatalf("prefer, busy_poll µs = %v, want %v", got, want)
		}
		s.Close()
	})
	t.Run("disabled", func(t *testing.T) {
		s, err := open(t, Options{RxSize: 64, TxSize: 64, DisableBusyPoll: true}, false)
		if err != nil {
			t.Fatal(err)
		}
		if on, err := s.BusyPoll(); on || err != nil {
			t.Fatalf("BusyPoll() = %v, %v", on, err)
		}
		if got := busyPollOpts(t, s); got[0] != 0 || got[1] != 0 {
			t.Fatalf("prefer, busy_poll µs = %v, want busy polling off", got)
		}
		s.Close()
	})
	t.Run("refused", func(t *testing.T) {
		s, err := open(t, Options{RxSize: 64, TxSize: 64}, true)
		if err != nil {
			t.Fatalf("Open without CAP_NET_ADMIN: %v", err)
		}
		on, why := s.BusyPoll()
		if on || !errors.Is(why, ErrNotSupported) || !errors.Is(why, unix.EPERM) {
			t.Fatalf("BusyPoll() = %v, %v; want off, ErrNotSupported and EPERM", on, why)
		}
		if got := busyPollOpts(t, s); got[0] != 0 || got[1] != 0 {
			t.Fatalf("prefer, busy_poll µs = %v after a refusal, want busy polling off", got)
		}
		t.Logf("refused: %v", why)
		s.Close()
	})
	t.Run("required", func(t *testing.T) {
		s, err := open(t, Options{RxSize: 64, TxSize: 64, RequireBusyPoll: true}, true)
		if s != nil || !errors.Is(err, ErrNotSupported) || !errors.Is(err, unix.EPERM) {
			t.Fatalf("Open = %v, %v; want ErrNotSupported and EPERM", s, err)
		}
	})
}

// dropCapability removes c from the calling thread's effective set.
func dropCapability(c int) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	data[c/32].Effective &^= 1 << (c % 32)
	return unix.Capset(&hdr, &data[0])
}

// BenchmarkEmptyPass is what a busy worker pays per pass over an empty rx
// ring on a real socket (veth): Receive alone (no syscall without busy
// polling, a recvfrom with it) and Poller.Yield (sched_yield).
func BenchmarkEmptyPass(b *testing.B) {
	testutil.RequireAFXDP(b)
	ns := testutil.NewNetns(b, "bpb")
	testutil.IPCmd(b, "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	testutil.IPCmd(b, "-n", ns, "link", "set", "v0", "up")
	testutil.IPCmd(b, "-n", ns, "link", "set", "v1", "up")
	for _, bc := range []struct {
		name  string
		opts  Options
		yield bool
	}{
		{"receive", Options{DisableBusyPoll: true}, false},
		{"receive+busypoll", Options{}, false},
		{"receive+busypoll+yield", Options{}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var s *Socket
			var u *UMEM
			err := testutil.InNetns(ns, func() error {
				ifi, err := net.InterfaceByName("v0")
				if err != nil {
					return err
				}
				if u, err = NewUMEM(UMEMConfig{FrameCount: 64}); err != nil {
					return err
				}
				bc.opts.RxSize, bc.opts.TxSize = 64, 64
				s, err = Open(ifi.Index, 0, u, bc.opts)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			defer u.Close()
			defer s.Close()
			p := NewPoller([]*Socket{s})
			descs := make([]Desc, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if s.Receive(descs) != 0 {
					b.Fatal("received a frame")
				}
				if bc.yield {
					p.Yield()
				}
			}
		})
	}
}
