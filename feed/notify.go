package feed

import (
	"encoding/json"
	"sort"
	"strconv"

	"github.com/runledger/runledger/eventstore"
)

// Limits of the change notifications sent with pg_notify: PostgreSQL
// refuses payloads of 8000 bytes or more; a batch that moved more businesses
// than fit in maxNotifyChunks payloads is sent as a resync instead.
const (
	maxNotifyPayload = 7900
	maxNotifyChunks  = 4
)

// marshal is json.Marshal; the tests count the bytes it encodes.
var marshal = json.Marshal

// wireChange is a Change as a notification carries it: no items (the
// receiver reads them), and the sender, so a replica skips its own.
type wireChange struct {
	Origin     string           `json:"o"`
	Group      string           `json:"g"`
	TxID       string           `json:"t"`
	Position   int64            `json:"p"`
	Max        int64            `json:"m"`
	Businesses map[string]int64 `json:"b,omitempty"`
	Resync     bool             `json:"r,omitempty"`
}

// EncodeChange returns the payloads that carry c on ChangesChannel (the
// publisher sends them with pg_notify in the batch's transaction), each
// under the limit, without its items. It
// is linear in what it sends: the size of a chunk is kept as businesses are
// added (each encoded once), each payload is encoded once, and a change too
// big for maxNotifyChunks payloads stops at the chunk that overflows.
func EncodeChange[P any](origin string, c Change[P]) []string {
	base := wireChange{Origin: origin, Group: c.Group, TxID: strconv.FormatUint(c.Offset.TxID, 10),
		Position: c.Offset.Position, Max: c.MaxPosition, Resync: c.Resync}
	names := make([]string, 0, len(c.Businesses))
	for b := range c.Businesses {
		names = append(names, b)
	}
	sort.Strings(names)
	// A chunk is base with `,"b":{…}` before its end (or before `,"r":true`).
	baseSize := len(mustJSON(base)) + len(`,"b":{}`)
	var out []string
	chunk, size := map[string]int64{}, baseSize
	emit := func() {
		w := base
		w.Businesses = chunk
		out = append(out, mustJSON(w))
	}
	for _, name := range names {
		key, _ := marshal(name) // a string always encodes
		entry := len(key) + len(":") + len(strconv.FormatInt(c.Businesses[name], 10))
		if len(chunk) > 0 {
			if size+len(",")+entry <= maxNotifyPayload {
				chunk[name], size = c.Businesses[name], size+len(",")+entry
				continue
			}
			emit()
			if len(out) >= maxNotifyChunks { // this business would need one more
				base.Resync = true
				return []string{mustJSON(base)}
			}
			chunk, size = map[string]int64{}, baseSize
		}
		chunk[name], size = c.Businesses[name], size+entry
	}
	emit()
	return out
}

// decodeChange reads a payload of EncodeChange.
func decodeChange[P any](payload string) (origin string, c Change[P], err error) {
	var w wireChange
	if err := json.Unmarshal([]byte(payload), &w); err != nil {
		return "", Change[P]{}, err
	}
	tx, err := strconv.ParseUint(w.TxID, 10, 64)
	if err != nil {
		return "", Change[P]{}, err
	}
	return w.Origin, Change[P]{Group: w.Group, Offset: eventstore.Offset{TxID: tx, Position: w.Position}, MaxPosition: w.Max,
		Businesses: w.Businesses, Resync: w.Resync}, nil
}

func mustJSON(v any) string {
	raw, err := marshal(v)
	if err != nil {
		panic(err) // a struct of strings and numbers always encodes
	}
	return string(raw)
}
