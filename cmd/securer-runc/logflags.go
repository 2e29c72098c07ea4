package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// logFlags are --log-format and --log-level, for every command that logs.
type logFlags struct {
	format, level string
	def           slog.Level // when neither --log-level nor SECURER_DEBUG says
}

// addLogFlags adds the flags to fs; def is the command's default level,
// which defaultNote describes.
func addLogFlags(fs *flag.FlagSet, def slog.Level, defaultNote string) *logFlags {
	l := &logFlags{def: def}
	fs.StringVar(&l.format, "log-format", "text", "log records on stderr as text (key=value) or json (one object a line)")
	fs.StringVar(&l.level, "log-level", "", "least level logged: debug, info, warn or error (default "+
		defaultNote+"; debug when SECURER_DEBUG is set)")
	return l
}

// levelOf is the level asked for: --log-level, else debug when
// SECURER_DEBUG is set (the shortcut), else the command's default.
func (l *logFlags) levelOf() (slog.Level, error) {
	switch strings.ToLower(l.level) {
	case "":
		if os.Getenv("SECURER_DEBUG") != "" {
			return slog.LevelDebug, nil
		}
		return l.def, nil
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.level)
}

// logger makes the logger the flags ask for, writing to w.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	level, err := l.levelOf()
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", l.format)
}
