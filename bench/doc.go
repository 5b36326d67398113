// Package bench measures xlb without a NIC: Replay runs the real dataplane
// pipeline over frames read from a pcap, and Generate writes realistic
// traffic (complete TCP connections with Zipf-popular flows, an IPv4/IPv6
// mix and some junk) to a pcap.
package bench
