// Package mgmt is xlb's management plane: everything an operator talks
// to. It owns the REST API under /api/v1 (services, backends, config,
// stats, flows, lookup, health), the configuration store and its
// persistence (api.state_file, written atomically before a change is
// acknowledged), validation (through package config, so every error names
// its key path), the health checks (package mgmt/health) and the
// Prometheus metrics.
//
// It never touches the kernel and never sits on the packet path: it
// drives the data plane through the small [Dataplane] interface, which
// internal/daemon implements over XDP and AF_XDP and tests implement with
// a fake.
//
// # A change
//
// Every change (an API request, a SIGHUP of the configuration file, a
// health transition) takes the same path under one mutex: copy the
// accepted configuration, apply the request to the copy, refuse it if a
// key that needs a restart changed (409, naming the keys), validate the
// whole copy (400 with the field's path), hand the effective
// configuration (health states folded in) to Dataplane.Apply, write the
// state file, and only then accept it and answer. A failure at any step
// leaves the running configuration exactly as it was; a failure to write
// the state file re-applies the previous configuration.
//
// # Health
//
// A backend that its service's check finds down (fall consecutive
// failures) is compiled as down: it leaves the Maglev table, and its flows
// are rescheduled. rise successes bring it back; a backend that flaps more
// than dampening.flaps times within dampening.window is held down for
// dampening.hold. When every backend of a service is down, all_down
// decides: "serve" (the default) keeps scheduling over them all (a broken
// check must not take the service down), "drop" drops new flows; both are
// logged and counted.
//
// # Errors
//
// Every error is RFC 9457 application/problem+json with status, title,
// detail and, when a field is at fault, field (its path relative to the
// object in the request, e.g. backends[1].address) and value.
package mgmt
