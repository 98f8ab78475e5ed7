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

// offsetsTable is where consumer groups keep their offsets (created by the migrations).
const offsetsTable = "projection_offsets"

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
)

// EventsSchema is a watermill-sql SchemaAdapter over our own events table.
// The migrations own the schema: it creates nothing and inserts nothing (the
// event store appends). Its SELECT keeps watermill's rule
// transaction_id < pg_snapshot_xmin(pg_current_snapshot()).
type EventsSchema struct {
	// BatchSize is the number of events read per subscriber transaction.
	BatchSize int
}

// OffsetsAdapter returns the offsets adapter for projection_offsets.
func OffsetsAdapter() wsql.OffsetsAdapter {
	return offsetsAdapter{wsql.DefaultPostgreSQLOffsetsAdapter{GenerateMessagesOffsetsTableName: func(string) string { return offsetsTable }}}
}

// offsetsAdapter is watermill-sql's PostgreSQL offsets adapter with a
// subscription that does not wait on an existing offset row. Watermill's
// "zero offset" INSERT … ON CONFLICT DO NOTHING waits for any transaction
// that has updated the row and not ended: a replica frozen in the middle of
// a batch (SIGSTOP, a VM stall) then kept every other replica's projector
// from subscribing, until its lock timeout ended serve. The row is inserted
// only when no version of it is visible; two first subscriptions racing on
// an empty table still meet at the unique key, as before.
type offsetsAdapter struct {
	wsql.DefaultPostgreSQLOffsetsAdapter
}

// BeforeSubscribingQueries inserts the group's zero offset unless its row
// already exists.
func (a offsetsAdapter) BeforeSubscribingQueries(params wsql.BeforeSubscribingQueriesParams) ([]wsql.Query, error) {
	table := a.MessagesOffsetsTable(params.Topic)
	return []wsql.Query{{
		Query: `INSERT INTO ` + table + ` (consumer_group, offset_acked, last_processed_transaction_id)
			SELECT $1::text, 0, '0'::xid8 WHERE NOT EXISTS (SELECT 1 FROM ` + table + ` WHERE consumer_group = $1)
			ON CONFLICT DO NOTHING`,
		Args: []any{params.ConsumerGroup},
	}}, nil
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
		batch = 100
	}
	// The offset row is read (and locked, for exactly-once between
	// subscribers) first, and the log is entered through the
	// (transaction_id, position) index at that offset: a row comparison
	// against the lateral offset is an index bound under any plan, custom or
	// generic, so a read costs the batch it returns however long the log.
	// (An OR of "same transaction, later position" and "later transaction"
	// is not: a generic plan walks the index from the log's start.)
	q := `
	SELECT e.position, e.transaction_id, e.event_id, e.stream_id, e.stream_version, e.business_id, e.type,
		e.schema_version, e.data, e.metadata, e.occurred_at, e.recorded_at
	FROM (` + next.Query + `) AS last_processed
	CROSS JOIN LATERAL (
		SELECT * FROM events
		WHERE (transaction_id, position) > (last_processed.last_processed_transaction_id, coalesce(last_processed.offset_acked, 0))
			AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY transaction_id ASC, position ASC
		LIMIT ` + strconv.Itoa(batch) + `
	) AS e
	ORDER BY e.transaction_id ASC, e.position ASC`
	return wsql.Query{Query: q, Args: next.Args}, nil
}

// UnmarshalMessage turns a row into a message: the payload is the event data,
// the stored columns travel as metadata.
func (EventsSchema) UnmarshalMessage(params wsql.UnmarshalMessageParams) (wsql.Row, error) {
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
		if err := json.Unmarshal([]byte(m), &r.Metadata); err != nil {
			return r, fmt.Errorf("message %s: metadata: %w", msg.UUID, err)
		}
	}
	if r.Event, err = domain.UnmarshalEvent(r.Type, r.SchemaVersion, r.Data); err != nil {
		return r, fmt.Errorf("message %s: %w", msg.UUID, err)
	}
	return r, nil
}
