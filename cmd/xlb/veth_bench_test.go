package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/netns"
)

// cpuTicks returns utime+stime of a process in clock ticks.
func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return u + s, nil
}

// BenchmarkVethForwardDSR blasts b.N UDP frames from the router onto the
// lb's segment (AF_PACKET, one sender thread) and reports what one busy-
// polling xlb worker forwarded over veth in AF_XDP copy mode: forwarded
// packets per second and the CPU xlb used. veth copy mode costs the kernel
// 1.5–2 µs per packet, so this measures the kernel as much as xlb.
func BenchmarkVethForwardDSR(b *testing.B) {
	if err := netns.Available(); err != nil {
		b.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(b, netns.Options{Layout: netns.OneArm, Mode: "dsr", Backends: 2})
	cfg := fmt.Sprintf("interfaces:\n  - {name: %s, xdp: native}\nlb: {workers: 1}\napi: {listen: %s}\nservices:\n  - {name: udp, vip: %s, port: 9, protocol: udp, mode: dsr, backends: [{address: %s}, {address: %s}]}\n",
		tp.LBClientIface, apiAddr, tp.VIP, tp.Backends[0].Addr, tp.Backends[1].Addr)
	p := filepath.Join(b.TempDir(), "xlb.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	lb := startXLBBusy(b, tp, p)
	lbMAC, err := tp.LB.MAC(tp.LBClientIface)
	if err != nil {
		b.Fatal(err)
	}
	before, err := lb.stats()
	if err != nil {
		b.Fatal(err)
	}
	cpu0, _ := cpuTicks(lb.cmd.Process.Pid)
	b.ResetTimer()
	start := time.Now()
	err = tp.Router.Do(func() error {
		ifi, err := net.InterfaceByName("br0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
		sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
		copy(sa.Addr[:], lbMAC)
		f := udpFrame(lbMAC, ifi.HardwareAddr, tp.VIP.As4())
		for i := 0; i < b.N; i++ {
			binary.BigEndian.PutUint16(f[14+20:], uint16(1024+i%60000)) // vary the source port: many flows
			binary.BigEndian.PutUint16(f[14+20+6:], 0)                  // no UDP checksum
			for unix.Sendto(fd, f, 0, sa) == unix.ENOBUFS {
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	sendTime := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	b.StopTimer()
	after, err := lb.stats()
	if err != nil {
		b.Fatal(err)
	}
	cpu1, _ := cpuTicks(lb.cmd.Process.Pid)
	fwd := after.Totals.TxPackets - before.Totals.TxPackets
	secs := sendTime.Seconds()
	b.ReportMetric(float64(b.N)/secs, "sent/s")
	b.ReportMetric(float64(fwd)/secs, "fwd/s")
	b.ReportMetric(float64(fwd)/float64(b.N)*100, "%fwd")
	b.ReportMetric(float64(cpu1-cpu0)/100/(secs+0.3)*100, "%cpu-xlb")
	b.ReportMetric(0, "ns/op")
	lb.stop(b)
}

// udpFrame is an Ethernet/IPv4/UDP frame to vip:9 with 18 bytes of payload.
func udpFrame(dst, src net.HardwareAddr, vip [4]byte) []byte {
	f := make([]byte, 14+20+8+18)
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], 0x0800)
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:4], 46)
	copy(ip[12:16], []byte{10, 10, 0, 2})
	copy(ip[16:20], vip[:])
	var s uint32
	for j := 0; j < 20; j += 2 {
		s += uint32(binary.BigEndian.Uint16(ip[j:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	binary.BigEndian.PutUint16(ip[10:12], ^uint16(s))
	binary.BigEndian.PutUint16(ip[22:24], 9)
	binary.BigEndian.PutUint16(ip[24:26], 26)
	return f
}
