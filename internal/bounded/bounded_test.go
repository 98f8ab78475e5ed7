package bounded_test

import (
	"testing"

	"github.com/runledger/runledger/internal/bounded"
)

func TestMapStartsOverWhenFull(t *testing.T) {
	m := bounded.New[int, string](3)
	for i := 0; i < 3; i++ {
		m.Put(i, "v")
	}
	m.Put(1, "updated") // an existing key never clears
	if v, ok := m.Get(1); !ok || v != "updated" || m.Len() != 3 {
		t.Fatalf("after update: %q %v len %d", v, ok, m.Len())
	}
	m.Put(3, "new") // a fourth key: start over
	if m.Len() != 1 {
		t.Fatalf("len after overflow = %d, want 1", m.Len())
	}
	if _, ok := m.Get(0); ok {
		t.Fatal("old entry survived the reset")
	}
	m.Delete(3)
	if _, ok := m.Get(3); ok || m.Len() != 0 {
		t.Fatal("delete did not forget")
	}
}
