// Command xlb is the load balancer binary: `xlb run`, `xlb bench`,
// `xlb version`. It parses flags and wires packages together; the logic
// lives in the packages it calls.
package main

import (
	"fmt"
	"os"

	"github.com/xlb/xlb/internal/version"
)

const usage = `usage: xlb <command> [flags]

commands:
  run            run the load balancer (--config FILE)
  check          pre-flight report: is this host ready for the configuration (--config FILE)
  bench replay   run the real pipeline over a pcap and report ns/packet
  bench gen-pcap write realistic test traffic to a pcap
  realserver     prepare a backend for tunnel/l3dsr/dsr (decap program, VIP on lo, sysctls)
  version        print the version
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return runCmd(args[1:], os.Stdout, os.Stderr)
	case "check":
		return checkCmd(args[1:], os.Stdout, os.Stderr)
	case "bench":
		return benchCmd(args[1:], os.Stdout, os.Stderr)
	case "realserver":
		return realserverCmd(args[1:], os.Stdout, os.Stderr)
	case "version":
		if len(args) > 1 && (args[1] == "-h" || args[1] == "--help") {
			fmt.Println("usage: xlb version\n\nPrints the version of this binary.")
			return 0
		}
		fmt.Println("xlb", version.Version)
		return 0
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "xlb: unknown command %q\n%s", args[0], usage)
	return 2
}
