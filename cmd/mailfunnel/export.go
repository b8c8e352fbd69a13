package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailfunnel/mailfunnel/engine"
	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/export"
	"github.com/mailfunnel/mailfunnel/storage"
)

// ExportCommand runs one export of everything not yet exported. When a
// server holds the data dir it asks that server (POST /v1/exports) instead
// of touching the locked store.
type ExportCommand struct {
	main     *Main
	data     dataFlags
	apiToken string
}

// classifyEvent fills the bounce class and reason the engine would derive,
// so that the exported rows carry them.
func classifyEvent(e *event.Event) { e.BounceClass, e.BounceReason = engine.Classify(e) }

// Run exports and prints the run as JSON.
func (x *ExportCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mailfunnel export", flag.ContinueOnError)
	fs.SetOutput(x.main.Stderr)
	x.data.register(fs)
	fs.StringVar(&x.apiToken, "api-token", "", "API token of a running server (default: <data>/api.token)")
	if err := parseFlags(fs, args, x.main.Getenv); err != nil {
		return err
	}
	x.data.applyMemoryLimit(x.main.Getenv)
	log, err := storage.Open(storage.DefaultConfig(x.data.logDir()))
	if errors.Is(err, storage.ErrLocked) {
		return x.viaServer(ctx)
	}
	if err != nil {
		return err
	}
	defer log.Close()
	eng, err := engine.Open(engine.DefaultConfig(x.data.stateDir()), log)
	if err != nil {
		return err
	}
	defer eng.Close()
	// Bring the aggregates up to the log's end first, so the snapshot
	// matches the events exported.
	if err := eng.CatchUp(ctx, nil); err != nil {
		return err
	}
	cfg := export.DefaultConfig(x.data.exports())
	cfg.Classify = classifyEvent
	ex, err := export.New(cfg, log, eng)
	if err != nil {
		return err
	}
	defer ex.Close()
	run, err := ex.Export(ctx)
	if err != nil {
		return err
	}
	return json.NewEncoder(x.main.Stdout).Encode(run)
}

// viaServer asks the server that holds the data dir to export.
func (x *ExportCommand) viaServer(ctx context.Context) error {
	b, err := os.ReadFile(filepath.Join(x.data.dir, serverInfoFile))
	if err != nil {
		return fmt.Errorf("%w, and no running server is recorded in %s: stop the process that holds it and retry", storage.ErrLocked, x.data.dir)
	}
	var info struct{ Addr string }
	if err := json.Unmarshal(b, &info); err != nil || info.Addr == "" {
		return fmt.Errorf("read %s: %v", serverInfoFile, err)
	}
	tok := x.apiToken
	if tok == "" {
		t, err := os.ReadFile(filepath.Join(x.data.dir, "api.token"))
		if err != nil {
			return fmt.Errorf("a server holds %s; pass its --api-token to export through it", x.data.dir)
		}
		tok = strings.TrimSpace(string(t))
	}
	fmt.Fprintf(x.main.Stderr, "a server holds %s: exporting through it at %s\n", x.data.dir, info.Addr)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+info.Addr+"/v1/exports", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Timeout: 30 * time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("ask the running server to export: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("running server answered %s: %s", resp.Status, body)
	}
	_, err = x.main.Stdout.Write(body)
	return err
}
