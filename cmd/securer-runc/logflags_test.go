package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestLogFlags(t *testing.T) {
	tests := []struct {
		args  []string
		debug string // SECURER_DEBUG
		def   slog.Level
		want  slog.Level
		bad   bool
	}{
		{nil, "", slog.LevelInfo, slog.LevelInfo, false},
		{nil, "", slog.LevelWarn, slog.LevelWarn, false},
		{nil, "1", slog.LevelInfo, slog.LevelDebug, false},
		{[]string{"--log-level", "error"}, "1", slog.LevelInfo, slog.LevelError, false}, // explicit wins
		{[]string{"--log-level", "WARN"}, "", slog.LevelInfo, slog.LevelWarn, false},
		{[]string{"--log-level", "debug"}, "", slog.LevelWarn, slog.LevelDebug, false},
		{[]string{"--log-level", "loud"}, "", slog.LevelInfo, 0, true},
		{[]string{"--log-format", "xml"}, "", slog.LevelInfo, 0, true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " ")+"/"+tt.debug, func(t *testing.T) {
			t.Setenv("SECURER_DEBUG", tt.debug)
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			lf := addLogFlags(fs, tt.def, "")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			l, err := lf.logger(io.Discard)
			if (err != nil) != tt.bad {
				t.Fatalf("err %v, want error %v", err, tt.bad)
			}
			if tt.bad {
				return
			}
			for _, lv := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
				if got := l.Enabled(t.Context(), lv); got != (lv >= tt.want) {
					t.Errorf("level %v enabled %v, want least level %v", lv, got, tt.want)
				}
			}
		})
	}
}

// --log-format json writes one JSON object a line, text key=value pairs.
func TestLogFormat(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		lf := addLogFlags(fs, slog.LevelInfo, "info")
		if err := fs.Parse([]string{"--log-format", format}); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		l, err := lf.logger(&buf)
		if err != nil {
			t.Fatal(err)
		}
		l.Info("execution ended", "client", "c1", "request", "r1")
		var rec map[string]any
		isJSON := json.Unmarshal(buf.Bytes(), &rec) == nil
		if isJSON != (format == "json") {
			t.Errorf("%s: %q", format, buf.String())
		}
		if format == "json" && (rec["client"] != "c1" || rec["msg"] != "execution ended") {
			t.Errorf("json record %v", rec)
		}
		if format == "text" && !strings.Contains(buf.String(), "client=c1 request=r1") {
			t.Errorf("text record %q", buf.String())
		}
	}
}

// Every command that logs takes the flags, and refuses bad values as a
// usage error.
func TestLogFlagsOnCommands(t *testing.T) {
	extra := map[string][]string{"run": {"-e", "1"}, "serve": {"--stdio"}, "doctor": {"--probe=false"}}
	for _, cmd := range []string{"run", "serve", "doctor"} {
		var stdout, stderr bytes.Buffer
		code := dispatch([]string{cmd, "-h"}, strings.NewReader(""), &stdout, &stderr)
		usage := stdout.String() + stderr.String()
		if code != exitOK || !strings.Contains(usage, "-log-format") || !strings.Contains(usage, "-log-level") {
			t.Errorf("%s -h (exit %d) does not list the log flags:\n%s", cmd, code, usage)
		}
		stdout.Reset()
		stderr.Reset()
		code = dispatch(append([]string{cmd, "--log-level", "loud"}, extra[cmd]...), strings.NewReader(""), &stdout, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), `--log-level "loud"`) {
			t.Errorf("%s --log-level loud: exit %d, stderr %q; want a usage error", cmd, code, stderr.String())
		}
	}
}
