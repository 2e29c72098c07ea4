package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	securer "github.com/securer-runc/securer-runc"
)

func TestAuditLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	logger, closer, err := securer.OpenAuditLog(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	cfg.Audit = logger
	cfg.MaxToolCalls = 3
	cfg.MaxCodeBytes = 200
	s, err := testHost.NewSession(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	execute(t, s, "add(1, 2); add(a = 'x', b = 1)")
	execute(t, s, "for (i in 1:10) add(i, 1)")
	execute(t, s, "cat('a\\nFAKE LOG LINE\\n')")
	_, _ = s.Execute(context.Background(), strings.Repeat("1;", 200))
	s.Close()
	closer.Close()

	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit file mode: %v %v", fi.Mode(), err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		msg, _ := rec["msg"].(string)
		counts[msg]++
		if msg == "tool_call" && rec["tool"] == "add" && rec["refused"] != "" && !strings.Contains(rec["args"].(string), "a=character(1)") {
			t.Errorf("refused call's args summary: %v", rec["args"])
		}
	}
	want := map[string]int{"session_start": 1, "session_end": 1, "execute_start": 3, "execute_end": 3,
		"tool_call": 5, "tool_result": 4, "limit": 1, "execute_rejected": 1}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s: %d records, want %d (all: %v)", k, counts[k], n, counts)
		}
	}
}
