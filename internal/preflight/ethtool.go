package preflight

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolFeatures reads an interface's features by name ("tx-checksum-
// ipv4", "rx-gro", "rx-lro") with the ioctls `ethtool -k` uses:
// ETHTOOL_GSSET_INFO for their number, ETHTOOL_GSTRINGS for their names
// and ETHTOOL_GFEATURES for their state. No ethtool binary is needed, and
// it works in whatever network namespace the calling thread is in.
func ethtoolFeatures(ifname string) (map[string]feature, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("ethtool: socket: %w", err)
	}
	defer unix.Close(fd)

	// struct ethtool_sset_info: cmd, reserved, sset_mask (u64), data[].
	sset := make([]byte, 16+4)
	ne := binary.NativeEndian
	ne.PutUint32(sset, unix.ETHTOOL_GSSET_INFO)
	ne.PutUint64(sset[8:], 1<<ethSSFeatures)
	if err := ethtoolIoctl(fd, ifname, sset); err != nil {
		return nil, fmt.Errorf("ethtool: %s: feature count: %w", ifname, err)
	}
	if ne.Uint64(sset[8:])&(1<<ethSSFeatures) == 0 {
		return nil, fmt.Errorf("ethtool: %s: the driver has no feature strings", ifname)
	}
	n := int(ne.Uint32(sset[16:]))
	if n <= 0 || n > 4096 {
		return nil, fmt.Errorf("ethtool: %s: %d features", ifname, n)
	}

	// struct ethtool_gstrings: cmd, string_set, len, data[len*32].
	strs := make([]byte, 12+n*ethGStringLen)
	ne.PutUint32(strs, unix.ETHTOOL_GSTRINGS)
	ne.PutUint32(strs[4:], ethSSFeatures)
	ne.PutUint32(strs[8:], uint32(n))
	if err := ethtoolIoctl(fd, ifname, strs); err != nil {
		return nil, fmt.Errorf("ethtool: %s: feature names: %w", ifname, err)
	}

	// struct ethtool_gfeatures: cmd, size, features[size] of
	// {available, requested, active, never_changed}.
	blocks := (n + 31) / 32
	gf := make([]byte, 8+blocks*16)
	ne.PutUint32(gf, unix.ETHTOOL_GFEATURES)
	ne.PutUint32(gf[4:], uint32(blocks))
	if err := ethtoolIoctl(fd, ifname, gf); err != nil {
		return nil, fmt.Errorf("ethtool: %s: features: %w", ifname, err)
	}
	return parseFeatures(strs[12:], n, gf[8:]), nil
}

const (
	ethSSFeatures  = 4  // ETH_SS_FEATURES
	ethGStringLen  = 32 // ETH_GSTRING_LEN
	featureBlockSz = 16 // struct ethtool_get_features_block
)

// parseFeatures pairs the n feature names (32-byte, NUL-padded) with their
// bits in the feature blocks.
func parseFeatures(names []byte, n int, blocks []byte) map[string]feature {
	out := make(map[string]feature, n)
	ne := binary.NativeEndian
	for i := 0; i < n && (i+1)*ethGStringLen <= len(names); i++ {
		name := unix.ByteSliceToString(names[i*ethGStringLen : (i+1)*ethGStringLen])
		b := (i / 32) * featureBlockSz
		if name == "" || b+featureBlockSz > len(blocks) {
			continue
		}
		bit := uint32(1) << (i % 32)
		out[name] = feature{
			changeable: ne.Uint32(blocks[b:])&bit != 0,   // available
			active:     ne.Uint32(blocks[b+8:])&bit != 0, // active
		}
	}
	return out
}

// ifreqData is struct ifreq with ifr_data.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

func ethtoolIoctl(fd int, ifname string, buf []byte) error {
	if len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", ifname)
	}
	ifr := ifreqData{data: unsafe.Pointer(&buf[0])}
	copy(ifr.name[:], ifname)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(buf)
	if errno != 0 {
		return errno
	}
	return nil
}

// MaxCombinedChannels is an interface's maximum and current number of
// combined channels (queue pairs), as `ethtool -l` shows them
// (ETHTOOL_GCHANNELS).
func MaxCombinedChannels(ifname string) (max, cur int, err error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("ethtool: socket: %w", err)
	}
	defer unix.Close(fd)
	// struct ethtool_channels: cmd, max_rx, max_tx, max_other,
	// max_combined, rx_count, tx_count, other_count, combined_count.
	buf := make([]byte, 9*4)
	binary.NativeEndian.PutUint32(buf, unix.ETHTOOL_GCHANNELS)
	if err := ethtoolIoctl(fd, ifname, buf); err != nil {
		return 0, 0, fmt.Errorf("ethtool -l %s: %w", ifname, err)
	}
	return int(binary.NativeEndian.Uint32(buf[16:])), int(binary.NativeEndian.Uint32(buf[32:])), nil
}
