package integration

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// TestBoxREnv: the box starts R directly, not through Rscript and R's
// shell script; what R sees of its environment must be what those two
// would have given it. A child Rscript started from a clean environment
// in the same box is the reference.
func TestBoxREnv(t *testing.T) {
	s := newSession(t, baseConfig())
	res, err := s.Execute(context.Background(), `
keys <- c("R_HOME", "R_SHARE_DIR", "R_INCLUDE_DIR", "R_DOC_DIR", "R_ARCH", "LD_LIBRARY_PATH",
          "R_DEFAULT_PACKAGES", "R_ENVIRON", "R_PROFILE", "R_PAPERSIZE", "R_UNZIPCMD", "R_BROWSER", "EDITOR")
show <- function() paste(keys, Sys.getenv(keys, unset = "<unset>"), sep = "=", collapse = "\n")
mine <- show()
ref <- system2("/usr/bin/env", c("-i", "PATH=/usr/bin:/bin", "/usr/bin/Rscript", "--vanilla",
  "--default-packages=datasets,utils,grDevices,graphics,stats,methods", "-e",
  shQuote(paste0("keys <- ", deparse(keys, width.cutoff = 500L), "; cat(paste(keys, Sys.getenv(keys, unset = '<unset>'), sep = '=', collapse = '\\n'))"))),
  stdout = TRUE)
list(mine = mine, ref = paste(ref, collapse = "\n"), search = paste(search(), collapse = " "))`)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := res.Value.Go().(map[string]any)
	if v["mine"] != v["ref"] {
		t.Errorf("the box's R environment differs from Rscript's:\nbox:\n%v\nRscript:\n%v", v["mine"], v["ref"])
	}
	// The default packages are attached, in Rscript's order.
	want := ".GlobalEnv package:stats package:graphics package:grDevices package:utils package:datasets package:methods Autoloads package:base"
	if got, _ := v["search"].(string); !containsInOrder(got, want) {
		t.Errorf("search path %q, want it to hold %q in order", got, want)
	}
}

// containsInOrder reports whether every word of want appears in got in
// the same order (got may hold more: the runtime's own entries).
func containsInOrder(got, want string) bool {
	words := strings.Fields(got)
	for _, w := range strings.Fields(want) {
		i := slices.Index(words, w)
		if i < 0 {
			return false
		}
		words = words[i+1:]
	}
	return true
}
