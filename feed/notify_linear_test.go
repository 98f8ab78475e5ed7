package feed

import (
	"fmt"
	"testing"

	"github.com/runledger/runledger/eventstore"
)

// countMarshal counts the bytes EncodeChange encodes while f runs.
func countMarshal(t *testing.T, f func()) int {
	t.Helper()
	n := 0
	orig := marshal
	marshal = func(v any) ([]byte, error) {
		raw, err := orig(v)
		n += len(raw)
		return raw, err
	}
	defer func() { marshal = orig }()
	f()
	return n
}

// Encoding a batch's change is linear in what it encodes: each business is
// encoded once and each payload once (it re-encoded the whole chunk for each
// business it added: 1,118,504 bytes encoded for 20,131 bytes of payloads), and a batch too
// big for maxNotifyChunks stops at the chunk that overflows.
func TestEncodeChangeIsLinear(t *testing.T) {
	c := Change[int]{Group: "runs", Offset: eventstore.Offset{TxID: 1, Position: 2}, Businesses: map[string]int64{}}
	for i := range 300 {
		c.Businesses[fmt.Sprintf("%060d", i)] = int64(i)
	}
	var payloads []string
	encoded := countMarshal(t, func() { payloads = EncodeChange("r1", c) })
	sent := 0
	for _, p := range payloads {
		if len(p) > maxNotifyPayload {
			t.Fatalf("payload of %d bytes (limit %d)", len(p), maxNotifyPayload)
		}
		sent += len(p)
	}
	t.Logf("300 businesses: %d payloads, %d bytes, %d bytes encoded", len(payloads), sent, encoded)
	if encoded > 3*sent {
		t.Errorf("encoded %d bytes for %d bytes of payloads (at most %d)", encoded, sent, 3*sent)
	}
	// Each chunk is full: the next business would not have fit.
	for i := 0; i+1 < len(payloads); i++ {
		_, next, _ := decodeChange[int](payloads[i+1])
		first := ""
		for b := range next.Businesses {
			if first == "" || b < first {
				first = b
			}
		}
		if extra := len(fmt.Sprintf(`,%q:%d`, first, next.Businesses[first])); len(payloads[i])+extra <= maxNotifyPayload {
			t.Errorf("chunk %d (%d bytes) had room for %s", i, len(payloads[i]), first)
		}
	}

	for i := 300; i < 20_000; i++ {
		c.Businesses[fmt.Sprintf("%060d", i)] = int64(i)
	}
	encoded = countMarshal(t, func() { payloads = EncodeChange("r1", c) })
	if _, back, err := decodeChange[int](payloads[0]); len(payloads) != 1 || err != nil || !back.Resync {
		t.Fatalf("20,000 businesses: %d payloads, %+v %v, want one resync", len(payloads), back, err)
	}
	if limit := 3 * (maxNotifyChunks + 1) * maxNotifyPayload; encoded > limit {
		t.Errorf("20,000 businesses: encoded %d bytes for one resync (at most %d)", encoded, limit)
	}
}
