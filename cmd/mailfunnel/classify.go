package main

import (
	"bufio"
	"context"
	"flag"

	"github.com/mailfunnel/mailfunnel/engine/bounce"
)

// ClassifyCommand classifies bounce replies given as JSON lines on stdin,
// with the same classifier the engine uses, so that a user can see why a
// reply got its class ("rule" says which rule decided).
type ClassifyCommand struct{ main *Main }

// Run reads stdin to its end and writes one JSON line per input line.
func (c *ClassifyCommand) Run(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("mailfunnel classify", flag.ContinueOnError)
	fs.SetOutput(c.main.Stderr)
	fs.Usage = func() {
		fs.Output().Write([]byte(`Usage: mailfunnel classify < replies.jsonl

Reads JSON lines {"code": 550, "subcode": "5.1.1", "text": "...", "event": "hard_bounces"}
(any field may be missing) and writes one line per input, in order, with
class (hard, soft, undetermined), reason, status, code and rule.
`))
	}
	if err := parseFlags(fs, args, func(string) string { return "" }); err != nil {
		return err
	}
	w := bufio.NewWriter(c.main.Stdout)
	if err := bounce.ClassifyLines(c.main.Stdin, w); err != nil {
		return err
	}
	return w.Flush()
}
