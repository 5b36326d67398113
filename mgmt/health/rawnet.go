package health

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// kernelNet is RawNet over the kernel's raw IP sockets: per family one
// IPPROTO_RAW socket to send whole packets (the kernel adds nothing but,
// for IPv4, the header checksum and ID) and one raw TCP socket that
// receives a copy of every TCP segment delivered to this host. Both need
// CAP_NET_RAW; sockets open at first use.
type kernelNet struct {
	mu     sync.Mutex
	send   [2]*net.IPConn
	recv   [2]*net.IPConn
	closed bool
}

func newKernelNet() *kernelNet { return &kernelNet{} }

func famIndex(v6 bool) int {
	if v6 {
		return 1
	}
	return 0
}

// conn returns the send (tcp false) or receive socket of a family,
// opening it if needed.
func (k *kernelNet) conn(v6, tcp bool) (*net.IPConn, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, net.ErrClosed
	}
	set, network := &k.send, "ip4:255" // IPPROTO_RAW: the header comes with the packet
	if tcp {
		set, network = &k.recv, "ip4:tcp"
	}
	if v6 {
		network = "ip6" + network[3:]
	}
	i := famIndex(v6)
	if set[i] != nil {
		return set[i], nil
	}
	c, err := net.ListenIP(network, nil)
	if err != nil {
		if errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("%w: raw socket %s: %v (xlb needs CAP_NET_RAW)", ErrUnavailable, network, err)
		}
		if errors.Is(err, unix.EAFNOSUPPORT) {
			return nil, fmt.Errorf("%w: raw socket %s: %v", ErrUnavailable, network, err)
		}
		return nil, fmt.Errorf("raw socket %s: %w", network, err)
	}
	set[i] = c
	return c, nil
}

func (k *kernelNet) Listen(v6 bool) error {
	_, err := k.conn(v6, true)
	return err
}

func (k *kernelNet) WriteIP(v6 bool, dst netip.Addr, pkt []byte) error {
	c, err := k.conn(v6, false)
	if err != nil {
		return err
	}
	_, err = c.WriteToIP(pkt, &net.IPAddr{IP: dst.AsSlice()})
	return err
}

func (k *kernelNet) ReadTCP(v6 bool, b []byte) (int, netip.Addr, error) {
	c, err := k.conn(v6, true)
	if err != nil {
		return 0, netip.Addr{}, err
	}
	n, from, err := c.ReadFromIP(b) // an IPv4 header is stripped, an IPv6 one never comes
	if err != nil {
		return 0, netip.Addr{}, err
	}
	a, _ := netip.AddrFromSlice(from.IP)
	return n, a.Unmap(), nil
}

func (k *kernelNet) Reserve(v6 bool) (uint16, func(), error) {
	fam := unix.AF_INET
	var sa unix.Sockaddr = &unix.SockaddrInet4{}
	if v6 {
		fam, sa = unix.AF_INET6, &unix.SockaddrInet6{}
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, nil, err
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return 0, nil, err
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return 0, nil, err
	}
	var port int
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		port = a.Port
	case *unix.SockaddrInet6:
		port = a.Port
	}
	return uint16(port), func() { unix.Close(fd) }, nil
}

func (k *kernelNet) Source(dst netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

func (k *kernelNet) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	for _, set := range [][2]*net.IPConn{k.send, k.recv} {
		for _, c := range set {
			if c != nil {
				c.Close()
			}
		}
	}
	return nil
}
