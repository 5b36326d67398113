package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// command is one leaf of the command tree ("service add", "stats").
type command struct {
	path    string                 // "backend drain"
	args    string                 // positional arguments for the usage line: "SERVICE BACKEND"
	summary string                 // one line
	detail  string                 // what it does, which API call it makes
	setup   func(fs *flag.FlagSet) // defines its flags (nil: none)
	run     func(a *app, c *command, args []string) error
}

// commands is every command, in the order help lists them.
var commands []*command

func init() {
	commands = append(commands, serviceCommands...)
	commands = append(commands, backendCommands...)
	commands = append(commands, infoCommands...)
	commands = append(commands, configCommands...)
	commands = append(commands, &command{path: "version", args: "[--server]", summary: "print the version",
		detail: "Prints xlbctl's version; with --server also the version of the xlb answering at --api.",
		setup:  func(fs *flag.FlagSet) { fs.Bool("server", false, "also ask the xlb API for its version") }, run: versionCmd})
}

// groups are the commands with subcommands.
var groups = map[string]string{
	"service": "services: list, get, add, rm",
	"backend": "a service's backends: list, add, rm, drain, enable, disable, weight",
	"config":  "the whole configuration: get, apply",
}

func findGroup(name string) string {
	if _, ok := groups[name]; ok {
		return name
	}
	return ""
}

func groupVerbs(g string) []string {
	var vs []string
	for _, c := range commands {
		if v, ok := strings.CutPrefix(c.path, g+" "); ok {
			vs = append(vs, v)
		}
	}
	return vs
}

// findCommand finds the command named by the first one or two words.
func findCommand(words []string) *command {
	want := words[0]
	if findGroup(want) != "" {
		if len(words) < 2 {
			return nil
		}
		want += " " + words[1]
	}
	for _, c := range commands {
		if c.path == want {
			return c
		}
	}
	return nil
}

func printGroupHelp(w io.Writer, g string) {
	fmt.Fprintf(w, "usage: xlbctl %s <subcommand> [flags] [arguments]\n\n%s\n\n", g, strings.ToUpper(groups[g][:1])+groups[g][1:])
	for _, c := range commands {
		if strings.HasPrefix(c.path, g+" ") {
			fmt.Fprintf(w, "  %-42s %s\n", c.path+" "+c.args, c.summary)
		}
	}
	fmt.Fprintf(w, "\n'xlbctl %s <subcommand> --help' shows a subcommand's flags; 'xlbctl --help' the global flags.\n", g)
}

func (c *command) synopsis() string {
	if c.args == "" {
		return c.path
	}
	return c.path + " " + c.args
}

// printHelp writes the command's usage with the flags of a fresh flag set.
func (c *command) printHelp(w io.Writer) {
	fs := c.flags()
	c.usage(w, fs)
}

func (c *command) usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: xlbctl %s\n\n%s\n", c.synopsis(), c.detail)
	has := false
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprint(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	fmt.Fprint(w, "\nGlobal flags: --api URL, --token-file FILE, -o table|json|yaml, --timeout D, --cacert FILE (see 'xlbctl --help').\n")
}

// flags makes the command's flag set, the same for --help as for a run;
// the command reads its values back with flagString and friends.
func (c *command) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("xlbctl "+c.path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if c.setup != nil {
		c.setup(fs)
	}
	return fs
}

// usageError is a command line xlbctl cannot run: exit status 2.
type usageError struct {
	cmd   *command // nil: a group or the top level
	group string   // "service": the usage of a group
	msg   string
}

func (e *usageError) Error() string { return e.msg }

// errHelp says help was printed: exit status 0.
var errHelp = errors.New("help printed")

// parse parses a command's arguments: flags may come before, between or
// after the positional arguments ("--" ends the flags). It checks the
// number of positional arguments (max -1: any), prints help for -h/--help
// and returns the flag set and the positionals.
func (c *command) parse(a *app, args []string, min, max int) (*flag.FlagSet, []string, error) {
	fs := c.flags()
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.usage(a.stdout, fs)
				return nil, nil, errHelp
			}
			return nil, nil, &usageError{cmd: c, msg: fmt.Sprintf("%s: %s", c.path, strings.TrimPrefix(err.Error(), "flag: "))}
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(pos) < min:
		missing := strings.Fields(c.args)
		name := "an argument"
		if len(pos) < len(missing) {
			name = missing[len(pos)]
			if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
				name = name[1 : len(name)-1]
			}
		}
		return nil, nil, &usageError{cmd: c, msg: fmt.Sprintf("%s: missing %s", c.path, name)}
	case max >= 0 && len(pos) > max:
		return nil, nil, &usageError{cmd: c, msg: fmt.Sprintf("%s: unexpected argument %q", c.path, pos[max])}
	}
	return fs, pos, nil
}

// flagString reads a string flag back from a parsed flag set.
func flagString(fs *flag.FlagSet, name string) string { return fs.Lookup(name).Value.String() }

// flagSet reports whether the flag was given.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// flagInt reads an int flag back.
func flagInt(fs *flag.FlagSet, name string) int {
	return fs.Lookup(name).Value.(flag.Getter).Get().(int)
}

// flagBool reads a bool flag back.
func flagBool(fs *flag.FlagSet, name string) bool {
	return fs.Lookup(name).Value.(flag.Getter).Get().(bool)
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}
func (l *listFlag) Get() any { return []string(*l) }
