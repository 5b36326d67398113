// Package e2e is xlb's end-to-end benchmark over veth (`xlb-bench`,
// `make bench-e2e`): it builds client ⇄ lb ⇄ sink in network namespaces,
// sends 60-byte UDP from an XDP program run in live-frame mode
// (BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES) in the client
// namespace, counts what arrives with an XDP program on the sink, and puts
// on the lb, in turn, xlb in each mode and the baselines: a bare AF_XDP
// forwarder on internal/xsk, an in-kernel XDP forwarder, kernel IP
// forwarding and nftables DNAT; then xlb with two workers on two queues,
// and wrk to nginx through xlb fullnat, haproxy and nftables.
//
// Placement: the generator (and the sink's NAPIs, wrk and nginx) on one
// CPU, the balancer and its veths' threaded NAPIs on the other. CPU per
// packet is the balancer CPU's busy time in /proc/stat over the counting
// window, and, less sensitive to other work on the machine, the CPU time
// of the balancer's own tasks (its process or thread and NAPI kthreads).
//
// The results (Result) are saved as JSON, rendered as Markdown tables and
// an SVG chart, and written into docs/BENCHMARKS.md between its
// bench-e2e markers. See docs/BENCHMARKS.md for the method and figures.
package e2e
