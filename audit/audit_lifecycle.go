package audit

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/runledger/runledger/eventstore"
)

// WriteLifecycle prints the compactions of a business's runs and its
// erasures after its timeline, one line each, so that whoever reads an audit
// knows which heartbeats are no longer in it and why the business may have
// none at all.
func WriteLifecycle(w io.Writer, records []eventstore.LifecycleRecord) error {
	if len(records) == 0 {
		return nil
	}
	var ids []uuid.UUID
	for _, r := range records {
		if r.Kind == "compaction" {
			ids = append(ids, r.RunID)
		}
	}
	short := ShortIDs(ids)
	var b strings.Builder
	b.WriteString("\nlifecycle:\n")
	for _, r := range records {
		at := r.At.UTC().Format(timeFormat)
		switch r.Kind {
		case "compaction":
			fmt.Fprintf(&b, "%s  run %-12s  compacted on %s by %s (runs ended before %s): %s of %s heartbeats removed (%s bytes); "+
				"the answer at every instant preserved, progress between kept heartbeats coarser\n",
				at, short[r.RunID], r.At.UTC().Format("2006-01-02"), r.Actor, r.EndedBefore.UTC().Format(timeFormat),
				thousands(int64(r.HeartbeatsRemoved)), thousands(int64(r.HeartbeatsBefore)), thousands(r.BytesRemoved))
		case "erasure":
			var total int64
			var parts []string
			for _, t := range slices.Sorted(maps.Keys(r.Counts)) {
				total += r.Counts[t]
				if r.Counts[t] > 0 {
					parts = append(parts, fmt.Sprintf("%s %s", t, thousands(r.Counts[t])))
				}
			}
			fmt.Fprintf(&b, "%s  erased on %s by %s%s: %s rows removed (%s)\n", at, r.At.UTC().Format("2006-01-02"),
				r.Actor, reason(r.Reason), thousands(total), strings.Join(parts, ", "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// thousands formats n with commas: 1,712.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
