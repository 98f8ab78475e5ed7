package projections

import (
	stdsql "database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
)

// Topic is the watermill topic name of the log.
const Topic = "events"

// Message metadata keys carrying the stored columns of an event.
const (
	metaPosition   = "position"
	metaStreamID   = "stream_id"
	metaVersion    = "stream_version"
	metaBusinessID = "business_id"
	metaType       = "type"
	metaSchema     = "schema_version"
	metaOccurredAt = "occurred_at"
	metaRecordedAt = "recorded_at"
	metaEventMeta  = "event_metadata"
	metaTxID       = "transaction_id"
	// metaEvents is the number of events a page message stands for.
	metaEvents = "events"
)

// defaultBatchSize is the most events a read returns when the group does
// not say.
const defaultBatchSize = 100

// EventsSchema is a watermill-sql SchemaAdapter over our own events table.
// The migrations own the schema: it creates nothing and inserts nothing (the
// event store appends). Its SELECT keeps watermill's rule
// transaction_id < pg_snapshot_xmin(pg_current_snapshot()).
type EventsSchema struct {
	// BatchSize is the number of events read per subscriber transaction.
	BatchSize int
	// SkipHeartbeats makes the group read every event but heartbeats (see
	// consumerReadSQL).
	SkipHeartbeats bool
}

// SchemaInitializingQueries returns nothing: migrations own the schema.
func (EventsSchema) SchemaInitializingQueries(wsql.SchemaInitializingQueriesParams) ([]wsql.Query, error) {
	return nil, nil
}

// InsertQuery refuses: only the event store appends to the log.
func (EventsSchema) InsertQuery(wsql.InsertQueryParams) (wsql.Query, error) {
	return wsql.Query{}, errors.New("the events topic is written by the event store, not published to")
}

// SelectQuery returns the next batch after the consumer group's offset.
func (s EventsSchema) SelectQuery(params wsql.SelectQueryParams) (wsql.Query, error) {
	next, err := params.OffsetsAdapter.NextOffsetQuery(wsql.NextOffsetQueryParams{Topic: params.Topic, ConsumerGroup: params.ConsumerGroup})
	if err != nil {
		return wsql.Query{}, err
	}
	batch := s.BatchSize
	if batch <= 0 {
		batch = defaultBatchSize
	}
	return wsql.Query{Query: consumerReadSQL(next, batch, s.SkipHeartbeats), Args: next.Args}, nil
}

// UnmarshalMessage turns a row into a message: the payload is the event data,
// the stored columns travel as metadata.
// A read-model batch's read is a page (page.go): one message for all its
// events.
func (EventsSchema) UnmarshalMessage(params wsql.UnmarshalMessageParams) (wsql.Row, error) {
	if p, ok := params.Row.(*pageRows); ok {
		return p.p.message(), nil
	}
	var (
		pos                    int64
		txID                   wsql.XID8
		eventID, streamID      uuid.UUID
		version                int64
		business, typ          string
		schema                 int
		data, meta             []byte
		occurredAt, recordedAt time.Time
	)
	if err := params.Row.Scan(&pos, &txID, &eventID, &streamID, &version, &business, &typ, &schema,
		&data, &meta, &occurredAt, &recordedAt); err != nil {
		return wsql.Row{}, fmt.Errorf("scan event row: %w", err)
	}
	msg := message.NewMessage(eventID.String(), data)
	msg.Metadata = message.Metadata{
		metaPosition:   strconv.FormatInt(pos, 10),
		metaStreamID:   streamID.String(),
		metaVersion:    strconv.FormatInt(version, 10),
		metaBusinessID: business,
		metaType:       typ,
		metaSchema:     strconv.Itoa(schema),
		metaOccurredAt: occurredAt.UTC().Format(time.RFC3339Nano),
		metaRecordedAt: recordedAt.UTC().Format(time.RFC3339Nano),
		metaEventMeta:  string(meta),
		metaTxID:       strconv.FormatUint(uint64(txID), 10),
	}
	return wsql.Row{Offset: pos, UUID: []byte(msg.UUID), Payload: data, Metadata: meta, Msg: msg,
		ExtraData: map[string]any{"transaction_id": txID}}, nil
}

// SubscribeIsolationLevel is repeatable read, as watermill-sql requires on PostgreSQL.
func (EventsSchema) SubscribeIsolationLevel() stdsql.IsolationLevel {
	return stdsql.LevelRepeatableRead
}

// RecordedFromMessage rebuilds the stored event carried by msg.
func RecordedFromMessage(msg *message.Message) (eventstore.Recorded, error) {
	var (
		r   eventstore.Recorded
		err error
	)
	md := msg.Metadata
	if r.Position, err = strconv.ParseInt(md.Get(metaPosition), 10, 64); err != nil {
		return r, fmt.Errorf("message %s: position: %w", msg.UUID, err)
	}
	if r.EventID, err = uuid.Parse(msg.UUID); err != nil {
		return r, fmt.Errorf("message %s: id: %w", msg.UUID, err)
	}
	if r.StreamID, err = uuid.Parse(md.Get(metaStreamID)); err != nil {
		return r, fmt.Errorf("message %s: stream: %w", msg.UUID, err)
	}
	if r.Version, err = strconv.ParseInt(md.Get(metaVersion), 10, 64); err != nil {
		return r, fmt.Errorf("message %s: version: %w", msg.UUID, err)
	}
	if r.SchemaVersion, err = strconv.Atoi(md.Get(metaSchema)); err != nil {
		return r, fmt.Errorf("message %s: schema version: %w", msg.UUID, err)
	}
	r.BusinessID, r.Type, r.Data = md.Get(metaBusinessID), md.Get(metaType), json.RawMessage(msg.Payload)
	if r.OccurredAt, err = time.Parse(time.RFC3339Nano, md.Get(metaOccurredAt)); err != nil {
		return r, fmt.Errorf("message %s: occurred_at: %w", msg.UUID, err)
	}
	if r.RecordedAt, err = time.Parse(time.RFC3339Nano, md.Get(metaRecordedAt)); err != nil {
		return r, fmt.Errorf("message %s: recorded_at: %w", msg.UUID, err)
	}
	if m := md.Get(metaEventMeta); m != "" {
		if r.Metadata, err = eventstore.DecodeMetadata([]byte(m)); err != nil {
			return r, fmt.Errorf("message %s: metadata: %w", msg.UUID, err)
		}
	}
	if r.Event, err = domain.UnmarshalEvent(r.Type, r.SchemaVersion, r.Data); err != nil {
		return r, fmt.Errorf("message %s: %w", msg.UUID, err)
	}
	return r, nil
}
