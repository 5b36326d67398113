package napi

import (
	"encoding/binary"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// XDPFeatures are the XDP actions and modes a driver supports, as the
// netdev family's dev-get reports them (NETDEV_A_DEV_XDP_FEATURES, enum
// netdev_xdp_act in include/uapi/linux/netdev.h; Linux 6.3+). Reading them
// changes nothing, unlike probing by attaching a program, which resets some
// drivers' rings.
type XDPFeatures uint64

// From enum netdev_xdp_act.
const (
	XDPBasic       XDPFeatures = 1 << iota // XDP_PASS, XDP_DROP, XDP_TX, XDP_ABORTED in the driver
	XDPRedirect                            // XDP_REDIRECT in the driver (AF_XDP needs it)
	XDPNdoXmit                             // the driver can be a redirect target
	XDPXSKZeroCopy                         // AF_XDP zero-copy
	XDPHWOffload                           // programs offloaded to the NIC
	XDPRxSG                                // multi-buffer (scatter-gather) receive
	XDPNdoXmitSG                           // multi-buffer redirect target
)

// Native reports whether the driver runs XDP programs itself with the
// actions an AF_XDP program needs (BASIC and REDIRECT).
func (f XDPFeatures) Native() bool { return f&(XDPBasic|XDPRedirect) == XDPBasic|XDPRedirect }

// ZeroCopy reports whether the driver supports AF_XDP zero-copy.
func (f XDPFeatures) ZeroCopy() bool { return f&XDPXSKZeroCopy != 0 }

func (f XDPFeatures) String() string {
	names := []string{"basic", "redirect", "ndo-xmit", "xsk-zerocopy", "hw-offload", "rx-sg", "ndo-xmit-sg"}
	var out []string
	for i, n := range names {
		if f&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// Device is what the netdev family's dev-get reports about an interface
// (`ynl --family netdev --do dev-get`).
type Device struct {
	Ifindex     int
	XDPFeatures XDPFeatures
	// XDPZCMaxSegs is the largest multi-buffer frame zero-copy takes
	// (reported only with XDPXSKZeroCopy).
	XDPZCMaxSegs uint32
	// XSKFeatures are the AF_XDP tx metadata features (enum
	// netdev_xsk_flags; Linux 6.8+, 0 before).
	XSKFeatures uint64
}

// From include/uapi/linux/netdev.h.
const (
	netdevCmdDevGet = 1

	netdevADevIfindex     = 1
	netdevADevXDPFeatures = 3
	netdevADevXDPZCSegs   = 4
	netdevADevXSKFeatures = 6
)

// GetDevice returns the netdev family's view of the interface, in the
// network namespace of the calling thread. Kernels without the netdev
// family (before 6.3) give an error wrapping unix.ENOENT; an unknown
// ifindex gives one wrapping unix.ENODEV.
func GetDevice(ifindex int) (Device, error) {
	c, err := dialGeneric()
	if err != nil {
		return Device{}, err
	}
	defer c.close()
	fam, err := c.family("netdev")
	if err != nil {
		return Device{}, err
	}
	var attr [8]byte
	putAttr(attr[:], netdevADevIfindex, 4)
	binary.NativeEndian.PutUint32(attr[4:], uint32(ifindex))
	msgs, err := c.request(fam, netdevCmdDevGet, 0, attr[:])
	if err != nil {
		return Device{}, fmt.Errorf("napi: dev-get ifindex %d: %w", ifindex, err)
	}
	for _, m := range msgs {
		d := Device{}
		for typ, v := range attrs(m) {
			switch typ {
			case netdevADevIfindex:
				d.Ifindex = int(nlUint(v))
			case netdevADevXDPFeatures:
				d.XDPFeatures = XDPFeatures(nlUint(v))
			case netdevADevXDPZCSegs:
				d.XDPZCMaxSegs = uint32(nlUint(v))
			case netdevADevXSKFeatures:
				d.XSKFeatures = nlUint(v)
			}
		}
		if d.Ifindex == ifindex {
			return d, nil
		}
	}
	return Device{}, fmt.Errorf("napi: dev-get ifindex %d: no answer: %w", ifindex, unix.ENODEV)
}
