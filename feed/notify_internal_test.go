package feed

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/runledger/runledger/eventstore"
)

func TestChangeNotificationsFitAndRoundTrip(t *testing.T) {
	small := Change[int]{Group: "runs", Offset: eventstore.Offset{TxID: 42, Position: 7}, MaxPosition: 9, Businesses: map[string]int64{"acme": 9}}
	payloads := EncodeChange("r1", small)
	if len(payloads) != 1 {
		t.Fatalf("%d payloads for one business", len(payloads))
	}
	origin, back, err := decodeChange[int](payloads[0])
	if err != nil || origin != "r1" || !reflect.DeepEqual(back, small) {
		t.Fatalf("round trip = %q %+v %v", origin, back, err)
	}
	// 300 businesses with 60-character ids do not fit in one payload.
	big := Change[int]{Group: "runs", Offset: eventstore.Offset{TxID: 1, Position: 2}, Businesses: map[string]int64{}}
	for i := 0; i < 300; i++ {
		big.Businesses[fmt.Sprintf("%060d", i)] = int64(i)
	}
	payloads = EncodeChange("r1", big)
	got := map[string]int64{}
	for _, p := range payloads {
		if len(p) >= 8000 {
			t.Fatalf("payload of %d bytes", len(p))
		}
		_, c, err := decodeChange[int](p)
		if err != nil || c.Resync {
			t.Fatalf("chunk %v resync=%v", err, c.Resync)
		}
		for b, pos := range c.Businesses {
			got[b] = pos
		}
	}
	if len(payloads) < 2 || !reflect.DeepEqual(got, big.Businesses) {
		t.Fatalf("%d chunks carried %d of %d businesses", len(payloads), len(got), len(big.Businesses))
	}
	// Far too many: one resync instead.
	for i := 300; i < 2000; i++ {
		big.Businesses[strings.Repeat("x", 50)+fmt.Sprint(i)] = int64(i)
	}
	payloads = EncodeChange("r1", big)
	if _, c, err := decodeChange[int](payloads[0]); len(payloads) != 1 || err != nil || !c.Resync || c.Offset != big.Offset {
		t.Fatalf("overflow = %d payloads, %+v %v", len(payloads), c, err)
	}
}
