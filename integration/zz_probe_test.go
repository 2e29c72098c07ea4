package integration

import (
	"context"
	"os"
	"testing"
)

func TestZZProbe(t *testing.T) {
	cfg := baseConfig()
	cfg.Tools = seedTools(nil)
	s, err := testHost.NewSession(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	code, _ := os.ReadFile(os.Getenv("PROBE_R"))
	res, err := s.Execute(context.Background(), string(code))
	if err != nil {
		t.Fatal(err, res)
	}
	t.Log("\n" + res.Stdout + res.Stderr)
}
