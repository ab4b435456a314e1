// Command route-by-error is the redrive example filter "route-by-error" in Go, as a command-profile filter:
// a WASI preview-1 program that reads JSON requests on stdin, one per line, and answers each with one JSON line
// on stdout (guest-sdk/wit/command.schema.json). It makes the same decisions, with the same reasons, as the
// Rust version in filters/route-by-error.
//
// It classifies a dead letter by the error its consumer recorded (failure.error_text, error_class and reason,
// lowercased, plain substring match): a permanent pattern → skip; else a transient pattern → replay; no failure
// text → the `default` verdict ("no failure context"); no match → the `default` verdict ("unclassified error").
//
// Build: GOOS=wasip1 GOARCH=wasm go build -o route-by-error.wasm .
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

const contract = "redrive:filter@0.1.0"

var defaultTransient = []string{
	"timeout", "timed out", "connection refused", "connection reset", "econnrefused", "econnreset",
	"500 internal server error", "502 bad gateway", "503 service unavailable", "504 gateway timeout",
	"throttl", "rate limit", "too many requests", "429", "temporarily unavailable", "deadlock",
}

var defaultPermanent = []string{
	"validation", "invalid", "schema version", "unknown schema", "unprocessable", "400 bad request", "422",
	"not found", "404", "constraint violation",
}

// request is one line on stdin: `init` (with config) or `decide` (with a message).
type request struct {
	Contract string      `json:"contract"`
	Call     string      `json:"call"`
	Config   [][2]string `json:"config"`
	Message  *message    `json:"message"`
}

type message struct {
	ID      string  `json:"id"`
	Failure failure `json:"failure"`
}

// failure is the message's failure context; a nil pointer is an unknown value.
type failure struct {
	Reason     *string `json:"reason"`
	ErrorText  *string `json:"error_text"`
	ErrorClass *string `json:"error_class"`
}

type decision struct {
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
}

type filter struct {
	transient, permanent []string
	fallback             string
}

// newFilter reads the configuration as the Rust filter does: unknown keys are refused, lists are
// comma-separated (items trimmed, empty ones dropped), the last value of a key wins.
func newFilter(config [][2]string) (*filter, error) {
	f := &filter{transient: defaultTransient, permanent: defaultPermanent, fallback: "skip"}
	for _, kv := range config {
		switch kv[0] {
		case "transient", "permanent", "default":
		default:
			return nil, fmt.Errorf("unknown config key '%s' (known keys: transient, permanent, default)", kv[0])
		}
	}
	for _, kv := range config {
		key, value := kv[0], kv[1]
		switch key {
		case "transient":
			f.transient = splitList(value)
		case "permanent":
			f.permanent = splitList(value)
		case "default":
			switch v := strings.ToLower(strings.TrimSpace(value)); v {
			case "replay", "skip", "discard":
				f.fallback = v
			default:
				return nil, fmt.Errorf("config key 'default': invalid value '%s' (expected one of replay, skip, discard)", value)
			}
		}
	}
	return f, nil
}

func splitList(value string) []string {
	var items []string
	for _, item := range strings.Split(value, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, strings.ToLower(item))
		}
	}
	return items
}

func (f *filter) decide(m *message) (decision, string) {
	var texts []string
	known := false
	for _, t := range []*string{m.Failure.ErrorText, m.Failure.ErrorClass, m.Failure.Reason} {
		if t != nil {
			texts = append(texts, strings.ToLower(*t))
			if strings.TrimSpace(*t) != "" {
				known = true
			}
		}
	}
	if !known {
		return decision{f.fallback, "no failure context"}, "no-context"
	}
	haystack := strings.Join(texts, "\n")
	for _, p := range f.permanent {
		if strings.Contains(haystack, p) {
			return decision{"skip", "permanent error: matched \"" + p + "\""}, "permanent"
		}
	}
	for _, p := range f.transient {
		if strings.Contains(haystack, p) {
			return decision{"replay", "transient error: matched \"" + p + "\""}, "transient"
		}
	}
	return decision{f.fallback, "unclassified error"}, "unclassified"
}

func main() {
	in := bufio.NewReaderSize(os.Stdin, 1<<16)
	out := bufio.NewWriter(os.Stdout)
	answer := func(v any) {
		line, err := json.Marshal(v)
		if err != nil {
			line = []byte(`{"error":"cannot encode the answer"}`)
		}
		out.Write(line)
		out.WriteByte('\n')
		out.Flush() // one answer per request, flushed: redrive waits for it
	}
	var f *filter
	for {
		line, err := in.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			handle(line, &f, answer)
		}
		if err == io.EOF {
			return
		} else if err != nil {
			fmt.Fprintf(os.Stderr, "error: reading stdin: %v\n", err)
			os.Exit(1)
		}
	}
}

func handle(line []byte, f **filter, answer func(any)) {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		answer(map[string]string{"error": "not a request: " + err.Error()})
		return
	}
	if req.Contract != contract {
		answer(map[string]string{"error": "this filter speaks " + contract + ", not " + req.Contract})
		return
	}
	switch req.Call {
	case "init":
		filter, err := newFilter(req.Config)
		if err != nil {
			answer(map[string]string{"error": err.Error()})
			return
		}
		*f = filter
		answer(map[string]bool{"ok": true})
	case "decide":
		if *f == nil || req.Message == nil {
			answer(map[string]string{"error": "decide before a successful init, or without a message"})
			return
		}
		d, class := (*f).decide(req.Message)
		fmt.Fprintf(os.Stderr, "info: error class: %s -> %s\n", class, d.Verdict)
		answer(d)
	default:
		answer(map[string]string{"error": "unknown call " + req.Call})
	}
}
