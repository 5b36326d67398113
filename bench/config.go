package bench

import (
	"fmt"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/dataplane"
)

// LoadConfig compiles a configuration file for replay: one synthetic
// interface stands in for the NICs.
func LoadConfig(path string) (*dataplane.Snapshot, *conntrack.Table, error) {
	f, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	spec, ctc, err := f.Compile()
	if err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", path, err)
	}
	mtu := f.LB.MTU
	if mtu == 0 {
		mtu = 1500
	}
	spec.Ifaces = []dataplane.Iface{{MAC: [6]byte{2, 0, 0, 0, 0, 0xaa}, MTU: mtu}}
	snap, err := dataplane.Build(spec, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", path, err)
	}
	ct, err := conntrack.New(ctc, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", path, err)
	}
	return snap, ct, nil
}
