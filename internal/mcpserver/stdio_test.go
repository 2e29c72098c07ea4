package mcpserver

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"
)

// A line that is not JSON gets a parse error and the session goes on (the
// SDK's stdio transport ended it, and every R session with it).
func TestStdioSurvivesBadLines(t *testing.T) {
	srv, err := New(context.Background(), Options{MaxSessions: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- srv.RunIO(context.Background(), inR, outW) }()
	lines := bufio.NewScanner(outR)
	next := func() map[string]any {
		t.Helper()
		got := make(chan map[string]any, 1)
		go func() {
			var m map[string]any
			if lines.Scan() {
				_ = json.Unmarshal(lines.Bytes(), &m)
			}
			got <- m
		}()
		select {
		case m := <-got:
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("no answer")
			return nil
		}
	}
	send := func(s string) {
		t.Helper()
		if _, err := io.WriteString(inW, s+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, line string
		check      func(m map[string]any) bool
	}{
		{"not JSON", "garbage", func(m map[string]any) bool {
			e, _ := m["error"].(map[string]any)
			return e != nil && e["code"] == -32700.0 && m["id"] == nil
		}},
		{"cut short", `{"jsonrpc":"2.0","id":1,`, func(m map[string]any) bool {
			e, _ := m["error"].(map[string]any)
			return e != nil && e["code"] == -32700.0
		}},
		{"initialize after them", `{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`,
			func(m map[string]any) bool { return m["id"] == 2.0 && m["result"] != nil }},
	}
	for _, tt := range tests {
		send(tt.line)
		if m := next(); !tt.check(m) {
			t.Errorf("%s: answer %v", tt.name, m)
		}
	}
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	send("")
	send(`{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
	if m := next(); m["id"] != 3.0 || m["result"] == nil {
		t.Errorf("tools/list after bad lines: %v", m)
	}
	inW.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunIO did not end with its input")
	}
}
