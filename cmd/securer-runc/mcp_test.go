package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestMCPListenAddr(t *testing.T) {
	tests := []struct {
		listen string
		token  bool
		want   string // "" for an error
		errHas string
	}{
		{listen: "127.0.0.1:8765", want: "127.0.0.1:8765"},
		{listen: ":8765", want: "127.0.0.1:8765"},
		{listen: "localhost:0", want: "localhost:0"},
		{listen: "[::1]:9", want: "[::1]:9"},
		{listen: "0.0.0.0:8765", errHas: "needs --token-file"},
		{listen: "192.0.2.7:80", errHas: "needs --token-file"},
		{listen: "example.org:80", errHas: "needs --token-file"},
		{listen: "0.0.0.0:8765", token: true, want: "0.0.0.0:8765"},
		{listen: "8765", errHas: "want HOST:PORT"},
		{listen: "unix:/tmp/x", errHas: "want HOST:PORT"},
	}
	for _, tt := range tests {
		got, err := mcpListenAddr(tt.listen, tt.token)
		if tt.want != "" {
			if err != nil || got != tt.want {
				t.Errorf("%q (token %v) = %q, %v; want %q", tt.listen, tt.token, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("%q (token %v) = %q, %v; want an error saying %q", tt.listen, tt.token, got, err, tt.errHas)
		}
	}
}

func TestMCPFlagErrors(t *testing.T) {
	tests := []struct {
		args   []string
		errHas string
	}{
		{[]string{"extra"}, "takes no arguments"},
		{[]string{"--token-file", "/nonexistent"}, "--token-file needs --listen"},
		{[]string{"--listen", "0.0.0.0:1"}, "needs --token-file"},
		{[]string{"--listen", "127.0.0.1:0", "--unsafe-no-sandbox"}, "only allowed on stdio"},
		{[]string{"--plots-dir", "/tmp"}, "image content"},
		{[]string{"--warm", "-1"}, "--warm must be 0 or more"},
		{[]string{"--max-sessions", "0"}, "--max-sessions 1 or more"},
		{[]string{"--tools", "/nonexistent/tools.json"}, "tools file"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := cmdMCP(t.Context(), tt.args, &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), tt.errHas) {
			t.Errorf("mcp %v: exit %d, stderr %q; want %d and %q", tt.args, code, errb.String(), exitUsage, tt.errHas)
		}
	}
}
