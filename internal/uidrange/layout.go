package uidrange

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// The layout of a user namespace with few IDs (a Kubernetes pod with
// hostUsers: false has 65,536): boxes of SmallSize IDs, which hold the
// box's root (0) and R's user (1000), between the IDs the pod's own
// containers use: the low ones (root, system and image users) and the top
// of the space (nobody, 65534, and the overflow IDs).
const (
	SmallSize = 2048
	// ReserveLow and ReserveHigh are the IDs at the bottom and the top of
	// the space that boxes are never given.
	ReserveLow  = 8192
	ReserveHigh = 2048
)

// ErrTooFewIDs: this process's user namespace has too few IDs for even
// one box.
var ErrTooFewIDs = errors.New("too few user and group IDs for a sandbox")

// Extent is a run of IDs [First, First+Count).
type Extent struct {
	First, Count uint64
}

func (e Extent) end() uint64 { return e.First + e.Count }

// String is the run as "first-last".
func (e Extent) String() string {
	if e.Count == 0 {
		return "none"
	}
	return fmt.Sprintf("%d-%d", e.First, e.end()-1)
}

// Layout is how the IDs this process can hand out are cut into boxes'
// ranges: slot k maps a box's IDs [0, Size) to this process's IDs from
// Base(k). The IDs are those of the user namespace the executor runs in
// (the host's, in the initial one).
//
// All executors sharing one registry dir run in the same user namespace
// (the registry is in that namespace's /run), so each derives the same
// layout, and slot k means the same IDs to all of them.
type Layout struct {
	// First is the first ID of slot 0.
	First uint32
	// Size is how many IDs each box gets.
	Size uint32
	// Slots is how many boxes can hold a range at once.
	Slots int
	// Space is the run of IDs the layout was cut from: the largest run
	// that exists as both uids and gids in this process's namespace.
	Space Extent
	// Small: the space cannot hold the full layout (Default's), so
	// boxes get SmallSize IDs each.
	Small bool
}

// Default is the layout of a namespace with the full ID space (the
// host's): 1024 slots of 65,536 IDs from 100,000.
func Default() Layout {
	return Layout{First: HostBase, Size: Size, Slots: Slots, Space: Extent{0, 1<<32 - 1}}
}

// Base is the first ID of slot k.
func (l Layout) Base(k int) uint32 { return l.First + uint32(k)*l.Size }

// Span is the IDs boxes may be given: [first, first+count).
func (l Layout) Span() (first, count uint64) {
	return uint64(l.First), uint64(l.Slots) * uint64(l.Size)
}

// String describes the layout for reports.
func (l Layout) String() string {
	first, count := l.Span()
	return fmt.Sprintf("%d boxes of %d IDs in %s", l.Slots, l.Size, Extent{first, count})
}

// Detect derives the layout from this process's uid and gid maps.
func Detect() (Layout, error) {
	uids, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return Layout{}, fmt.Errorf("read this process's uid map: %w", err)
	}
	gids, err := os.ReadFile("/proc/self/gid_map")
	if err != nil {
		return Layout{}, fmt.Errorf("read this process's gid map: %w", err)
	}
	return LayoutFor(string(uids), string(gids))
}

// LayoutFor derives the layout from a uid_map's and a gid_map's text (as
// /proc/PID/uid_map shows them: "inside outside count" lines). A box
// needs each of its IDs as both a uid and a gid, so only IDs in both
// maps count.
func LayoutFor(uidMap, gidMap string) (Layout, error) {
	uids, err := ParseIDMap(uidMap)
	if err != nil {
		return Layout{}, fmt.Errorf("uid map: %w", err)
	}
	gids, err := ParseIDMap(gidMap)
	if err != nil {
		return Layout{}, fmt.Errorf("gid map: %w", err)
	}
	both := Intersect(uids, gids)
	def := Default()
	first, count := def.Span()
	for _, e := range both {
		if e.First <= first && first+count <= e.end() {
			return def, nil
		}
	}
	space := largest(both)
	l := Layout{Size: SmallSize, Space: space, Small: true}
	lo, hi := space.First+ReserveLow, space.end()
	if hi >= ReserveHigh {
		hi -= ReserveHigh
	}
	if hi > lo {
		l.Slots = int(min((hi-lo)/SmallSize, Slots))
	}
	if l.Slots == 0 {
		return l, fmt.Errorf("%w: this process's user namespace has %d IDs usable as both uids and gids (largest run %s); "+
			"a box needs %d IDs beside the lowest %d and the highest %d of the run, which are left to the container's own users (%d in all): "+
			"give the container a larger uid and gid map, or, knowingly, run boxes without a user namespace (--unsafe-no-userns, Host.UnsafeNoUserNamespace)",
			ErrTooFewIDs, total(both), space, SmallSize, ReserveLow, ReserveHigh, ReserveLow+SmallSize+ReserveHigh)
	}
	l.First = uint32(lo)
	return l, nil
}

// ParseIDMap reads a uid_map or gid_map's text into the runs of IDs it
// maps inside the namespace, sorted and merged where they touch. A map
// with no line maps nothing: an error, as is any malformed line.
func ParseIDMap(text string) ([]Extent, error) {
	var out []Extent
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("malformed line %q: want inside, outside and count", line)
		}
		var n [3]uint64
		for i, s := range f {
			v, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("malformed line %q: %w", line, err)
			}
			n[i] = v
		}
		if n[2] == 0 {
			continue
		}
		out = append(out, Extent{First: n[0], Count: n[2]})
	}
	if len(out) == 0 {
		return nil, errors.New("maps no IDs")
	}
	return merge(out), nil
}

// merge sorts runs and joins those that overlap or touch.
func merge(es []Extent) []Extent {
	slices.SortFunc(es, func(a, b Extent) int { return cmpU64(a.First, b.First) })
	out := es[:1]
	for _, e := range es[1:] {
		last := &out[len(out)-1]
		if e.First <= last.end() {
			last.Count = max(last.end(), e.end()) - last.First
			continue
		}
		out = append(out, e)
	}
	return out
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Intersect is the IDs in both a and b (each sorted and merged, as
// ParseIDMap returns them).
func Intersect(a, b []Extent) []Extent {
	var out []Extent
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo, hi := max(a[i].First, b[j].First), min(a[i].end(), b[j].end())
		if hi > lo {
			out = append(out, Extent{lo, hi - lo})
		}
		if a[i].end() < b[j].end() {
			i++
		} else {
			j++
		}
	}
	return out
}

// largest is the longest run (the lowest of equals).
func largest(es []Extent) Extent {
	var best Extent
	for _, e := range es {
		if e.Count > best.Count {
			best = e
		}
	}
	return best
}

func total(es []Extent) uint64 {
	var n uint64
	for _, e := range es {
		n += e.Count
	}
	return n
}
