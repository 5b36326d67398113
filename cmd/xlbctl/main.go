// Command xlbctl is the operator's CLI over xlb's REST API. The API is not
// built yet; today xlbctl only reports its version.
package main

import (
	"fmt"
	"os"

	"github.com/xlb/xlb/internal/version"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("xlbctl", version.Version)
		return
	}
	fmt.Fprintln(os.Stderr, "usage: xlbctl version\n(the REST API and its commands are not built yet)")
	os.Exit(2)
}
