package audit_test

import (
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/runledger/runledger/audit"
)

func TestShortIDsAreUniqueAndStable(t *testing.T) {
	// Two UUIDv7 ids of the same millisecond share their first 12 digits.
	a := uuid.MustParse("01a222ec-1f00-7abc-8def-0123456789ab")
	b := uuid.MustParse("01a222ec-1f00-7123-9456-fedcba987654")
	forms := audit.ShortIDs([]uuid.UUID{a, b})
	if forms[a] == forms[b] || forms[a] != "456789ab" || forms[b] != "ba987654" {
		t.Fatalf("forms = %v", forms)
	}
	// Tails that agree on their last 8 digits are lengthened until they differ.
	c := uuid.MustParse("01a222ec-1f00-7000-8000-1111456789ab")
	forms = audit.ShortIDs([]uuid.UUID{a, b, c})
	if forms[a] == forms[c] || forms[a] != "3456789ab" || forms[c] != "1456789ab" || len(forms[b]) != 9 {
		t.Fatalf("forms with a shared tail = %v", forms)
	}
	again := audit.ShortIDs([]uuid.UUID{c, b, a})
	for id, f := range forms {
		if again[id] != f {
			t.Fatalf("forms depend on order: %v vs %v", forms, again)
		}
	}
}

func TestShortIDsOfFiftyRunsInOneSecond(t *testing.T) {
	var ids []uuid.UUID
	for i := 0; i < 50; i++ {
		// One second of UUIDv7 ids: the same 48-bit millisecond prefix for
		// every 10, random tails that share their high digits.
		ids = append(ids, uuid.MustParse(fmt.Sprintf("01a222ec-%04x-7000-8000-0000%08x", 0x1f00+i/10, i*7919)))
	}
	forms := audit.ShortIDs(ids)
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[forms[id]] {
			t.Fatalf("short form %s given twice", forms[id])
		}
		seen[forms[id]] = true
	}
}
