package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/dataplane/bpf"
	"github.com/xlb/xlb/internal/netns"
	"github.com/xlb/xlb/internal/xsk"
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
	cfg := fmt.Sprintf("interfaces:\n  - {name: %s, xdp: native}\nlb: {workers: 1, cpus: [%d]}\napi: {listen: %s}\nservices:\n  - {name: udp, vip: %s, port: 9, protocol: udp, mode: dsr, backends: [{address: %s}, {address: %s}]}\n",
		tp.LBClientIface, benchCPU(), apiAddr, tp.VIP, tp.Backends[0].Addr, tp.Backends[1].Addr)
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
	err = blast(tp, lbMAC, b.N)
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
	b.Logf("xlb: runners %+v sockets %+v reasons %v", after.Runners, after.Sockets, after.Drops)
	if out, err := tp.LB.Run(context.Background(), "ip", "-s", "link", "show", tp.LBClientIface); err == nil {
		b.Logf("lb %s:\n%s", tp.LBClientIface, out)
	}
	if out, err := tp.Router.Run(context.Background(), "ip", "-s", "link", "show", "rlb"); err == nil {
		b.Logf("router rlb:\n%s", out)
	}
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

// blast sends n UDP frames (paced to XLB_BENCH_PPS frames/s when set) to VIP:9 from the router's bridge to lbMAC, with
// varying source ports (many flows), from one AF_PACKET socket.
func blast(tp *netns.Topology, lbMAC net.HardwareAddr, n int) error {
	return tp.Router.Do(func() error {
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
		pps, _ := strconv.Atoi(os.Getenv("XLB_BENCH_PPS")) // 0: as fast as possible
		start := time.Now()
		for i := 0; i < n; i++ {
			if pps > 0 && i%32 == 0 {
				for time.Since(start) < time.Duration(i)*time.Second/time.Duration(pps) {
				}
			}
			binary.BigEndian.PutUint16(f[14+20:], uint16(1024+i%60000))
			for unix.Sendto(fd, f, 0, sa) == unix.ENOBUFS {
			}
		}
		return nil
	})
}

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkVethBareForward is the baseline for BenchmarkVethForwardDSR: the
// same steering program and AF_XDP socket on the same veth, but a loop that
// only rewrites the destination MAC and sends the frame back out — no
// parsing, no conntrack, no scheduling. xlb's cost over it is the pipeline.
func BenchmarkVethBareForward(b *testing.B) {
	if err := netns.Available(); err != nil {
		b.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(b, netns.Options{Layout: netns.OneArm, Mode: "dsr", Backends: 2})
	lbMAC, err := tp.LB.MAC(tp.LBClientIface)
	if err != nil {
		b.Fatal(err)
	}
	beMAC, err := tp.Backends[0].MAC("eth0")
	if err != nil {
		b.Fatal(err)
	}
	var (
		steer *bpf.Steering
		att   *bpf.Attachment
		u     *xsk.UMEM
		sock  *xsk.Socket
	)
	err = tp.LB.Do(func() error {
		ifi, err := net.InterfaceByName(tp.LBClientIface)
		if err != nil {
			return err
		}
		if steer, err = bpf.LoadSteering(bpf.SteeringOptions{}); err != nil {
			return err
		}
		if err := steer.AddVIP(tp.VIP, 9, bpf.ProtoUDP); err != nil {
			return err
		}
		if u, err = xsk.NewUMEM(xsk.UMEMConfig{}); err != nil {
			return err
		}
		if sock, err = xsk.Open(ifi.Index, 0, u, xsk.Options{}); err != nil {
			return err
		}
		if err := steer.SetSocket(0, sock.FD()); err != nil {
			return err
		}
		att, err = steer.Attach(ifi.Index, bpf.Native)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		att.Close()
		sock.Close()
		u.Close()
		steer.Close()
	}()
	var stop atomic.Bool
	var fwd atomic.Uint64
	var cpu time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		descs := make([]xsk.Desc, 64)
		addrs := make([]uint64, 256)
		mem := u.Bytes()
		fill := func() {
			if k := u.AllocBatch(addrs[:64]); k > 0 {
				if f := sock.Fill(addrs[:k]); f < k {
					u.FreeBatch(addrs[f:k])
				}
			}
		}
		for i := 0; i < 16; i++ {
			fill()
		}
		c0 := threadCPU()
		for !stop.Load() {
			n := sock.Receive(descs)
			for i := 0; i < n; i++ {
				copy(mem[descs[i].Addr:descs[i].Addr+6], beMAC)
				copy(mem[descs[i].Addr+6:descs[i].Addr+12], lbMAC)
			}
			if n > 0 {
				sent := sock.Transmit(descs[:n])
				for _, d := range descs[sent:n] {
					u.Free(d.Addr)
				}
				fwd.Add(uint64(sent))
			}
			if k := sock.Complete(addrs); k > 0 {
				u.FreeBatch(addrs[:k])
			}
			fill()
		}
		cpu = threadCPU() - c0
	}()
	b.ResetTimer()
	start := time.Now()
	if err := blast(tp, lbMAC, b.N); err != nil {
		b.Fatal(err)
	}
	secs := time.Since(start).Seconds()
	time.Sleep(300 * time.Millisecond)
	b.StopTimer()
	stop.Store(true)
	<-done
	n := fwd.Load()
	b.ReportMetric(float64(b.N)/secs, "sent/s")
	b.ReportMetric(float64(n)/secs, "fwd/s")
	b.ReportMetric(float64(n)/float64(b.N)*100, "%fwd")
	b.ReportMetric(cpu.Seconds()/(secs+0.3)*100, "%cpu-fwd")
	b.ReportMetric(0, "ns/op")
}

// benchCPU is the CPU the benchmarked worker is pinned to (XLB_BENCH_CPU,
// default 1).
func benchCPU() int {
	if n, err := strconv.Atoi(os.Getenv("XLB_BENCH_CPU")); err == nil {
		return n
	}
	return 1
}
