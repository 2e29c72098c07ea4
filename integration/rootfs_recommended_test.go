package integration

import (
	"slices"
	"strings"
	"testing"

	"github.com/securer-runc/securer-runc/rootfs"
)

// recommendedSet is what Debian's r-recommended depends on (bookworm):
// the packages every R installation is expected to have.
var recommendedSet = []string{
	"r-cran-boot", "r-cran-class", "r-cran-cluster", "r-cran-codetools",
	"r-cran-foreign", "r-cran-kernsmooth", "r-cran-lattice", "r-cran-mass",
	"r-cran-matrix", "r-cran-mgcv", "r-cran-nlme", "r-cran-nnet",
	"r-cran-rpart", "r-cran-spatial", "r-cran-survival",
}

// TestRootfsRecommended: the default rootfs carries r-recommended (listed
// in its manifest, loadable in the box) and the en_US.UTF-8 locale, while
// sessions keep C.UTF-8.
func TestRootfsRecommended(t *testing.T) {
	m, err := rootfs.LoadManifest(rootfsDir)
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, p := range m.Packages {
		have = append(have, p.Name)
	}
	var missing []string
	for _, want := range append([]string{"r-recommended"}, recommendedSet...) {
		if !slices.Contains(have, want) {
			missing = append(missing, want)
		}
	}
	if len(missing) > 0 {
		t.Errorf("manifest of %s lacks %v (has %v); rebuild the rootfs", rootfsDir, missing, have)
	}
	if !strings.Contains(" "+m.Requested+" ", " r-recommended ") {
		t.Errorf("manifest requested %q, want r-recommended among them", m.Requested)
	}

	s := newSession(t, baseConfig())
	cases := []struct {
		name, code, want string
	}{
		{"recommended packages load",
			`suppressPackageStartupMessages({
				library(MASS); library(Matrix); library(survival); library(lattice); library(mgcv); library(nlme)
			})
			p <- c("MASS", "Matrix", "survival", "lattice", "mgcv", "nlme")
			paste(p[paste0("package:", p) %in% search()], collapse = " ")`,
			"MASS Matrix survival lattice mgcv nlme"},
		{"they work",
			`fit <- survival::coxph(survival::Surv(time, status) ~ age, data = survival::lung)
			 paste(class(fit), class(Matrix::Matrix(1:4, 2, sparse = TRUE)), nrow(MASS::Boston))`,
			"coxph dgCMatrix 506"},
		{"lattice draws",
			`class(lattice::xyplot(mpg ~ wt, data = mtcars))`, "trellis"},
		{"default locale stays C.UTF-8", `Sys.getlocale("LC_CTYPE")`, "C.UTF-8"},
		{"en_US.UTF-8 is available",
			`Sys.setlocale("LC_ALL", "en_US.UTF-8"); Sys.getlocale("LC_COLLATE")`,
			"en_US.UTF-8"},
		{"en_US collation is not C's", `Sys.setlocale("LC_COLLATE", "en_US.UTF-8"); paste(sort(c("b", "A", "a", "B")), collapse = "")`,
			"aAbB"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := mustOK(t, s, c.code)
			if got, _ := res.Value.Go().(string); got != c.want {
				t.Fatalf("got %#v, want %q (stderr %q)", res.Value.Go(), c.want, res.Stderr)
			}
		})
	}
}
