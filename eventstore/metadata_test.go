package eventstore

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// metadataSeeds are shapes the log holds and shapes DecodeMetadata must
// leave to encoding/json.
var metadataSeeds = []string{
	`{}`, ` { } `, `{"actor": "worker:w-1"}`,
	`{"actor": "user:u", "request_id": "r-1", "causation_id": "c", "correlation_id": "x"}`,
	`{"actor":"a","actor":"b"}`, `{"Actor": "caps"}`, `{"actor": "esc\"aped"}`, `{"actor": "\u00e9"}`,
	`{"actor": "é"}`, "{\"actor\": \"bad\xff\"}", `{"actor": 1}`, `{"actor": null}`, `{"other": "x"}`,
	`{"actor": "a",}`, `{"actor" "a"}`, `{"actor": "a"} x`, `[]`, `null`, ``, `{"actor": "a"`, `{"actor": {"n": 1}}`,
	"{\"actor\":\t\"tab\"\n}", `{"request_id": ""}`,
}

// TestDecodeMetadataIsEncodingJSON compares DecodeMetadata with
// json.Unmarshal on the seeds and on random objects built from their parts.
func TestDecodeMetadataIsEncodingJSON(t *testing.T) {
	inputs := append([]string(nil), metadataSeeds...)
	keys := []string{`"actor"`, `"request_id"`, `"causation_id"`, `"correlation_id"`, `"Actor"`, `"x"`, `"act\u006fr"`}
	vals := []string{`"w"`, `""`, `"a b"`, `"\n"`, `1`, `null`, `"é"`, `"\""`, `true`}
	spaces := []string{"", " ", "\n", "\t"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		var b strings.Builder
		b.WriteString(spaces[r.IntN(len(spaces))] + "{")
		for i := range r.IntN(5) {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(spaces[r.IntN(len(spaces))] + keys[r.IntN(len(keys))] + spaces[r.IntN(len(spaces))] + ":" +
				spaces[r.IntN(len(spaces))] + vals[r.IntN(len(vals))])
		}
		b.WriteString("}" + spaces[r.IntN(len(spaces))])
		inputs = append(inputs, b.String())
	}
	fast := 0
	for _, in := range inputs {
		var want Metadata
		wantErr := json.Unmarshal([]byte(in), &want)
		got, err := DecodeMetadata([]byte(in))
		if (err != nil) != (wantErr != nil) || (wantErr == nil && got != want) {
			t.Fatalf("DecodeMetadata(%q) = %+v, %v; encoding/json: %+v, %v", in, got, err, want, wantErr)
		}
		if _, ok := plainMetadata([]byte(in)); ok {
			fast++
		}
	}
	if fast < len(inputs)/10 {
		t.Fatalf("only %d of %d inputs took the direct read: the test no longer compares it", fast, len(inputs))
	}
}

// TestDecodeMetadataReadsWhatAppendWrites: the metadata the store writes is
// read directly, not handed to encoding/json.
func TestDecodeMetadataReadsWhatAppendWrites(t *testing.T) {
	m := Metadata{CorrelationID: "corr-1", Actor: "worker:w-1", RequestID: "req-1", CausationID: "c-1"}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{string(raw), `{"actor": "worker:w-1", "request_id": "req-1", "causation_id": "c-1", "correlation_id": "corr-1"}`} {
		got, ok := plainMetadata([]byte(in))
		if !ok || got != m {
			t.Fatalf("plainMetadata(%s) = %+v, %v; want %+v read directly", in, got, ok, m)
		}
	}
}

func BenchmarkDecodeMetadata(b *testing.B) {
	raw := []byte(`{"actor": "worker:bench", "request_id": "0b6f0d1c-5b0e-4d7e-9c8a-2f6b1e4d3c2a", "correlation_id": "0b6f0d1c-5b0e-4d7e-9c8a-2f6b1e4d3c2a"}`)
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			_, _ = DecodeMetadata(raw)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			var m Metadata
			_ = json.Unmarshal(raw, &m)
		}
	})
}
