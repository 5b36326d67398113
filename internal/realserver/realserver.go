package realserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/rs/zerolog"

	"github.com/xlb/xlb/dataplane/bpf"
	"github.com/xlb/xlb/internal/rtnl"
)

// Server is a running realserver: host changes made, program attached.
// Start, Serve and Stop must run on an OS thread in the backend's network
// namespace (any thread of a process started in it).
type Server struct {
	cfg    Config
	log    zerolog.Logger
	lock   *os.File
	st     *State
	rs     *bpf.Realserver
	att    *bpf.Attachment
	locals []netip.Addr
}

// Start takes the interface's state lock, undoes what a previous run left
// behind (it crashed, or was killed), then records and makes the host
// changes and, in tunnel and l3dsr modes, loads and attaches the program.
// On error everything done so far is undone.
func Start(cfg Config, log zerolog.Logger) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log}
	if s.lock, err = lockState(cfg.StateFile); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.lock.Close()
		}
	}()
	if err := Recover(cfg.StateFile, log); err != nil {
		return nil, fmt.Errorf("realserver: undo the previous run's changes: %w", err)
	}

	s.st = &State{PID: os.Getpid(), Started: time.Now().UTC(), Interface: cfg.Interface, Mode: cfg.Mode}
	defer func() {
		if err != nil {
			if uerr := s.teardown(); uerr != nil {
				log.Error().Err(uerr).Msg("undo after a failed start")
			}
		}
	}()
	if err := apply(cfg.StateFile, &s.cfg, s.st); err != nil {
		return nil, err
	}
	for _, c := range s.st.Sysctls {
		log.Info().Str("sysctl", c.Key).Str("from", c.Original).Str("to", c.Set).Msg("sysctl set")
	}
	for _, p := range s.st.Addresses {
		log.Info().Str("address", p.String()).Msg("VIP added to lo")
	}
	if cfg.Mode.needsProgram() {
		if err := s.attach(); err != nil {
			return nil, err
		}
	}
	log.Info().Str("config", cfg.String()).Str("state_file", cfg.StateFile).Msg("realserver ready")
	return s, nil
}

// attach loads the program, fills its maps and attaches it; the state
// file learns the program before the attach.
func (s *Server) attach() error {
	ifi, err := net.InterfaceByName(s.cfg.Interface)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNoInterface, s.cfg.Interface, err)
	}
	if s.rs, err = bpf.LoadRealserver(bpf.RealserverOptions{}); err != nil {
		return err
	}
	switch s.cfg.Mode {
	case ModeTunnel:
		var vips []netip.Addr
		for _, v := range s.cfg.VIPs {
			vips = append(vips, v.Addr)
		}
		err = s.rs.SetTunnelVIPs(vips)
	case ModeL3DSR:
		var ms []bpf.DSCPMapping
		for _, v := range s.cfg.VIPs {
			ms = append(ms, bpf.DSCPMapping{VIP: v.Addr, DSCP: v.DSCP})
		}
		err = s.rs.SetDSCPs(ms)
	}
	if err != nil {
		return err
	}
	if err := s.refreshLocals(); err != nil {
		return err
	}
	id, err := s.rs.RealserverID()
	if err != nil {
		return err
	}
	s.st.Program = &ProgramState{Ifindex: ifi.Index, ProgID: uint32(id)}
	if err := writeState(s.cfg.StateFile, s.st); err != nil {
		return err
	}
	if s.att, err = s.rs.Attach(ifi.Index, s.cfg.XDP); err != nil {
		return fmt.Errorf("realserver: %w (is another XDP program attached to %s?)", err, s.cfg.Interface)
	}
	s.st.Program.Attach = s.att.Mode().String()
	if err := writeState(s.cfg.StateFile, s.st); err != nil {
		return err
	}
	s.log.Info().Str("interface", s.cfg.Interface).Str("xdp", s.att.Mode().String()).Uint32("prog_id", uint32(id)).Msg("program attached")
	return nil
}

// refreshLocals puts this host's addresses (all interfaces, VIPs
// excluded) into the program's map when they changed: tunnelled and
// DSCP-marked packets are handled only when addressed to one of them.
func (s *Server) refreshLocals() error {
	addrs, err := rtnl.ListAddrs()
	if err != nil {
		return err
	}
	var locals []netip.Addr
	for _, a := range addrs {
		ad := a.Prefix.Addr()
		if slices.ContainsFunc(s.cfg.VIPs, func(v VIP) bool { return v.Addr == ad }) || slices.Contains(locals, ad) {
			continue
		}
		locals = append(locals, ad)
	}
	slices.SortFunc(locals, netip.Addr.Compare)
	if slices.Equal(locals, s.locals) {
		return nil
	}
	if err := s.rs.SetLocals(locals); err != nil {
		return err
	}
	s.log.Debug().Interface("addresses", locals).Msg("local addresses updated")
	s.locals = locals
	return nil
}

// Counters returns the program's counters (zero in dsr mode).
func (s *Server) Counters() (bpf.RealserverCounters, error) {
	if s.rs == nil {
		return bpf.RealserverCounters{}, nil
	}
	return s.rs.Counters()
}

// Serve logs the counters at debug level and refreshes the local
// addresses every StatsInterval until ctx is done.
func (s *Server) Serve(ctx context.Context) {
	if s.rs == nil {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(s.cfg.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.refreshLocals(); err != nil {
			s.log.Warn().Err(err).Msg("refresh local addresses")
		}
		if c, err := s.rs.Counters(); err == nil {
			s.log.Debug().Fields(counterFields(c)).Msg("counters")
		}
	}
}

func counterFields(c bpf.RealserverCounters) map[string]any {
	m := map[string]any{}
	for k, v := range c.Map() {
		if v != 0 {
			m[k] = v
		}
	}
	return m
}

// Stop logs the counters, detaches the program and undoes every host
// change, then removes the state file and releases the lock.
func (s *Server) Stop() error {
	if s.rs != nil {
		if c, err := s.rs.Counters(); err == nil {
			s.log.Info().Fields(counterFields(c)).Str("summary", c.String()).Msg("counters at exit")
		}
	}
	err := s.teardown()
	s.lock.Close()
	if err != nil {
		return err
	}
	s.log.Info().Msg("host configuration restored")
	return nil
}

// teardown detaches and closes the program and undoes the state; the
// state file goes only when everything was undone.
func (s *Server) teardown() error {
	var errs []error
	if s.att != nil {
		errs = append(errs, s.att.Close())
		s.att = nil
	}
	if s.rs != nil {
		errs = append(errs, s.rs.Close())
		s.rs = nil
	}
	if s.st != nil {
		st := *s.st
		st.Program = nil // detached above
		errs = append(errs, undo(&st, nil))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.Remove(s.cfg.StateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove state file: %w", err)
	}
	return nil
}

// Recover undoes the changes recorded in the state file at path, left by
// an `xlb realserver` that did not stop cleanly, and removes the file. The
// caller must hold the state lock. A missing file is not an error.
func Recover(path string, log zerolog.Logger) error {
	st, err := readState(path)
	if err != nil || st == nil {
		return err
	}
	log.Warn().Int("pid", st.PID).Time("started", st.Started).Str("state_file", path).
		Msg("recovering from a crash: undoing the changes of a realserver that did not stop cleanly")
	if err := undo(st, detachStale); err != nil {
		return err
	}
	for _, c := range st.Sysctls {
		log.Info().Str("sysctl", c.Key).Str("restored", c.Original).Msg("recovered sysctl")
	}
	for _, p := range st.Addresses {
		log.Info().Str("address", p.String()).Msg("recovered: VIP removed from lo")
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove state file: %w", err)
	}
	return nil
}

// detachStale detaches a program a dead realserver left attached, if it
// is still the one on the interface.
func detachStale(p *ProgramState) error {
	id, _, err := rtnl.LinkXDP(p.Ifindex)
	if err != nil || id != p.ProgID {
		return nil // the interface is gone, or holds another program (or none)
	}
	if _, err := bpf.DetachRealserver(ebpf.ProgramID(id)); err != nil && !errors.Is(err, bpf.ErrNotRealserver) {
		return err
	}
	return nil
}

// AttachedProgram returns the realserver program attached to iface (an
// error wrapping bpf.ErrNotRealserver if another program is, ErrNoProgram
// if none is) and how it is attached.
func AttachedProgram(iface string) (*bpf.Realserver, string, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s: %v", ErrNoInterface, iface, err)
	}
	id, how, err := rtnl.LinkXDP(ifi.Index)
	if err != nil {
		return nil, "", err
	}
	if id == 0 {
		return nil, "", fmt.Errorf("%w on %s", ErrNoProgram, iface)
	}
	r, err := bpf.OpenRealserver(ebpf.ProgramID(id))
	if err != nil {
		return nil, how, err
	}
	return r, how, nil
}

// ErrNoProgram means no XDP program is attached to the interface.
var ErrNoProgram = errors.New("realserver: no XDP program attached")

// Stats reads the counters of the realserver program attached to iface,
// from any process.
func Stats(iface string) (bpf.RealserverCounters, error) {
	r, _, err := AttachedProgram(iface)
	if err != nil {
		return bpf.RealserverCounters{}, err
	}
	defer r.Close()
	return r.Counters()
}

// RecoverLocked is Recover under the state lock, for `xlb realserver
// --undo`: it fails with ErrRunning while a realserver runs.
func RecoverLocked(path string, log zerolog.Logger) error {
	f, err := lockState(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return Recover(path, log)
}
