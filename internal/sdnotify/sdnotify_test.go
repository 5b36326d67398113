package sdnotify

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// listen makes a notify socket like systemd's and points $NOTIFY_SOCKET at it.
func listen(t *testing.T, abstract bool) *net.UnixConn {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify")
	env := name
	if abstract {
		name = "\x00xlb-sdnotify-test-" + strconv.Itoa(os.Getpid())
		env = "@" + name[1:]
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", env)
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(b[:n])
}

func TestNoSocketIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	sent, err := Notify("READY=1")
	if sent || err != nil {
		t.Fatalf("Notify without NOTIFY_SOCKET = %v, %v; want false, nil", sent, err)
	}
	if err := Ready("x"); err != nil {
		t.Fatal(err)
	}
}

func TestReadyStatusStopping(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		c := listen(t, abstract)
		if err := Ready("serving\n2 interfaces"); err != nil {
			t.Fatal(err)
		}
		if got, want := recv(t, c), "READY=1\nSTATUS=serving 2 interfaces"; got != want {
			t.Errorf("abstract=%v: got %q, want %q", abstract, got, want)
		}
		if err := Status("reloading"); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, c); got != "STATUS=reloading" {
			t.Errorf("got %q", got)
		}
		if err := Stopping(); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, c); got != "STOPPING=1" {
			t.Errorf("got %q", got)
		}
	}
}

func TestBadSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "vsock:2:1")
	if _, err := Notify("READY=1"); err == nil {
		t.Fatal("want an error for a vsock address")
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent"))
	if _, err := Notify("READY=1"); err == nil {
		t.Fatal("want an error for a missing socket")
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0},
		{"0", pid, 0},
		{"junk", pid, 0},
		{"30000000", pid, 30 * time.Second},
		{"30000000", "", 30 * time.Second},
		{"30000000", "1", 0}, // meant for another process
	} {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		if got := WatchdogInterval(); got != tc.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, want %v", tc.usec, tc.pid, got, tc.want)
		}
	}
}

func TestWatchdogPingsWhileHealthy(t *testing.T) {
	c := listen(t, false)
	t.Setenv("WATCHDOG_USEC", "40000") // pings every 20ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	healthy := make(chan bool, 1)
	healthy <- true
	state := true
	check := func() error {
		select {
		case state = <-healthy:
		default:
		}
		if !state {
			return errors.New("stuck")
		}
		return nil
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { Watchdog(stop, check); close(done) }()
	for i := 0; i < 3; i++ {
		if got := recv(t, c); got != "WATCHDOG=1" {
			t.Fatalf("got %q", got)
		}
	}
	healthy <- false
	// Drain pings that were in flight, then expect silence.
	time.Sleep(60 * time.Millisecond)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	b := make([]byte, 64)
	for {
		if _, err := c.Read(b); err != nil {
			break
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := c.Read(b); err == nil {
		t.Fatalf("pinged while unhealthy: %q", b[:n])
	}
	close(stop)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watchdog did not return after stop")
	}
}

func TestWatchdogOffReturns(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "")
	done := make(chan struct{})
	go func() { Watchdog(make(chan struct{}), nil); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watchdog without WATCHDOG_USEC did not return")
	}
}
