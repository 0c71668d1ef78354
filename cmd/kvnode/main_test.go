package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	cleanEnv(t)
	for _, c := range []struct {
		level, format string
		debug, warn   bool
	}{
		{"debug", "text", true, true},
		{"info", "json", false, true},
		{"warn", "json", false, true},
		{"error", "text", false, false},
	} {
		cfg := mustLoad(t, "--log-level="+c.level, "--log-format="+c.format, "--node-id=nx")
		var buf bytes.Buffer
		l := newLogger(cfg, &buf)
		l.Debug("dbg-line")
		l.Warn("warn-line")
		out := buf.String()
		if got := strings.Contains(out, "dbg-line"); got != c.debug {
			t.Errorf("%s: debug logged %v, want %v", c.level, got, c.debug)
		}
		if got := strings.Contains(out, "warn-line"); got != c.warn {
			t.Errorf("%s: warn logged %v, want %v", c.level, got, c.warn)
		}
		if out == "" {
			continue
		}
		first := strings.SplitN(out, "\n", 2)[0]
		if c.format == "json" {
			var m map[string]any
			if err := json.Unmarshal([]byte(first), &m); err != nil || m["node"] != "nx" {
				t.Errorf("json line %q (%v)", first, err)
			}
		} else if !strings.Contains(first, "node=nx") {
			t.Errorf("text line %q lacks node=nx", first)
		}
	}
	if slogLevel("warn") != slog.LevelWarn || slogLevel("error") != slog.LevelError || slogLevel("debug") != slog.LevelDebug {
		t.Error("slogLevel mapping")
	}
}

func TestNewRaftLogger(t *testing.T) {
	cleanEnv(t)
	cfg := mustLoad(t, "--log-level=warn", "--log-format=json", "--node-id=nx")
	var buf bytes.Buffer
	l := newRaftLogger(cfg, &buf)
	l.Info("info-line")
	l.Warn("warn-line")
	out := buf.String()
	if strings.Contains(out, "info-line") || !strings.Contains(out, "warn-line") {
		t.Errorf("raft log at warn: %q", out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &m); err != nil || m["node"] != "nx" {
		t.Errorf("raft json line %q (%v)", out, err)
	}
}
