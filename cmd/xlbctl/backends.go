package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

const backendArg = "\nBACKEND is the backend's address, or address:port / [address]:port when the\nservice has that address on several ports."

var backendCommands = []*command{
	{path: "backend list", args: "SERVICE", summary: "a service's backends",
		detail: "Lists a service's backends: port (- = the client's destination port), weight, state,\n" +
			"health with the last check's result, flows in the connection table and packets.\n" +
			"GET /api/v1/services/SERVICE/backends.",
		run: backendList},
	{path: "backend add", args: "SERVICE ADDR[:PORT]", summary: "add a backend",
		detail: "Adds a backend to a service. POST /api/v1/services/SERVICE/backends.\n\n" +
			"  xlbctl backend add web 10.0.0.13 --weight 50\n  xlbctl backend add web [2001:db8::13]:8080",
		setup: func(fs *flag.FlagSet) {
			fs.Int("weight", 100, "weight `N` (0..65536; 0 takes no new flows)")
			fs.String("state", "", "active (default), draining or disabled")
			fs.String("mac", "", "static next-hop MAC address (default: resolved by ARP/ND)")
			fs.String("interface", "", "egress `interface` (default: the route's)")
		},
		run: backendAdd},
	{path: "backend rm", args: "SERVICE BACKEND", summary: "remove a backend",
		detail: "Removes a backend; its flows are rescheduled to the others.\nDELETE /api/v1/services/SERVICE/backends/BACKEND." + backendArg,
		run:    backendRm},
	{path: "backend drain", args: "SERVICE BACKEND", summary: "keep its flows, send it no new ones",
		detail: "Sets the backend's state to draining: established flows stay on it, new flows go to the\n" +
			"others. PATCH /api/v1/services/SERVICE/backends/BACKEND {\"state\": \"draining\"}." + backendArg,
		run: backendState("draining")},
	{path: "backend enable", args: "SERVICE BACKEND", summary: "make it active",
		detail: "Sets the backend's state to active: it takes new flows again.\n" +
			"PATCH /api/v1/services/SERVICE/backends/BACKEND {\"state\": \"active\"}." + backendArg,
		run: backendState("active")},
	{path: "backend disable", args: "SERVICE BACKEND", summary: "take it out of service",
		detail: "Sets the backend's state to disabled: it takes no flows and is not health checked;\n" +
			"its flows are rescheduled. PATCH /api/v1/services/SERVICE/backends/BACKEND {\"state\": \"disabled\"}." + backendArg,
		run: backendState("disabled")},
	{path: "backend weight", args: "SERVICE BACKEND N", summary: "set its weight",
		detail: "Sets the backend's weight (0..65536; 0 takes no new flows). Established flows keep\n" +
			"their backend. PATCH /api/v1/services/SERVICE/backends/BACKEND {\"weight\": N}." + backendArg,
		run: backendWeight},
}

func backendList(a *app, c *command, args []string) error {
	_, pos, cl, err := c.parseClient(a, args, 1, 1)
	if err != nil {
		return err
	}
	raw, err := cl.get(nil, api("services", pos[0], "backends")...)
	if err != nil {
		return err
	}
	var l backendListView
	return a.emit(raw, &l, func(w io.Writer) {
		if len(l.Backends) == 0 {
			fmt.Fprintf(w, "service %s has no backends\n", pos[0])
			return
		}
		backendTable(w, l.Backends)
	})
}

// backendTable writes ADDRESS PORT WEIGHT STATE HEALTH FLOWS PACKETS.
func backendTable(w io.Writer, bs []backendView) {
	row(w, "ADDRESS", "PORT", "WEIGHT", "STATE", "HEALTH", "FLOWS", "PACKETS")
	for _, b := range bs {
		port := "-"
		if b.Port != 0 {
			port = strconv.Itoa(b.Port)
		}
		weight := "-"
		if b.Weight != nil {
			weight = strconv.Itoa(*b.Weight)
		}
		row(w, b.Address, port, weight, b.State, healthCell(b.Health), b.Flows, b.Counters.Packets)
	}
}

// healthCell writes a backend's health with the last result:
// "up (ok)", "down (connect: connection refused)", "up (no check)".
func healthCell(h *healthView) string {
	if h == nil {
		return "-"
	}
	if !h.Checked {
		return h.State + " (no check)"
	}
	res := h.LastResult
	if res == "" && h.State == "down" {
		res = h.LastError
	}
	if res == "" {
		return h.State
	}
	return h.State + " (" + clip(res, 48) + ")"
}

func backendAdd(a *app, c *command, args []string) error {
	fs, pos, err := c.parse(a, args, 2, 2)
	if err != nil {
		return err
	}
	b := addrPort(pos[1])
	if flagSet(fs, "weight") {
		b["weight"] = flagInt(fs, "weight")
	}
	for _, k := range []string{"state", "mac", "interface"} {
		if flagSet(fs, k) {
			b[k] = flagString(fs, k)
		}
	}
	body, _ := json.Marshal(b)
	cl, err := a.client()
	if err != nil {
		return err
	}
	raw, err := cl.do(request{method: http.MethodPost, path: api("services", pos[0], "backends"), body: body})
	if err != nil {
		return err
	}
	var v backendView
	return a.emit(raw, &v, func(w io.Writer) {
		fmt.Fprintf(w, "backend %s added to %s (weight %s, %s)\n", backendKey(&v), pos[0], weightString(v.Weight), v.State)
	})
}

// backendKey is the backend's name in the API: address or address:port.
func backendKey(b *backendView) string {
	if b.Port == 0 {
		return b.Address
	}
	return hostPort(b.Address, b.Port)
}

func weightString(w *int) string {
	if w == nil {
		return "-"
	}
	return strconv.Itoa(*w)
}

func backendRm(a *app, c *command, args []string) error {
	_, pos, cl, err := c.parseClient(a, args, 2, 2)
	if err != nil {
		return err
	}
	return a.remove(cl, api("services", pos[0], "backends", pos[1]), fmt.Sprintf("backend %s removed from %s", pos[1], pos[0]))
}

// backendState is drain, enable and disable.
func backendState(state string) func(a *app, c *command, args []string) error {
	return func(a *app, c *command, args []string) error {
		_, pos, err := c.parse(a, args, 2, 2)
		if err != nil {
			return err
		}
		return patchBackend(a, pos[0], pos[1], map[string]any{"state": state})
	}
}

func backendWeight(a *app, c *command, args []string) error {
	_, pos, err := c.parse(a, args, 3, 3)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(pos[2])
	if err != nil {
		return &usageError{cmd: c, msg: fmt.Sprintf("backend weight: %q is not a number", pos[2])}
	}
	return patchBackend(a, pos[0], pos[1], map[string]any{"weight": n})
}

// patchBackend sends PATCH {"state": ...} or {"weight": ...}.
func patchBackend(a *app, svc, backend string, patch map[string]any) error {
	body, _ := json.Marshal(patch)
	cl, err := a.client()
	if err != nil {
		return err
	}
	raw, err := cl.do(request{method: http.MethodPatch, path: api("services", svc, "backends", backend), body: body})
	if err != nil {
		return err
	}
	var v backendView
	return a.emit(raw, &v, func(w io.Writer) {
		fmt.Fprintf(w, "backend %s of %s: %s, weight %s\n", backendKey(&v), svc, v.State, weightString(v.Weight))
	})
}
