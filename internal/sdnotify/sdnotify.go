// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)) without cgo: READY=1 once a Type=notify service has
// started, WATCHDOG=1 keep-alive pings for WatchdogSec=, STOPPING=1 and
// STATUS=. Outside systemd (no $NOTIFY_SOCKET) every call is a no-op.
//
// The appliance image (image/) runs xlb under a unit with Type=notify and
// WatchdogSec= once cmd/xlb calls Ready and Watchdog; until then its unit
// is Type=simple.
package sdnotify

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Notify sends state (newline-separated KEY=VALUE assignments) to the
// socket named by $NOTIFY_SOCKET. It reports whether a message was sent:
// false with a nil error when the process does not run under systemd.
func Notify(state string) (bool, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return false, nil
	}
	switch path[0] {
	case '/':
	case '@': // abstract namespace
		path = "\x00" + path[1:]
	default:
		return false, errors.New("sdnotify: NOTIFY_SOCKET is neither a path nor an abstract socket (vsock is not supported)")
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return false, err
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, err
	}
	return true, nil
}

// Ready tells systemd the service has started (READY=1), with an optional
// STATUS= line.
func Ready(status string) error {
	s := "READY=1"
	if status != "" {
		s += "\nSTATUS=" + oneLine(status)
	}
	_, err := Notify(s)
	return err
}

// Stopping tells systemd the service is shutting down (STOPPING=1).
func Stopping() error {
	_, err := Notify("STOPPING=1")
	return err
}

// Status sets the one-line status systemctl status shows.
func Status(s string) error {
	_, err := Notify("STATUS=" + oneLine(s))
	return err
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// WatchdogInterval returns the watchdog timeout systemd set for this
// process (WatchdogSec=, through $WATCHDOG_USEC and $WATCHDOG_PID), or 0
// when there is none.
func WatchdogInterval() time.Duration {
	us, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us == 0 {
		return 0
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" {
		if pid, err := strconv.Atoi(p); err != nil || pid != os.Getpid() {
			return 0
		}
	}
	return time.Duration(us) * time.Microsecond
}

// Watchdog sends WATCHDOG=1 every half watchdog interval until stop is
// closed, skipping a ping whenever healthy (if not nil) returns an error,
// so that systemd restarts a process that is alive but not working. It
// returns at once when systemd set no watchdog. Run it in a goroutine.
func Watchdog(stop <-chan struct{}, healthy func() error) {
	iv := WatchdogInterval()
	if iv <= 0 {
		return
	}
	ping := func() {
		if healthy == nil || healthy() == nil {
			_, _ = Notify("WATCHDOG=1")
		}
	}
	ping()
	t := time.NewTicker(iv / 2)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ping()
		}
	}
}
