package audit

import (
	"strings"

	"github.com/google/uuid"
)

// minShortID is the length of a short run id when nothing forces a longer one.
const minShortID = 8

// ShortIDs names each run by a short form unique among ids: the end of its
// 32 hex digits (the random tail of a UUIDv7, whose first digits are a
// timestamp that runs started close together share), lengthened for every
// run until no two forms are equal. The forms depend only on the set of ids,
// so the same output always names a run the same way.
func ShortIDs(ids []uuid.UUID) map[uuid.UUID]string {
	hexes := make(map[uuid.UUID]string, len(ids))
	for _, id := range ids {
		hexes[id] = strings.ReplaceAll(id.String(), "-", "")
	}
	for n := minShortID; ; n++ {
		forms := make(map[uuid.UUID]string, len(hexes))
		seen := make(map[string]int, len(hexes))
		for id, h := range hexes {
			forms[id] = h[len(h)-min(n, len(h)):]
			seen[forms[id]]++
		}
		unique := true
		for _, count := range seen {
			if count > 1 {
				unique = false
				break
			}
		}
		if unique || n >= 32 {
			return forms
		}
	}
}
