package export

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// tempPrefix and tempSuffix mark a file being written. The leading dot makes
// Spark and Hadoop skip it (they ignore names starting with '.' or '_'), and
// the suffix keeps it out of DuckDB's '*.parquet' globs.
const (
	tempPrefix = "."
	tempSuffix = ".tmp"
)

func tempName(name string) string { return tempPrefix + name + tempSuffix }

func isTemp(name string) bool {
	return strings.HasPrefix(name, tempPrefix) && strings.HasSuffix(name, tempSuffix)
}

// writeFile writes rows to dir/name atomically with a new writer of opts
// (see writeAtomic). It returns the size of the file.
func writeFile[T any](dir, name string, rows []T, opts []parquet.WriterOption) (int64, error) {
	return writeAtomic(dir, name, func(f io.Writer) error {
		w := parquet.NewGenericWriter[T](f, opts...)
		if _, err := w.Write(rows); err != nil {
			return err
		}
		return w.Close()
	})
}

// writeAtomic writes dir/name atomically: write writes the whole file (a
// Parquet writer must be closed in it, which writes the footer) to a temp
// name in the same directory, then the file is fsynced, renamed into place
// and the directory fsynced. On any error the temp file is removed and
// nothing appears under name. It returns the size of the file.
func writeAtomic(dir, name string, write func(io.Writer) error) (size int64, err error) {
	tmp := filepath.Join(dir, tempName(name))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, fmt.Errorf("create %q: %w", tmp, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := write(f); err != nil {
		return 0, fmt.Errorf("write %q: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("sync %q: %w", tmp, err)
	}
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat %q: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("close %q: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return 0, fmt.Errorf("rename %q: %w", tmp, err)
	}
	if err := syncDir(dir); err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// syncDir fsyncs a directory so that entries created or renamed in it are
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %q: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir %q: %w", dir, err)
	}
	return nil
}

// mkdirAll creates dir and its missing parents under root, fsyncing the
// parent of each directory it creates so that the new entries survive a
// crash.
func mkdirAll(root, dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if dir != root && parent != dir {
		if err := mkdirAll(root, parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create dir %q: %w", dir, err)
	}
	return syncDir(parent)
}

// removeTemps removes the temp files that an interrupted run left anywhere
// under root and returns how many it removed.
func removeTemps(root string) (int, error) {
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() && isTemp(d.Name()) {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("remove stale temp file %q: %w", p, err)
			}
			n++
		}
		return nil
	})
	return n, err
}
