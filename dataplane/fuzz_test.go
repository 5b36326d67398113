package dataplane

import (
	"testing"

	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
)

// FuzzProcess feeds arbitrary frames to a worker serving one service per
// mode (IPv4 and IPv6): the pipeline must never panic, must give every
// frame a valid verdict with a reason when it is not transmitted, and
// whatever it transmits must stay inside its buffer and decode.
func FuzzProcess(f *testing.F) {
	modes := []Mode{ModeDSR, ModeTunnel, ModeL3DSR, ModeNAT, ModeFullNAT}
	var spec Spec
	for i, m := range modes {
		for _, v6 := range []bool{false, true} {
			s := testSpec(m, SchedMaglev, v6, 2)
			svc := s.Services[0]
			svc.Name = m.String() + map[bool]string{false: "4", true: "6"}[v6]
			svc.Port = uint16(80 + i)
			for j := range svc.Backends {
				svc.Backends[j].Address = svc.Backends[j].Address.Next()
				for k := 0; k < 2*i; k++ {
					svc.Backends[j].Address = svc.Backends[j].Address.Next()
				}
				if m == ModeNAT || m == ModeFullNAT {
					svc.Backends[j].Port = uint16(8080 + i)
				}
			}
			if spec.Ifaces == nil {
				spec = s
				spec.Services = nil
			}
			spec.Services = append(spec.Services, svc)
		}
	}
	snap, err := Build(spec, nil)
	if err != nil {
		f.Fatal(err)
	}
	for i := range modes {
		f.Add(pkt{src: client(1), dst: vip4, sport: 1000, dport: uint16(80 + i), flags: "S"}.bytes(f))
		f.Add(pkt{src: client6(1), dst: vip6, sport: 1000, dport: uint16(80 + i), flags: "PA", payload: 30}.bytes(f))
	}
	f.Add(icmpEcho(f, client(2), vip4))
	f.Add([]byte{})
	ct := newCT(f, 1<<10)
	w := NewWorker(ct, 0)
	now := sec
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 3000 {
			return
		}
		now += 1000
		fr := []encap.Frame{frameOf(b)}
		res := make([]Result, 1)
		w.Process(snap, fr, res, now)
		r := res[0]
		switch r.Action {
		case ActTx:
			if fr[0].Off < 0 || fr[0].Off+fr[0].Len > len(fr[0].Buf) {
				t.Fatalf("frame outside its buffer: off %d len %d cap %d", fr[0].Off, fr[0].Len, len(fr[0].Buf))
			}
			var p packet.Parsed
			if rs := packet.Decode(fr[0].Bytes(), &p); rs != packet.OK {
				t.Fatalf("transmitted a frame that does not decode: %v", rs)
			}
		case ActDrop, ActPass:
			if r.Reason == ReasonNone || r.Reason >= NumReasons {
				t.Fatalf("%v without a reason", r.Action)
			}
		default:
			t.Fatalf("action %d", r.Action)
		}
	})
}
