package main

import (
	"encoding/binary"
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/netns"
)

// sendMalformed writes raw Ethernet frames from the router's bridge to the
// lb's MAC: IPv4 TCP to VIP:80 (so the steering program hands them to xlb)
// with an impossible TCP data offset. It returns how many it sent.
func sendMalformed(tp *netns.Topology, lbMAC net.HardwareAddr) (int, error) {
	sent := 0
	err := tp.Router.Do(func() error {
		ifi, err := net.InterfaceByName("br0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
		copy(sa.Addr[:], lbMAC)
		for i := 0; i < 20; i++ {
			f := make([]byte, 14+20+20)
			copy(f[0:6], lbMAC)
			copy(f[6:12], ifi.HardwareAddr)
			binary.BigEndian.PutUint16(f[12:14], 0x0800)
			ip := f[14:]
			ip[0], ip[8], ip[9] = 0x45, 64, 6
			binary.BigEndian.PutUint16(ip[2:4], 40)
			copy(ip[12:16], []byte{10, 10, 0, 99})
			copy(ip[16:20], tp.VIP.AsSlice())
			var s uint32
			for j := 0; j < 20; j += 2 {
				s += uint32(binary.BigEndian.Uint16(ip[j:]))
			}
			for s > 0xffff {
				s = s>>16 + s&0xffff
			}
			binary.BigEndian.PutUint16(ip[10:12], ^uint16(s))
			tcp := ip[20:]
			binary.BigEndian.PutUint16(tcp[0:2], uint16(30000+i))
			binary.BigEndian.PutUint16(tcp[2:4], 80)
			if i%2 == 0 {
				tcp[12] = 2 << 4 // 8-byte header: below the minimum
			} else {
				tcp[12] = 15 << 4 // 60-byte header in a 20-byte segment
			}
			tcp[13] = 0x02
			if err := unix.Sendto(fd, f, 0, sa); err != nil {
				return fmt.Errorf("send: %w", err)
			}
			sent++
		}
		return nil
	})
	return sent, err
}
