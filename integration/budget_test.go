package integration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// Each budget ends the execution with its verdict, plausible accounting,
// and a session that still works.
func TestBudgets(t *testing.T) {
	var live lockedBuffer
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	cfg.Tools[3].Timeout = 300 * time.Millisecond // slow
	cfg.MaxToolCalls = 50
	cfg.Output.LimitBytes = 1 << 20
	cfg.MaxCodeBytes = 1000
	cfg.MaxExecutions = 9
	cfg.Output.Stdout = &live
	cfg.PreExecute = func(ctx context.Context, code string) error {
		if strings.Contains(code, "forbidden") {
			return errors.New("policy says no")
		}
		return nil
	}
	s := newSession(t, cfg)
	mustOK(t, s, "keep <- 1")

	res, err := s.Execute(context.Background(), "for (i in 1:100) add(i, 1)")
	if !errors.Is(err, securer.ErrLimit) || res.Verdict != securer.VerdictToolCallLimit || res.Accounting.ToolCalls != 50 {
		t.Errorf("tool calls: verdict %s err %v calls %d", res.Verdict, err, res.Accounting.ToolCalls)
	}
	res, err = s.Execute(context.Background(), `repeat cat(strrep("x", 1e5), "\n")`)
	if !errors.Is(err, securer.ErrLimit) || res.Verdict != securer.VerdictOutputLimit || res.Accounting.StdoutBytes < 1<<20 {
		t.Errorf("output: verdict %s err %v bytes %d", res.Verdict, err, res.Accounting.StdoutBytes)
	}
	if n := len(live.String()); n > 1<<20 {
		t.Errorf("the live writer got %d bytes past the 1 MiB limit", n)
	}
	res, err = s.Execute(context.Background(), "slow(5)")
	if res.Verdict != securer.VerdictError || !strings.Contains(res.Error.Message, "timed out after 300ms") {
		t.Errorf("tool timeout: verdict %s err %v", res.Verdict, err)
	}
	if _, err := s.Execute(context.Background(), strings.Repeat("1;", 600)); !errors.Is(err, securer.ErrRejected) {
		t.Errorf("long code: %v", err)
	}
	if _, err := s.Execute(context.Background(), "forbidden()"); !errors.Is(err, securer.ErrRejected) || !strings.Contains(err.Error(), "policy says no") {
		t.Errorf("veto: %v", err)
	}
	if res := mustOK(t, s, "keep"); res.Value.Go() != 1.0 {
		t.Errorf("state lost after the limits")
	}
	for i := 0; ; i++ {
		_, err := s.Execute(context.Background(), "1")
		if errors.Is(err, securer.ErrRejected) {
			if i != 4 { // 5 admitted above
				t.Errorf("MaxExecutions 9: refused after %d more", i)
			}
			break
		}
		if i > 10 {
			t.Fatal("MaxExecutions not enforced")
		}
	}
}
