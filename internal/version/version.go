// Package version holds the build version of the xlb binaries, set at link
// time with -ldflags "-X github.com/xlb/xlb/internal/version.Version=...".
package version

// Version is the release version; "dev" for untagged builds.
var Version = "dev"
