package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/conntrack/shm"
	"github.com/xlb/xlb/dataplane"
)

// openTable opens the connection table in its shared-memory file under
// lb.conntrack.state_dir, so that flows survive a restart, an upgrade or a
// crash (see conntrack/shm). Another xlb holding it is an error; any other
// failure leaves a table in process memory, with a warning.
func (d *Daemon) openTable(f *config.File) error {
	if b := f.LB.Conntrack.SynBudget; b != 0 {
		d.ctc.SynBudget = b
	}
	var names []string
	for _, ic := range f.Interfaces {
		names = append(names, ic.Name)
	}
	slices.Sort(names)
	t, info, err := shm.Open(d.ctc, shm.Options{Dir: f.LB.Conntrack.StateDir, Name: strings.Join(names, ","), Now: d.now()})
	var cfgErr *conntrack.ConfigError
	switch {
	case errors.Is(err, shm.ErrBusy):
		return err
	case errors.As(err, &cfgErr):
		return &config.FieldError{Field: "lb.conntrack." + cfgErr.Field, Reason: cfgErr.Reason}
	case err != nil:
		d.log.Warn().Err(err).Msg("connection table kept in process memory: flows will not survive a restart")
		d.ct, err = conntrack.New(d.ctc, d.now())
		if err != nil {
			return err
		}
		return nil
	}
	d.ctFile, d.ct = t, t.Table
	for _, name := range info.Removed {
		d.log.Info().Str("file", name).Msg("removed the connection table of a network namespace that is gone")
	}
	if info.NotTmpfs {
		d.log.Warn().Str("path", info.Path).Msg("lb.conntrack.state_dir is not a tmpfs: the kernel writes the connection table back to disk")
	}
	if info.Reused {
		d.log.Info().Str("path", info.Path).Int("entries", info.Entries).Int("dropped", info.Dropped).
			Int64("previous_pid", info.Pid).Bool("clock_rebased", info.Rebased).Msg("connection table reused: established flows continue")
	} else {
		ev := d.log.Info().Str("path", info.Path)
		if info.Reason != "" && info.Reason != "no table" {
			ev = d.log.Warn().Str("path", info.Path).Str("reason", info.Reason)
		}
		ev.Msg("connection table created")
	}
	return nil
}

// seedIDs returns the service and backend numbering saved beside a reused
// table (nil if none): entries name services and backends by ID, and the
// first snapshot must number them as the process that stored the entries
// did, whatever the order of the configuration now.
func (d *Daemon) seedIDs() *dataplane.Snapshot {
	if d.ctFile == nil {
		return nil
	}
	b, err := d.ctFile.LoadAux()
	if err != nil || b == nil {
		if err != nil {
			d.log.Warn().Err(err).Msg("service IDs of the connection table unreadable")
		}
		return nil
	}
	var ids dataplane.IDs
	if err := json.Unmarshal(b, &ids); err != nil {
		d.log.Warn().Err(err).Msg("service IDs of the connection table unreadable")
		return nil
	}
	s, err := dataplane.SeedIDs(ids)
	if err != nil {
		d.log.Warn().Err(err).Msg("service IDs of the connection table unusable")
		return nil
	}
	d.savedIDs = b
	return s
}

// saveIDs stores a snapshot's numbering beside the table before the
// snapshot runs (so no entry names an ID the file does not know).
func (d *Daemon) saveIDs(s *dataplane.Snapshot) {
	if d.ctFile == nil {
		return
	}
	b, err := json.Marshal(s.IDs())
	if err != nil || bytes.Equal(b, d.savedIDs) {
		return
	}
	if err := d.ctFile.SaveAux(b); err != nil {
		d.log.Warn().Err(err).Msg("cannot save the service IDs of the connection table: flows may not survive a restart")
		return
	}
	d.savedIDs = b
}

// closeTable unmaps the table (after the workers stopped); its entries stay
// in the file for the next xlb.
func (d *Daemon) closeTable() {
	if d.ctFile != nil {
		_ = d.ctFile.Close()
		d.ctFile = nil
	}
}
