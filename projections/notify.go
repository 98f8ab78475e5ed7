package projections

import (
	"encoding/json"
	"sort"
	"strconv"
)

// Limits of the change notifications sent with pg_notify: PostgreSQL
// refuses payloads of 8000 bytes or more; a batch that moved more businesses
// than fit in maxNotifyChunks payloads is sent as a resync instead.
const (
	maxNotifyPayload = 7900
	maxNotifyChunks  = 4
)

// wireChange is a Change as a notification carries it: no rows (the
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

// encodeChange returns the payloads that carry c, each under the limit.
func encodeChange(origin string, c Change) []string {
	base := wireChange{Origin: origin, Group: c.Group, TxID: strconv.FormatUint(c.Offset.TxID, 10),
		Position: c.Offset.Position, Max: c.MaxPosition, Resync: c.Resync}
	names := make([]string, 0, len(c.Businesses))
	for b := range c.Businesses {
		names = append(names, b)
	}
	sort.Strings(names)
	var out []string
	chunk := base
	chunk.Businesses = map[string]int64{}
	size := func(w wireChange) int { raw, _ := json.Marshal(w); return len(raw) }
	for _, name := range names {
		chunk.Businesses[name] = c.Businesses[name]
		if size(chunk) <= maxNotifyPayload {
			continue
		}
		delete(chunk.Businesses, name)
		out = append(out, mustJSON(chunk))
		chunk = base
		chunk.Businesses = map[string]int64{name: c.Businesses[name]}
	}
	out = append(out, mustJSON(chunk))
	if len(out) > maxNotifyChunks {
		base.Resync = true
		return []string{mustJSON(base)}
	}
	return out
}

// decodeChange reads a payload of encodeChange.
func decodeChange(payload string) (origin string, c Change, err error) {
	var w wireChange
	if err := json.Unmarshal([]byte(payload), &w); err != nil {
		return "", Change{}, err
	}
	tx, err := strconv.ParseUint(w.TxID, 10, 64)
	if err != nil {
		return "", Change{}, err
	}
	return w.Origin, Change{Group: w.Group, Offset: Offset{TxID: tx, Position: w.Position}, MaxPosition: w.Max,
		Businesses: w.Businesses, Resync: w.Resync}, nil
}

func mustJSON(v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err) // a struct of strings and numbers always encodes
	}
	return string(raw)
}
