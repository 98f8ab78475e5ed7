package domain

import (
	"encoding/json"
	"fmt"
	"time"
)

// schemaVersions is the payload version each event type is written with
// today. RunStarted is at 2 (it records the run's policy); every older
// version of a type stays readable.
var schemaVersions = map[string]int{
	TypeRunStarted:      2,
	TypeHeartbeat:       1,
	TypeCancelRequested: 1,
	TypeRunCompleted:    1,
	TypeRunStaleFailed:  1,
	TypePauseRequested:  1,
	TypeRunResumed:      1,
}

// SchemaVersionOf returns the payload version events of type typ are written
// with today, and 0 for a type this code does not know.
func SchemaVersionOf(typ string) int { return schemaVersions[typ] }

// MarshalEvent returns the stored form of e: its type, the schema version of
// that type today (SchemaVersionOf) and its JSON payload. It returns an error
// for an event type the codec does not know or a payload that does not encode.
func MarshalEvent(e Event) (typ string, version int, data []byte, err error) {
	typ = e.EventType()
	version = SchemaVersionOf(typ)
	if version == 0 {
		return "", 0, nil, fmt.Errorf("marshal: unknown event type %q", typ)
	}
	data, err = json.Marshal(e)
	if err != nil {
		return "", 0, nil, fmt.Errorf("marshal %s: %w", typ, err)
	}
	return typ, version, data, nil
}

// UnmarshalEvent decodes a stored event of any version from 1 to the type's
// current one (a RunStarted of version 1 decodes with a zero policy, which
// means the service's values). It returns an error for an unknown type, a
// version this code does not know, or a payload that does not decode.
func UnmarshalEvent(typ string, version int, data []byte) (Event, error) {
	current := SchemaVersionOf(typ)
	if current == 0 {
		return nil, fmt.Errorf("unknown event type %q", typ)
	}
	if version < 1 || version > current {
		return nil, fmt.Errorf("event %s: unsupported schema version %d", typ, version)
	}
	var (
		e   Event
		err error
	)
	switch typ {
	case TypeRunStarted:
		e, err = decode[RunStarted](data)
	case TypeHeartbeat:
		e, err = decode[Heartbeat](data)
	case TypeCancelRequested:
		e, err = decode[CancelRequested](data)
	case TypeRunCompleted:
		e, err = decode[RunCompleted](data)
	case TypeRunStaleFailed:
		e, err = decode[RunStaleFailed](data)
	case TypePauseRequested:
		e, err = decode[PauseRequested](data)
	case TypeRunResumed:
		e, err = decode[RunResumed](data)
	default:
		return nil, fmt.Errorf("unknown event type %q", typ)
	}
	if err != nil {
		return nil, fmt.Errorf("event %s v%d: %w", typ, version, err)
	}
	return e, nil
}

func decode[T Event](data []byte) (Event, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// Duration is a time.Duration that is stored as a Go duration string ("15m0s").
type Duration time.Duration

// MarshalJSON encodes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON decodes a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }
