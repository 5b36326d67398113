package napi

import (
	"errors"
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/testutil"
)

func TestXDPFeatures(t *testing.T) {
	f := XDPBasic | XDPRedirect | XDPNdoXmit
	if !f.Native() || f.ZeroCopy() || f.String() != "basic,redirect,ndo-xmit" {
		t.Errorf("%v: Native %v ZeroCopy %v", f, f.Native(), f.ZeroCopy())
	}
	if XDPBasic.Native() || XDPFeatures(0).String() != "none" || !(XDPXSKZeroCopy | XDPRedirect).ZeroCopy() {
		t.Error("basic alone is not native; 0 is none; xsk-zerocopy is zero-copy")
	}
}

// TestGetDeviceVeth reads a veth's XDP features over netlink: native XDP
// (basic and redirect), no zero-copy.
func TestGetDeviceVeth(t *testing.T) {
	testutil.RequireAFXDP(t)
	ns := testutil.NewNetns(t, "napidev")
	testutil.IPCmd(t, "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	var d Device
	var ifindex int
	var missing error
	err := testutil.InNetns(ns, func() error {
		ifi, err := net.InterfaceByName("v0")
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		d, err = GetDevice(ifi.Index)
		_, missing = GetDevice(ifi.Index + 1000)
		return err
	})
	if errors.Is(err, unix.ENOENT) {
		t.Skipf("kernel without the netdev family (Linux < 6.3): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if d.Ifindex != ifindex || !d.XDPFeatures.Native() || d.XDPFeatures.ZeroCopy() {
		t.Errorf("veth: %+v (%v), want native XDP without zero-copy", d, d.XDPFeatures)
	}
	if missing == nil {
		t.Error("dev-get of an ifindex that does not exist: no error")
	}
	t.Logf("veth v0: %+v (%v); missing ifindex: %v", d, d.XDPFeatures, missing)
}
