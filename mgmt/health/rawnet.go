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

// kernelNet is RawNet over the kernel's sockets: per family one
// IPPROTO_RAW socket to send whole packets (the kernel adds nothing but,
// for IPv4, the header checksum and ID), and one AF_PACKET socket
// (SOCK_DGRAM, all interfaces) whose BPF filter keeps only TCP segments
// with SYN or RST set. The answers are read before the IP layer sees them:
// a SYN-ACK from a VIP is dropped there when the VIP is also an address of
// this host (a martian source: one-arm VIPs xlb adds to the interface) or
// arrives where strict rp_filter does not expect it (two-arm: it comes in
// on the backend side, the route back to the VIP leaves on the client
// side), and a raw IP socket would never see it. Both need CAP_NET_RAW;
// sockets open at first use.
type kernelNet struct {
	mu     sync.Mutex
	send   [2]*net.IPConn
	recv   [2]*os.File
	closed bool
}

func newKernelNet() *kernelNet { return &kernelNet{} }

func famIndex(v6 bool) int {
	if v6 {
		return 1
	}
	return 0
}

// sendConn returns the IPPROTO_RAW socket of a family, opening it if
// needed.
func (k *kernelNet) sendConn(v6 bool) (*net.IPConn, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, net.ErrClosed
	}
	i := famIndex(v6)
	if k.send[i] != nil {
		return k.send[i], nil
	}
	network := "ip4:255" // IPPROTO_RAW: the header comes with the packet
	if v6 {
		network = "ip6:255"
	}
	c, err := net.ListenIP(network, nil)
	if err != nil {
		return nil, rawErr("raw socket "+network, err)
	}
	k.send[i] = c
	return c, nil
}

// rawErr marks a refused socket as ErrUnavailable.
func rawErr(what string, err error) error {
	if errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %s: %v (xlb needs CAP_NET_RAW)", ErrUnavailable, what, err)
	}
	if errors.Is(err, unix.EAFNOSUPPORT) {
		return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Classic BPF (SOCK_DGRAM: offsets from the IP header): accept TCP
// segments with SYN or RST set, IPv4 only unfragmented (a later fragment
// has no TCP header), IPv6 only without extension headers.
var (
	synRstFilter4 = []unix.SockFilter{
		{Code: 0x30, K: 9},                    // ldb [9]            protocol
		{Code: 0x15, Jt: 0, Jf: 6, K: 6},      // jeq #6             TCP
		{Code: 0x28, K: 6},                    // ldh [6]            flags, fragment offset
		{Code: 0x45, Jt: 4, Jf: 0, K: 0x1fff}, // jset #0x1fff     later fragment: drop
		{Code: 0xb1, K: 0},                    // ldxb 4*([0]&0xf)   header length
		{Code: 0x50, K: 13},                   // ldb [x+13]         TCP flags
		{Code: 0x45, Jt: 0, Jf: 1, K: 0x06},   // jset #SYN|RST
		{Code: 0x06, K: 0xffff},               // ret #65535
		{Code: 0x06, K: 0},                    // ret #0
	}
	synRstFilter6 = []unix.SockFilter{
		{Code: 0x30, K: 6},                  // ldb [6]            next header
		{Code: 0x15, Jt: 0, Jf: 3, K: 6},    // jeq #6             TCP
		{Code: 0x30, K: 40 + 13},            // ldb [53]           TCP flags
		{Code: 0x45, Jt: 0, Jf: 1, K: 0x06}, // jset #SYN|RST
		{Code: 0x06, K: 0xffff},             // ret #65535
		{Code: 0x06, K: 0},                  // ret #0
	}
)

// recvSock returns the AF_PACKET socket of a family, opening it if needed.
func (k *kernelNet) recvSock(v6 bool) (*os.File, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, net.ErrClosed
	}
	i := famIndex(v6)
	if k.recv[i] != nil {
		return k.recv[i], nil
	}
	proto, filter := uint16(unix.ETH_P_IP), synRstFilter4
	if v6 {
		proto, filter = unix.ETH_P_IPV6, synRstFilter6
	}
	be := proto>>8 | proto<<8 // htons
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(be))
	if err != nil {
		return nil, rawErr("packet socket", err)
	}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
		&unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("packet socket filter: %w", err)
	}
	f := os.NewFile(uintptr(fd), "xlb-datapath-probe")
	k.recv[i] = f
	return f, nil
}

func (k *kernelNet) Listen(v6 bool) error {
	_, err := k.recvSock(v6)
	return err
}

func (k *kernelNet) WriteIP(v6 bool, dst netip.Addr, pkt []byte) error {
	c, err := k.sendConn(v6)
	if err != nil {
		return err
	}
	_, err = c.WriteToIP(pkt, &net.IPAddr{IP: dst.AsSlice()})
	return err
}

// ReadTCP returns the next segment the filter let through that arrived
// (not one this host sent), from its TCP header on.
func (k *kernelNet) ReadTCP(v6 bool, b []byte) (int, netip.Addr, error) {
	f, err := k.recvSock(v6)
	if err != nil {
		return 0, netip.Addr{}, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, netip.Addr{}, err
	}
	var pkt [256]byte
	for {
		var n int
		var from unix.Sockaddr
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), pkt[:], 0)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			return 0, netip.Addr{}, err
		}
		if rerr != nil {
			return 0, netip.Addr{}, rerr
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		ip := pkt[:min(n, len(pkt))]
		var src netip.Addr
		var hl int
		switch {
		case !v6 && len(ip) >= 20 && ip[0]>>4 == 4:
			src, hl = netip.AddrFrom4([4]byte(ip[12:16])), int(ip[0]&0xf)*4
		case v6 && len(ip) >= 40 && ip[0]>>4 == 6:
			src, hl = netip.AddrFrom16([16]byte(ip[8:24])), 40
		default:
			continue
		}
		if hl < 20 || hl+20 > len(ip) {
			continue
		}
		return copy(b, ip[hl:]), src, nil
	}
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
	for i := range k.send {
		if k.send[i] != nil {
			k.send[i].Close()
		}
		if k.recv[i] != nil {
			k.recv[i].Close()
		}
	}
	return nil
}
