package securer

import _ "embed"

// BuildRootfsScript is scripts/build-rootfs.sh, embedded so the installed
// binary can build its rootfs without the source tree.
//
//go:embed scripts/build-rootfs.sh
var BuildRootfsScript []byte
