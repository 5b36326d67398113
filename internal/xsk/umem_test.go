package xsk

import (
	"errors"
	"testing"
	"time"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		ok   bool
	}{
		{"zero value", Options{}, true},
		{"explicit", Options{RxSize: 512, TxSize: 256, FillSize: 1024, CompletionSize: 256}, true},
		{"rx not power of two", Options{RxSize: 1000}, false},
		{"tx not power of two", Options{TxSize: 3}, false},
		{"fill smaller than rx", Options{RxSize: 1024, FillSize: 512}, false},
		{"fill equal to rx", Options{RxSize: 1024, FillSize: 1024}, true},
		{"completion smaller than tx", Options{TxSize: 1024, CompletionSize: 512}, false},
		{"too large", Options{RxSize: MaxRingSize * 2}, false},
		{"bad mode", Options{Mode: 7}, false},
		{"negative backoff", Options{BindBackoff: -1}, false},
		{"busy poll", Options{BusyPollTimeout: 50 * time.Microsecond, BusyPollBudget: 256}, true},
		{"busy poll budget too large", Options{BusyPollBudget: MaxBusyPollBudget + 1}, false},
		{"negative busy poll budget", Options{BusyPollBudget: -1}, false},
		{"busy poll timeout below 1µs", Options{BusyPollTimeout: time.Nanosecond}, false},
		{"negative busy poll timeout", Options{BusyPollTimeout: -time.Microsecond}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if tc.ok && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want ErrInvalidConfig", err)
			}
		})
	}
	d := Options{}.withDefaults()
	if d.FillSize != 2*d.RxSize || d.CompletionSize != d.TxSize {
		t.Errorf("defaults: fill %d rx %d completion %d tx %d", d.FillSize, d.RxSize, d.CompletionSize, d.TxSize)
	}
	if d.BusyPollTimeout != DefaultBusyPollTimeout || d.BusyPollBudget != DefaultBusyPollBudget {
		t.Errorf("busy-poll defaults: %v budget %d", d.BusyPollTimeout, d.BusyPollBudget)
	}
	if d := (Options{RxSize: 256}).withDefaults(); d.FillSize != 512 {
		t.Errorf("fill default for rx 256 = %d, want 512", d.FillSize)
	}
}

func TestUMEMConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		c  UMEMConfig
		ok bool
	}{
		{UMEMConfig{}, true},
		{UMEMConfig{FrameSize: 2048}, true},
		{UMEMConfig{FrameSize: 3000}, false},
		{UMEMConfig{FrameSize: 8192}, false},
		{UMEMConfig{FrameSize: 2048, Headroom: 512}, false}, // 512+256+1514 > 2048
		{UMEMConfig{FrameSize: 4096, Headroom: 2048}, true},
		{UMEMConfig{FrameCount: 1 << 23}, false},
	} {
		err := tc.c.Validate()
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidConfig)) {
			t.Errorf("%+v: got %v, want ok=%v", tc.c, err, tc.ok)
		}
	}
}

func newTestUMEM(t testing.TB, cfg UMEMConfig) *UMEM {
	t.Helper()
	u, err := NewUMEM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func TestUMEMFrames(t *testing.T) {
	u := newTestUMEM(t, UMEMConfig{FrameSize: 2048, FrameCount: 4, Headroom: 128})
	if len(u.Bytes()) != 4*2048 || u.FreeFrames() != 4 || u.DataOffset() != 128+256 {
		t.Fatalf("len %d free %d dataoff %d", len(u.Bytes()), u.FreeFrames(), u.DataOffset())
	}
	var got []uint64
	for {
		a, ok := u.Alloc()
		if !ok {
			break
		}
		got = append(got, a)
	}
	want := []uint64{0, 2048, 4096, 6144}
	if len(got) != 4 {
		t.Fatalf("allocated %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("allocated %v, want %v", got, want)
		}
	}
	// Free masks an address inside the frame back to its base; the stack
	// is LIFO.
	u.Free(4096 + 384 + 17)
	u.Free(2048)
	if a, _ := u.Alloc(); a != 2048 {
		t.Fatalf("Alloc after Free(2048) = %d", a)
	}
	if a, _ := u.Alloc(); a != 4096 {
		t.Fatalf("Alloc after Free(4096+401) = %d", a)
	}
	u.FreeBatch([]uint64{0, 2048 + 1000, 4096, 6144 + 2047})
	batch := make([]uint64, 8)
	if n := u.AllocBatch(batch); n != 4 || batch[0] != 0 || batch[1] != 2048 || batch[2] != 4096 || batch[3] != 6144 {
		t.Fatalf("AllocBatch = %d %v", n, batch)
	}
	u.FreeBatch(batch[:4])
	func() {
		defer func() {
			if recover() == nil {
				t.Error("freeing a fifth frame into a 4-frame UMEM did not panic")
			}
		}()
		u.Free(0)
	}()
}

func TestUMEMFrameAndPrepend(t *testing.T) {
	u := newTestUMEM(t, UMEMConfig{FrameSize: 2048, FrameCount: 2})
	d := Desc{Addr: 2048 + u.DataOffset(), Len: 100}
	f := u.Frame(d.Addr, d.Len)
	if len(f) != 100 || cap(f) != int(2048-u.DataOffset()) {
		t.Fatalf("frame len %d cap %d", len(f), cap(f))
	}
	f[0] = 0xAB
	if u.Bytes()[d.Addr] != 0xAB {
		t.Fatal("Frame is not a view of the UMEM")
	}
	if h := u.Headroom(d.Addr); h != uint32(u.DataOffset()) {
		t.Fatalf("headroom %d", h)
	}
	if tr := u.Tailroom(d.Addr, d.Len); tr != 2048-uint32(u.DataOffset())-100 {
		t.Fatalf("tailroom %d", tr)
	}
	if !u.Prepend(&d, 40) || d.Addr != 2048+u.DataOffset()-40 || d.Len != 140 {
		t.Fatalf("prepend 40: %+v", d)
	}
	if u.Frame(d.Addr, d.Len)[40] != 0xAB {
		t.Fatal("prepend moved the packet")
	}
	if u.Prepend(&d, u.Headroom(d.Addr)+1) {
		t.Fatal("prepend beyond the frame start succeeded")
	}
	if !u.Prepend(&d, u.Headroom(d.Addr)) || d.Addr != 2048 {
		t.Fatalf("prepend all headroom: %+v", d)
	}
}

func TestUMEMRefcount(t *testing.T) {
	u, err := NewUMEM(UMEMConfig{FrameCount: 16})
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := NewMemSocket(u, Options{RxSize: 8, TxSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// The socket still holds a reference: the memory stays mapped.
	u.Bytes()[0] = 1
	if _, _, err := NewMemSocket(u, Options{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("socket on closed UMEM: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if u.Bytes() != nil {
		t.Fatal("UMEM still mapped after last close")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second socket Close: %v", err)
	}
	var d [4]Desc
	if s.Receive(d[:]) != 0 || s.Transmit(d[:]) != 0 {
		t.Fatal("closed socket moved descriptors")
	}
}
