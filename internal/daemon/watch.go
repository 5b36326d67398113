package daemon

import (
	"time"

	"github.com/xlb/xlb/dataplane"
)

// badChecksumWarnEvery is how often, at most, the bad-checksum warning is
// logged per interface.
const badChecksumWarnEvery = 10 * time.Second

// watchLoop turns counters that mean "traffic cannot flow" into log
// lines an operator sees: a silent counter is a silent failure.
func (d *Daemon) watchLoop() {
	defer d.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var seen [dataplane.MaxIfaces]uint64
	var warned [dataplane.MaxIfaces]time.Time
	for {
		select {
		case <-d.quit:
			return
		case <-t.C:
		}
		var sum dataplane.Counters
		for _, w := range d.workers {
			c := w.Counters()
			sum.Add(&c)
		}
		for i, ifc := range d.ifaces {
			n := sum.BadChecksum[i]
			if n == seen[i] {
				continue
			}
			if time.Since(warned[i]) >= badChecksumWarnEvery {
				d.log.Warn().Str("interface", ifc.net.Name).Uint64("bad_checksum", n).Uint64("new", n-seen[i]).
					Msg("new flows arrive with bad TCP/UDP checksums and are dropped: the sender most likely leaves checksums to offload " +
						"(CHECKSUM_PARTIAL: veth, containers, VMs). Turn tx checksum offload off on the sending interface " +
						"(ethtool -K <if> tx off) or set interfaces[].checksum: fix for " + ifc.net.Name)
				warned[i] = time.Now()
				seen[i] = n
			}
		}
	}
}
