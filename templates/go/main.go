// {{name}}: a redrive filter in Go (command profile). It replays dead letters whose recorded error looks
// transient (a timeout, a refused connection, throttling) and skips the others.
//
// redrive runs it as a WASI program: JSON requests arrive on stdin, one per line (first `init` with the
// configuration, then one `decide` per message); it answers each with one JSON line on stdout. The format is
// in command.schema.json. Lines written to stderr become the message's log lines.
//
// Config: transient — comma-separated patterns replacing the default list ({{name}}.wasm?transient=timeout,503).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

var patterns = []string{"timeout", "timed out", "connection refused", "throttl", "503"}

type request struct {
	Call    string      `json:"call"`
	Config  [][2]string `json:"config"`
	Message *struct {
		ID      string `json:"id"`
		Failure struct {
			ErrorText  *string `json:"error_text"`
			ErrorClass *string `json:"error_class"`
		} `json:"failure"`
	} `json:"message"`
}

func handle(line []byte) any {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return map[string]string{"error": "not a request: " + err.Error()}
	}
	switch req.Call {
	case "init":
		for _, kv := range req.Config {
			if kv[0] != "transient" {
				return map[string]string{"error": fmt.Sprintf("unknown config key '%s' (known keys: transient)", kv[0])}
			}
			patterns = nil
			for _, p := range strings.Split(kv[1], ",") {
				if p = strings.ToLower(strings.TrimSpace(p)); p != "" {
					patterns = append(patterns, p)
				}
			}
		}
		return map[string]bool{"ok": true}
	case "decide":
		var text []string
		for _, t := range []*string{req.Message.Failure.ErrorText, req.Message.Failure.ErrorClass} {
			if t != nil {
				text = append(text, strings.ToLower(*t))
			}
		}
		haystack := strings.Join(text, "\n")
		for _, p := range patterns {
			if strings.Contains(haystack, p) {
				fmt.Fprintf(os.Stderr, "info: %s -> replay\n", req.Message.ID)
				return map[string]string{"verdict": "replay", "reason": "transient: " + p}
			}
		}
		fmt.Fprintf(os.Stderr, "info: %s -> skip\n", req.Message.ID)
		return map[string]string{"verdict": "skip", "reason": "not a transient error"}
	}
	return map[string]string{"error": "unknown call " + req.Call}
}

func main() {
	in := bufio.NewReaderSize(os.Stdin, 1<<16)
	for {
		line, err := in.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			answer, _ := json.Marshal(handle(line))
			os.Stdout.Write(append(answer, '\n')) // unbuffered: redrive waits for each answer
		}
		if err == io.EOF {
			return
		} else if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
	}
}
