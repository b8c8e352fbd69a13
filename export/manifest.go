package export

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"
)

// ManifestName is the manifest's file name in the export directory. The
// leading underscore makes Spark and Hadoop ignore it.
const ManifestName = "_manifest.jsonl"

// File kinds.
const (
	KindEvents  = "events"
	KindWindows = "windows"
	KindFunnels = "funnels"
)

// File is one Parquet file the exporter wrote, as listed by GET /v1/exports.
//
// For events files FirstSeq and LastSeq are the smallest and largest
// sequence in the file (the numbers in its name); for the aggregate
// snapshots they are the range of the log the snapshot covers.
type File struct {
	Path     string    `json:"path"` // relative to Config.Dir, with '/' separators
	Kind     string    `json:"kind"` // KindEvents, KindWindows or KindFunnels
	Rows     int64     `json:"rows"`
	FirstSeq uint64    `json:"first_seq"`
	LastSeq  uint64    `json:"last_seq"`
	Bytes    int64     `json:"bytes"`
	Created  time.Time `json:"created"`
}

// manifestRecord is one line of the manifest: a file written, or (Removed)
// a superseded aggregate snapshot deleted.
type manifestRecord struct {
	File
	Removed bool `json:"removed,omitempty"`
}

// manifest is the append-only JSON-lines record of the files written. A
// line is appended and fsynced after the file it names is renamed into
// place and before the checkpoint moves, so a crash can lose at most the
// record of a file that the restarted run writes (and records) again. A
// torn last line from a crash mid-append is dropped on load. Records for
// the same path are merged, the last one winning, so re-recording a file is
// harmless.
type manifest struct {
	path  string
	f     *os.File
	size  int64          // bytes of whole records in f
	files []File         // in order of first record
	index map[string]int // path -> index in files
}

func openManifest(path string) (*manifest, error) {
	m := &manifest{path: path, index: map[string]int{}}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read manifest %q: %w", path, err)
	}
	valid := 0
	for len(data[valid:]) > 0 {
		nl := bytes.IndexByte(data[valid:], '\n')
		if nl < 0 {
			break // torn last line
		}
		var r manifestRecord
		if err := json.Unmarshal(data[valid:valid+nl], &r); err != nil {
			return nil, fmt.Errorf("manifest %q at byte %d: %w (remove the line or the manifest; the Parquet files themselves are intact)", path, valid, err)
		}
		m.apply(r)
		valid += nl + 1
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open manifest %q: %w", path, err)
	}
	if valid < len(data) {
		if err := f.Truncate(int64(valid)); err != nil {
			f.Close()
			return nil, fmt.Errorf("truncate torn manifest line %q: %w", path, err)
		}
	}
	if _, err := f.Seek(int64(valid), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("seek manifest %q: %w", path, err)
	}
	m.f, m.size = f, int64(valid)
	return m, nil
}

func (m *manifest) apply(r manifestRecord) {
	i, ok := m.index[r.Path]
	switch {
	case r.Removed && ok:
		m.files = slices.Delete(m.files, i, i+1)
		delete(m.index, r.Path)
		for j := i; j < len(m.files); j++ {
			m.index[m.files[j].Path] = j
		}
	case r.Removed:
	case ok:
		m.files[i] = r.File
	default:
		m.index[r.Path] = len(m.files)
		m.files = append(m.files, r.File)
	}
}

// append durably records rs.
func (m *manifest) append(rs ...manifestRecord) error {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	enc := json.NewEncoder(w)
	for _, r := range rs {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("encode manifest record: %w", err)
		}
	}
	w.Flush()
	if _, err := m.f.Write(buf.Bytes()); err != nil {
		// Cut a partial record so that later appends stay parseable.
		_ = m.f.Truncate(m.size)
		_, _ = m.f.Seek(m.size, 0)
		return fmt.Errorf("append to manifest %q: %w", m.path, err)
	}
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("sync manifest %q: %w", m.path, err)
	}
	m.size += int64(buf.Len())
	for _, r := range rs {
		m.apply(r)
	}
	return nil
}

func (m *manifest) list() []File { return slices.Clone(m.files) }

func (m *manifest) close() error { return m.f.Close() }
