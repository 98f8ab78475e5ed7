package pguuid

import (
	"testing"

	"github.com/google/uuid"
)

func TestRawKeepsEveryIDInOrder(t *testing.T) {
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.Nil}
	raw := Raw(ids)
	if len(raw) != len(ids) {
		t.Fatalf("len = %d, want %d", len(raw), len(ids))
	}
	for i := range ids {
		if uuid.UUID(raw[i]) != ids[i] {
			t.Fatalf("raw[%d] = %x, want %s", i, raw[i], ids[i])
		}
	}
}
