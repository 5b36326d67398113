// Package packet provides zero-allocation header views over raw frames,
// a decoder that fills a reused flow struct (Parsed), and Internet
// checksums (full and incremental, RFC 1071 / RFC 1624).
//
// The views follow gVisor's pkg/tcpip/header: a view is a named []byte and
// accessors read fields with encoding/binary. Views do not check lengths;
// Decode validates a frame once at ingress and records offsets in Parsed so
// later stages (the rewrites in package encap) index the frame without
// re-checking. Nothing in this package allocates.
//
// Trade-offs worth knowing:
//   - Addresses are copied into Parsed (16 bytes each, IPv4 in the first four)
//     so that flow keys can be built without touching the frame again.
//   - Only one 802.1Q tag is accepted; QinQ frames are reported as
//     unsupported rather than guessed at.
//   - IPv6 extension headers are skipped up to MaxExtHeaders; a routing header
//     with segments left is reported as unsupported because the transport
//     checksum would then cover an address this package cannot see.
package packet
