package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
)

var configCommands = []*command{
	{path: "config get", args: "[-o yaml|json]", summary: "the running configuration",
		detail: "Prints the accepted configuration, defaults filled in, as YAML (the default) or JSON:\n" +
			"a file `xlb run --config` reads as it is. GET /api/v1/config.\n\n" +
			"  xlbctl config get > xlb.yaml",
		run: configGet},
	{path: "config apply", args: "-f FILE", summary: "replace the configuration",
		detail: "Replaces the configuration with FILE (YAML, or JSON for a .json file or a document\n" +
			"starting with {; -f - reads stdin), validated as one unit: a bad file changes nothing.\n" +
			"Keys that need a restart of xlb (interfaces, lb.workers, lb.conntrack, api.listen, ...)\n" +
			"must keep their running values. PUT /api/v1/config.\n\n" +
			"  xlbctl config get > xlb.yaml && $EDITOR xlb.yaml && xlbctl config apply -f xlb.yaml",
		setup: func(fs *flag.FlagSet) {
			fs.String("f", "", "the configuration `FILE` (- = stdin)")
		},
		run: configApply},
}

// configView is what config apply's table reads.
type configView struct {
	Services []struct {
		Name string `json:"name"`
	} `json:"services"`
}

func configGet(a *app, c *command, args []string) error {
	if _, _, err := c.parse(a, args, 0, 0); err != nil {
		return err
	}
	cl, err := a.client()
	if err != nil {
		return err
	}
	raw, err := cl.get(nil, api("config")...)
	if err != nil {
		return err
	}
	if a.format == fmtJSON {
		return writeJSON(a.stdout, raw)
	}
	y, err := jsonToYAML(raw)
	if err != nil {
		return fmt.Errorf("the API's answer is not JSON: %w", err)
	}
	_, err = a.stdout.Write(y)
	return err
}

func configApply(a *app, c *command, args []string) error {
	fs, _, err := c.parse(a, args, 0, 0)
	if err != nil {
		return err
	}
	if !flagSet(fs, "f") || flagString(fs, "f") == "" {
		return &usageError{cmd: c, msg: "config apply: missing -f FILE"}
	}
	name := flagString(fs, "f")
	data, err := a.readFile(name)
	if err != nil {
		return err
	}
	ctype := "application/yaml"
	if isJSONFile(name, data) {
		ctype = "application/json"
	}
	cl, err := a.client()
	if err != nil {
		return err
	}
	raw, err := cl.do(request{method: http.MethodPut, path: api("config"), body: data, ctype: ctype})
	if err != nil {
		return err
	}
	var v configView
	return a.emit(raw, &v, func(w io.Writer) {
		fmt.Fprintf(w, "configuration applied: %d services\n", len(v.Services))
	})
}

func versionCmd(a *app, c *command, args []string) error {
	fs, _, err := c.parse(a, args, 0, 0)
	if err != nil {
		return err
	}
	if !flagBool(fs, "server") {
		if a.format == fmtTable {
			fmt.Fprintln(a.stdout, "xlbctl", versionString())
			return nil
		}
		raw, _ := json.Marshal(map[string]string{"client": versionString()})
		return a.emit(raw, nil, nil)
	}
	cl, err := a.client()
	if err != nil {
		return err
	}
	raw, err := cl.get(nil, api("openapi.json")...)
	if err != nil {
		return err
	}
	var doc struct {
		Info struct {
			Version string `json:"version"`
		} `json:"info"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("the API's openapi.json is not JSON: %w", err)
	}
	out, _ := json.Marshal(map[string]string{"client": versionString(), "server": doc.Info.Version, "api": cl.base.String()})
	return a.emit(out, nil, func(w io.Writer) {
		fmt.Fprintf(w, "xlbctl %s\nxlb %s at %s\n", versionString(), doc.Info.Version, cl.base)
	})
}
