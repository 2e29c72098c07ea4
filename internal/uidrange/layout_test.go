package uidrange

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseIDMap(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []Extent
		err        bool
	}{
		{"full", "         0          0 4294967295\n", []Extent{{0, 4294967295}}, false},
		{"pod", "0 100000 65536", []Extent{{0, 65536}}, false},
		{"lines out of order, touching", "1000 501000 64536\n0 100000 1000\n", []Extent{{0, 65536}}, false},
		{"gap", "0 100000 1000\n2000 200000 1000\n", []Extent{{0, 1000}, {2000, 1000}}, false},
		{"zero count skipped", "0 100000 0\n5 5 5\n", []Extent{{5, 5}}, false},
		{"empty", "", nil, true},
		{"blank lines", "\n  \n", nil, true},
		{"two fields", "0 100000\n", nil, true},
		{"garbage", "a b c\n", nil, true},
		{"negative", "-1 0 10\n", nil, true},
		{"too large", "0 0 4294967296\n", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseIDMap(tc.text)
			if (err != nil) != tc.err {
				t.Fatalf("ParseIDMap(%q) error %v, want error %v", tc.text, err, tc.err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseIDMap(%q) = %v, want %v", tc.text, got, tc.want)
			}
		})
	}
}

func TestIntersect(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b []Extent
		want []Extent
	}{
		{"same", []Extent{{0, 10}}, []Extent{{0, 10}}, []Extent{{0, 10}}},
		{"overlap", []Extent{{0, 10}}, []Extent{{5, 10}}, []Extent{{5, 5}}},
		{"disjoint", []Extent{{0, 10}}, []Extent{{10, 10}}, nil},
		{"several", []Extent{{0, 10}, {20, 10}}, []Extent{{5, 20}}, []Extent{{5, 5}, {20, 5}}},
		{"inside", []Extent{{0, 100}}, []Extent{{10, 5}, {50, 5}}, []Extent{{10, 5}, {50, 5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Intersect(tc.a, tc.b); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Intersect(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
			if got := Intersect(tc.b, tc.a); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Intersect(%v, %v) = %v, want %v", tc.b, tc.a, got, tc.want)
			}
		})
	}
}

func TestLayoutFor(t *testing.T) {
	const full = "0 0 4294967295\n"
	const pod = "0 100000 65536\n"
	for _, tc := range []struct {
		name        string
		uids, gids  string
		first, size uint32
		slots       int
		small       bool
		errIs       error
		errSays     []string
	}{
		{name: "initial namespace", uids: full, gids: full, first: HostBase, size: Size, slots: Slots},
		{name: "holds the default span exactly", uids: "100000 0 67108864\n", gids: "0 0 200000000\n",
			first: HostBase, size: Size, slots: Slots},
		{name: "pod, 65536 IDs", uids: pod, gids: pod, first: 8192, size: SmallSize, slots: 27, small: true},
		{name: "two runs: the larger one", uids: "0 100000 65536\n200000 300000 131072\n", gids: full,
			first: 200000 + 8192, size: SmallSize, slots: (131072 - 8192 - 2048) / 2048, small: true},
		{name: "uid and gid maps differ: their common IDs", uids: "0 100000 65536\n", gids: "0 100000 32768\n",
			first: 8192, size: SmallSize, slots: (32768 - 8192 - 2048) / 2048, small: true},
		{name: "large but not the default span: capped", uids: "0 1000000 67108864\n", gids: "0 1000000 67108864\n",
			first: 8192, size: SmallSize, slots: Slots, small: true},
		{name: "just one box", uids: "0 100000 12288\n", gids: "0 100000 12288\n",
			first: 8192, size: SmallSize, slots: 1, small: true},
		{name: "too small", uids: "0 100000 12287\n", gids: "0 100000 12287\n",
			errIs: ErrTooFewIDs, errSays: []string{"12287 IDs", "0-12286", "larger uid and gid map", "unsafe-no-userns"}},
		{name: "only root mapped", uids: "0 100000 1\n", gids: "0 100000 1\n", errIs: ErrTooFewIDs, errSays: []string{"has 1 IDs"}},
		{name: "maps do not meet", uids: "0 100000 65536\n", gids: "65536 100000 65536\n", errIs: ErrTooFewIDs, errSays: []string{"has 0 IDs"}},
		{name: "empty uid map", uids: "", gids: pod, errSays: []string{"uid map"}},
		{name: "garbage gid map", uids: pod, gids: "x\n", errSays: []string{"gid map"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := LayoutFor(tc.uids, tc.gids)
			if len(tc.errSays) > 0 {
				if err == nil {
					t.Fatalf("LayoutFor = %+v, want an error", l)
				}
				if tc.errIs != nil && !errors.Is(err, tc.errIs) {
					t.Errorf("error %v is not %v", err, tc.errIs)
				}
				for _, s := range tc.errSays {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.First != tc.first || l.Size != tc.size || l.Slots != tc.slots || l.Small != tc.small {
				t.Errorf("LayoutFor = first %d size %d slots %d small %v, want %d %d %d %v",
					l.First, l.Size, l.Slots, l.Small, tc.first, tc.size, tc.slots, tc.small)
			}
			// Every slot lies in the space, clear of its reserved ends
			// (the default layout reserves the first 100000).
			first, count := l.Span()
			if first < l.Space.First+ReserveLow || first+count > l.Space.end()-ReserveHigh {
				t.Errorf("span %d+%d is not clear of the ends of %v", first, count, l.Space)
			}
			if last := uint64(l.Base(l.Slots-1)) + uint64(l.Size); last != first+count {
				t.Errorf("last slot ends at %d, span at %d", last, first+count)
			}
			if l.Size <= 1000 {
				t.Errorf("size %d does not hold the box's uid 1000", l.Size)
			}
		})
	}
}

func TestDefaultLayout(t *testing.T) {
	l := Default()
	if l.Base(0) != HostBase || l.Base(1) != HostBase+Size || uint64(l.Base(Slots-1))+Size-1 > 1<<31 {
		t.Errorf("bases %d %d %d", l.Base(0), l.Base(1), l.Base(Slots-1))
	}
	if l.Small {
		t.Error("the default layout is not small")
	}
}

func TestDetect(t *testing.T) {
	// Whatever namespace the test runs in, its layout is one of the two
	// kinds and has room for a box, or says why not.
	l, err := Detect()
	if err != nil {
		if !errors.Is(err, ErrTooFewIDs) {
			t.Fatal(err)
		}
		return
	}
	if l.Slots < 1 || l.Size <= 1000 || (l.Small != (l.Size == SmallSize)) {
		t.Errorf("Detect = %+v", l)
	}
}
