package health

import (
	"fmt"
	"time"
)

// State is a target's health.
type State uint8

const (
	Unknown State = iota // not decided yet (new target, or its check is invalid)
	Up
	Down
)

var stateNames = [...]string{Unknown: "unknown", Up: "up", Down: "down"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// MarshalText encodes s as "unknown", "up" or "down".
func (s State) MarshalText() ([]byte, error) {
	if int(s) >= len(stateNames) {
		return nil, fmt.Errorf("health: invalid state %d", uint8(s))
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText is the inverse of MarshalText (for API clients).
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if string(b) == n {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("health: %q is not unknown, up or down", b)
}

// Status is what the manager knows about one target.
type Status struct {
	State       State     `json:"state"`
	Since       time.Time `json:"since"`               // when State last changed (or when checking started)
	LastCheck   time.Time `json:"last_check"`          // zero before the first check
	LastResult  string    `json:"last_result"`         // "ok" or a short reason: "connect: connection refused", "http status 503, want 200", "timeout after 1s"
	LastError   string    `json:"last_error"`          // the last failure ("" if none yet)
	LatencyMS   float64   `json:"latency_ms"`          // duration of the last check
	Transitions uint64    `json:"transitions"`         // state changes, including the first out of Unknown
	HeldUntil   time.Time `json:"held_until,omitzero"` // non-zero while dampened
}

// Counters are the manager's totals since NewManager.
type Counters struct {
	Targets       uint64 `json:"targets"`        // targets tracked now (a gauge)
	Checks        uint64 `json:"checks"`         // probes completed
	Failures      uint64 `json:"failures"`       // probes that failed
	Transitions   uint64 `json:"transitions"`    // every state change, including the first out of Unknown
	UpToDown      uint64 `json:"up_to_down"`     // Up -> Down
	DownToUp      uint64 `json:"down_to_up"`     // Down -> Up
	Dampened      uint64 `json:"dampened"`       // holds started
	HeldSuccesses uint64 `json:"held_successes"` // successes that did not count because the target was held down
}
