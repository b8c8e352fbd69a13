package bounce

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// lineInput is one input line of ClassifyLines. Code is raw because senders
// give it as a number or as a string.
type lineInput struct {
	Code    json.RawMessage `json:"code"`
	Subcode *string         `json:"subcode"`
	Text    *string         `json:"text"`
	Event   *string         `json:"event"`
}

type lineOutput struct {
	Class  Class  `json:"class"`
	Reason string `json:"reason"`
	Status string `json:"status"`
	Code   int    `json:"code"`
	Rule   string `json:"rule"`
}

type lineError struct {
	Error string `json:"error"`
}

// ClassifyLines reads JSON lines {"code": 550 or "550", "subcode": "5.1.1",
// "text": "...", "event": "soft_bounces"} from r (any field may be missing or
// null) and writes one JSON line per input line to w, in order, with
// "class", "reason", "status", "code" and "rule". A line that cannot be
// understood produces {"error": "line N: ..."} in its place and processing
// continues; blank lines are skipped. It returns only read and write errors.
// This is the engine of `mailfunnel classify`.
func ClassifyLines(r io.Reader, w io.Writer) error {
	br := bufio.NewReaderSize(r, 64<<10)
	bw := bufio.NewWriter(w)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var out any
			in, perr := parseLine(line)
			if perr != nil {
				out = lineError{Error: fmt.Sprintf("line %d: %v", n, perr)}
			} else {
				res := Classify(in)
				out = lineOutput(res)
			}
			b, merr := json.Marshal(out)
			if merr != nil {
				return fmt.Errorf("encode line %d: %w", n, merr)
			}
			b = append(b, '\n')
			if _, werr := bw.Write(b); werr != nil {
				return fmt.Errorf("write: %w", werr)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			_ = bw.Flush()
			return fmt.Errorf("read line %d: %w", n, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

func parseLine(line []byte) (Input, error) {
	var li lineInput
	if err := json.Unmarshal(line, &li); err != nil {
		return Input{}, fmt.Errorf("invalid JSON: %w", err)
	}
	var in Input
	code, err := parseCode(li.Code)
	if err != nil {
		return Input{}, err
	}
	in.Code = code
	if li.Subcode != nil {
		in.Status = *li.Subcode
	}
	if li.Text != nil {
		in.Text = *li.Text
	}
	if li.Event != nil {
		in.Label = *li.Event
	}
	return in, nil
}

// parseCode accepts 550, 550.0, "550", " 550 " and null; an empty string is
// absent, and a string such as "550 5.1.1" gives its leading reply code.
func parseCode(raw json.RawMessage) (int, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf("code: %w", err)
		}
		s = strings.TrimSpace(s)
		if s == "" {
			return 0, nil
		}
	} else {
		s = string(raw)
	}
	if n, err := strconv.Atoi(s); err == nil {
		return n, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f == float64(int(f)) {
		return int(f), nil
	}
	if len(s) > 3 && isReplyCode(s) && !isDigit(s[3]) {
		return int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0'), nil
	}
	return 0, fmt.Errorf("code: want a number or a numeric string, got %s", raw)
}
