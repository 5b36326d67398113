package mgmt

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/xlb/xlb/config"
)

// stateVersion is the state file's format version.
const stateVersion = 1

// State is the state file: the services accepted through the API (or a
// SIGHUP of the configuration file), written atomically before a change is
// acknowledged.
type State struct {
	Version    int              `json:"version"`
	Generation uint64           `json:"generation"` // counts accepted changes
	Services   []config.Service `json:"services"`
}

// LoadState reads the state file. It returns (nil, nil) when the file does
// not exist.
func LoadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("state file %s: format version %d, this xlb reads %d", path, st.Version, stateVersion)
	}
	return &st, nil
}

// WriteState writes st to path atomically: a temporary file in the same
// directory, fsync, rename over path, fsync of the directory. After it
// returns, a crash at any moment leaves either the old or the new file.
func WriteState(path string, st *State) error {
	st.Version = stateVersion
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("state file: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("state file: fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("state file: rename: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("state file: fsync %s: %w", dir, err)
	}
	return nil
}

// Boot decides the services xlb starts with: those of the state file when
// it exists (the latest accepted through the API), else the configuration
// file's. It returns which source was used, for the log.
func Boot(f *config.File) (source string, gen uint64, err error) {
	if f.API.StateFile == "" {
		return "configuration file (no api.state_file: API changes are not persisted)", 0, nil
	}
	st, err := LoadState(f.API.StateFile)
	if err != nil {
		return "", 0, err
	}
	if st == nil {
		return "configuration file (no state file yet at " + f.API.StateFile + ")", 0, nil
	}
	f.Services = st.Services
	return "state file " + f.API.StateFile, st.Generation, nil
}
