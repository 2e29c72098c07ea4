package securer

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// As every program that starts sandboxed sessions must.
	Init()
	os.Exit(m.Run())
}
