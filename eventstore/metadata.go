package eventstore

import (
	"encoding/json"
	"unicode/utf8"
)

// DecodeMetadata decodes an event's stored metadata, as json.Unmarshal into
// a Metadata would. The projector decodes it for every event it reads, and
// encoding/json cost more there than the event itself (3.7% of serve's CPU
// under B1), so the shape the log holds (a flat object of our own keys with
// plain string values, as jsonb prints it) is read directly; anything else
// goes to encoding/json.
func DecodeMetadata(b []byte) (Metadata, error) {
	if m, ok := plainMetadata(b); ok {
		return m, nil
	}
	var m Metadata
	err := json.Unmarshal(b, &m)
	return m, err
}

// plainMetadata reads b if it is an object whose keys are exactly
// Metadata's JSON names and whose values are strings with no escape, no
// control character and valid UTF-8; ok is false for anything else.
func plainMetadata(b []byte) (m Metadata, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return m, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return m, skipSpace(b, i+1) == len(b)
	}
	for {
		key, j, ok := plainString(b, i)
		if !ok {
			return m, false
		}
		if i = skipSpace(b, j); i >= len(b) || b[i] != ':' {
			return m, false
		}
		val, j, ok := plainString(b, skipSpace(b, i+1))
		if !ok {
			return m, false
		}
		switch key {
		case "correlation_id":
			m.CorrelationID = val
		case "causation_id":
			m.CausationID = val
		case "actor":
			m.Actor = val
		case "request_id":
			m.RequestID = val
		default:
			return m, false
		}
		if i = skipSpace(b, j); i >= len(b) {
			return m, false
		}
		switch b[i] {
		case '}':
			return m, skipSpace(b, i+1) == len(b)
		case ',':
			i = skipSpace(b, i+1)
		default:
			return m, false
		}
	}
}

// plainString reads the JSON string starting at b[i] if it holds no escape,
// no control character and only valid UTF-8: its content and the index
// after its closing quote.
func plainString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[i+1 : j]
			return string(s), j + 1, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return "", 0, false
		}
	}
	return "", 0, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
