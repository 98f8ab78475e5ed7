package migrations_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// catalogQueries describe the public schema, one line per object: what two
// databases must agree on to have the same schema.
var catalogQueries = map[string]string{
	"relation": `SELECT c.relname || ' kind=' || c.relkind::text || ' options=' || coalesce(array_to_string(c.reloptions, ','), '')
		FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace`,
	"column": `SELECT table_name || '.' || column_name || ' #' || ordinal_position || ' ' || data_type
			|| ' nullable=' || is_nullable || ' default=' || coalesce(column_default, '')
		FROM information_schema.columns WHERE table_schema = 'public'`,
	"index": `SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'`,
	"constraint": `SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
		FROM pg_constraint WHERE connamespace = 'public'::regnamespace`,
	"trigger":  `SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal`,
	"function": `SELECT pg_get_functiondef(oid) FROM pg_proc WHERE pronamespace = 'public'::regnamespace`,
}

// bookkeeping names the migrators' own tables, which differ by history.
var bookkeeping = []string{"goose_db_version", "schema_migrations"}

// catalog returns the sorted description of pool's schema, without the
// migrators' bookkeeping tables.
func catalog(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	var lines []string
	for kind, q := range catalogQueries {
		rows, err := pool.Query(context.Background(), q)
		if err != nil {
			t.Fatalf("catalog %s: %v", kind, err)
		}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatalf("catalog %s: %v", kind, err)
			}
			if !slices.ContainsFunc(bookkeeping, func(name string) bool { return strings.Contains(line, name) }) {
				lines = append(lines, kind+": "+line)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("catalog %s: %v", kind, err)
		}
	}
	slices.Sort(lines)
	return lines
}

// assertSameCatalog fails t if got's schema differs from want's, listing
// the lines that differ.
func assertSameCatalog(t *testing.T, got, want *pgxpool.Pool) {
	t.Helper()
	g, w := catalog(t, got), catalog(t, want)
	if len(w) < 20 {
		t.Fatalf("reference catalog has only %d lines: %q", len(w), w)
	}
	for _, line := range w {
		if !slices.Contains(g, line) {
			t.Errorf("missing: %s", line)
		}
	}
	for _, line := range g {
		if !slices.Contains(w, line) {
			t.Errorf("unexpected: %s", line)
		}
	}
}
