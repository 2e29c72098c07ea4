package securer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
)

// OpenAuditLog opens (appending) a JSON Lines audit file readable by its
// owner only, for Config.Audit. Close the returned Closer when done.
func OpenAuditLog(path string) (*slog.Logger, io.Closer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("audit log: %w", err)
	}
	// An existing file keeps its mode on open: tighten it.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("audit log: %w", err)
	}
	return slog.New(slog.NewJSONHandler(f, nil)), f, nil
}

// audit records one event when Config.Audit is set.
// auditing reports whether audit events are kept: a caller whose event
// costs something to build (a tool call's argument summary) asks first.
func (s *Session) auditing() bool { return s.cfg.Audit != nil }

func (s *Session) audit(event string, attrs ...any) {
	if s.cfg.Audit == nil {
		return
	}
	s.cfg.Audit.Log(context.Background(), slog.LevelInfo, event, attrs...)
}

// summarizeArgs describes tool arguments by type and size, not content
// (values can be large or sensitive).
func summarizeArgs(args map[string]Value) string {
	var b strings.Builder
	for _, name := range sortedNames(args) {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%s", truncate(name, 64), args[name].Describe())
		if b.Len() > 1024 {
			return truncate(b.String(), 1024)
		}
	}
	return b.String()
}

func sortedNames(m map[string]Value) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}
