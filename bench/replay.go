package bench

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/dataplane"
	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
)

// Capture is a pcap held in memory.
type Capture struct {
	Frames [][]byte
	Times  []time.Time
}

// ReadPcap reads every frame of an Ethernet pcap into memory.
func ReadPcap(r io.Reader) (*Capture, error) {
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("bench: read pcap: %w", err)
	}
	if pr.LinkType() != layers.LinkTypeEthernet {
		return nil, fmt.Errorf("bench: pcap link type %v, want Ethernet", pr.LinkType())
	}
	c := &Capture{}
	for {
		data, ci, err := pr.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		if err != nil {
			return nil, fmt.Errorf("bench: read pcap frame %d: %w", len(c.Frames)+1, err)
		}
		c.Frames = append(c.Frames, data)
		c.Times = append(c.Times, ci.Timestamp)
	}
}

// ReplayOptions control Replay.
type ReplayOptions struct {
	Loops   int       // passes over the capture (default 1)
	Workers int       // workers sharing one conntrack table (default 1)
	Write   io.Writer // if set, every transmitted frame goes here as a pcap
}

// ReplayResult is what a replay measured. NsPerPacket is pipeline time per
// packet summed over workers (CPU cost); Mpps is packets over wall time.
type ReplayResult struct {
	Packets         uint64            `json:"packets"`
	Workers         int               `json:"workers"`
	Seconds         float64           `json:"seconds"`
	NsPerPacket     float64           `json:"ns_per_packet"`
	Mpps            float64           `json:"mpps"`
	AllocsPerPacket float64           `json:"allocs_per_packet"`
	Verdicts        map[string]uint64 `json:"verdicts"`
	Reasons         map[string]uint64 `json:"reasons"`
	NewFlows        uint64            `json:"new_flows"`
	Stateless       uint64            `json:"stateless"`
	ConntrackLen    int               `json:"conntrack_entries"`
	Written         int               `json:"written,omitempty"`
}

const (
	frameRoom = 256  // headroom in front of every frame, as in the UMEM
	frameSize = 4096 // buffer per frame
)

// Replay runs the real pipeline over the capture. Frames are partitioned
// over workers by a hash of their addresses (as RSS would) and copied into
// frame buffers before each batch, untimed, as a NIC would DMA them; only
// Worker.Process is timed. Pipeline time runs from the capture's own
// timestamps, advanced by the capture's length on every loop.
func Replay(s *dataplane.Snapshot, ct *conntrack.Table, c *Capture, o ReplayOptions) (*ReplayResult, error) {
	if o.Loops <= 0 {
		o.Loops = 1
	}
	if o.Workers <= 0 {
		o.Workers = 1
	}
	if len(c.Frames) == 0 {
		return nil, errors.New("bench: empty capture")
	}
	for i, f := range c.Frames {
		if len(f) > frameSize-frameRoom {
			return nil, fmt.Errorf("bench: frame %d is %d bytes, larger than %d", i+1, len(f), frameSize-frameRoom)
		}
	}
	// Partition by address hash so every packet of a flow meets the same worker.
	parts := make([][]int, o.Workers)
	var p packet.Parsed
	for i, f := range c.Frames {
		k := 0
		if packet.Decode(f, &p) == packet.OK {
			var h uint32
			for _, b := range p.Src {
				h = h*31 + uint32(b)
			}
			for _, b := range p.Dst {
				h = h*31 + uint32(b)
			}
			k = int(h % uint32(o.Workers))
		}
		parts[k] = append(parts[k], i)
	}
	t0 := c.Times[0]
	span := c.Times[len(c.Times)-1].Sub(t0) + time.Second
	clock := func(loop, i int) int64 {
		return int64(time.Second) + int64(loop)*int64(span) + int64(c.Times[i].Sub(t0))
	}
	var pw *pcapgo.Writer
	var wmu sync.Mutex
	res := &ReplayResult{Workers: o.Workers, Verdicts: map[string]uint64{}, Reasons: map[string]uint64{}}
	if o.Write != nil {
		pw = pcapgo.NewWriter(o.Write)
		if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
			return nil, fmt.Errorf("bench: write pcap: %w", err)
		}
	}
	workers := make([]*dataplane.Worker, o.Workers)
	busy := make([]time.Duration, o.Workers)
	errs := make([]error, o.Workers)
	// Everything a worker needs is allocated before the measurement starts,
	// so the allocation count is the pipeline's (plus goroutine start-up).
	type wstate struct {
		frames  []encap.Frame
		results []dataplane.Result
	}
	ws := make([]wstate, o.Workers)
	for k := range workers {
		workers[k] = dataplane.NewWorker(ct, 0)
		ws[k].frames = make([]encap.Frame, dataplane.BatchSize)
		ws[k].results = make([]dataplane.Result, dataplane.BatchSize)
		mem := make([]byte, dataplane.BatchSize*frameSize)
		for i := range ws[k].frames {
			ws[k].frames[i].Buf = mem[i*frameSize : (i+1)*frameSize]
		}
	}
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	var wg sync.WaitGroup
	for k := range workers {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			w := workers[k]
			frames, results := ws[k].frames, ws[k].results
			idx := parts[k]
			for loop := 0; loop < o.Loops; loop++ {
				for b := 0; b < len(idx); b += dataplane.BatchSize {
					n := min(dataplane.BatchSize, len(idx)-b)
					for j := 0; j < n; j++ {
						src := c.Frames[idx[b+j]]
						frames[j].Off, frames[j].Len = frameRoom, len(src)
						copy(frames[j].Buf[frameRoom:], src)
					}
					now := clock(loop, idx[b])
					t := time.Now()
					w.Process(s, frames[:n], results[:n], now)
					busy[k] += time.Since(t)
					if pw != nil {
						ts := c.Times[idx[b]].Add(time.Duration(loop) * span)
						if err := writeTx(pw, &wmu, frames[:n], results[:n], ts, res); err != nil {
							errs[k] = err
							return
						}
					}
				}
			}
		}(k)
	}
	wg.Wait()
	wall := time.Since(start)
	runtime.ReadMemStats(&ms1)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var total dataplane.Counters
	var cpu time.Duration
	for k, w := range workers {
		cn := w.Counters()
		total.Add(&cn)
		cpu += busy[k]
	}
	res.Packets = total.RxPackets
	res.Seconds = wall.Seconds()
	res.NsPerPacket = float64(cpu.Nanoseconds()) / float64(res.Packets)
	res.Mpps = float64(res.Packets) / wall.Seconds() / 1e6
	// Writing the output pcap allocates in gopacket, so with Write the
	// figure would not be the pipeline's: it is reported as -1 (unknown).
	if o.Write == nil {
		res.AllocsPerPacket = float64(ms1.Mallocs-ms0.Mallocs) / float64(res.Packets)
	} else {
		res.AllocsPerPacket = -1
	}
	res.Verdicts["tx"] = total.TxPackets
	res.Verdicts["pass"] = total.Passed
	res.Verdicts["drop"] = total.Dropped
	for r := dataplane.Reason(1); r < dataplane.NumReasons; r++ {
		if n := total.Reasons[r]; n > 0 {
			res.Reasons[r.String()] = n
		}
	}
	res.NewFlows, res.Stateless = total.NewFlows, total.Stateless
	res.ConntrackLen = ct.Len()
	return res, nil
}

func writeTx(pw *pcapgo.Writer, mu *sync.Mutex, frames []encap.Frame, res []dataplane.Result, ts time.Time, r *ReplayResult) error {
	mu.Lock()
	defer mu.Unlock()
	for i := range frames {
		if res[i].Action != dataplane.ActTx {
			continue
		}
		b := frames[i].Bytes()
		if err := pw.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b)}, b); err != nil {
			return fmt.Errorf("bench: write pcap: %w", err)
		}
		r.Written++
	}
	return nil
}
