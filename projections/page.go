package projections

import (
	"errors"
	"fmt"
	"strconv"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/runledger/runledger/eventstore"
)

// A read-model batch hands its events to the handler as one page: the
// batch's QueryContext reads and decodes every event of the read, and
// watermill-sql delivers a single message for them (behaviour 6 in
// watermill.go). A message per event cost more in watermill's delivery (a
// context, a hand-over between goroutines and an ack per event, and the
// columns turned into metadata strings and parsed back) than the read
// model's own work: under B1, with two groups, a third of serve's
// projector time.

// pagedEvent is one event of a page: decoded, or the reason it does not
// decode (rec then holds its position and id only, for projection_poison).
type pagedEvent struct {
	txID uint64
	rec  eventstore.Recorded
	err  error
}

// page is a batch's read: its events in subscriber order, and how many of
// them the handler has taken (a page delivered again resumes after them).
type page struct {
	events []pagedEvent
	next   int
}

// scanPage reads and decodes the rows of the consumer read (consumerReadSQL's
// columns). A row that does not scan fails the read; an event that does
// not decode is kept with its error.
func scanPage(rows wsql.Rows) (*page, error) {
	defer rows.Close()
	p := &page{}
	for rows.Next() {
		var (
			txID       wsql.XID8
			r          eventstore.Recorded
			data, meta []byte
		)
		if err := rows.Scan(&r.Position, &txID, &r.EventID, &r.StreamID, &r.Version, &r.BusinessID, &r.Type,
			&r.SchemaVersion, &data, &meta, &r.OccurredAt, &r.RecordedAt); err != nil {
			return nil, fmt.Errorf("scan event row: %w", err)
		}
		r.Data, r.OccurredAt, r.RecordedAt = data, r.OccurredAt.UTC(), r.RecordedAt.UTC()
		err := eventstore.DecodeStored(&r, meta)
		p.events = append(p.events, pagedEvent{txID: uint64(txID), rec: r, err: err})
	}
	if e, ok := rows.(interface{ Err() error }); ok && e.Err() != nil {
		return nil, fmt.Errorf("read events: %w", e.Err())
	}
	return p, nil
}

// pageRows is what a batch's QueryContext returns to watermill-sql: one
// row standing for the whole page, or none when the read found nothing.
type pageRows struct {
	p    *page
	read bool
}

// Next implements wsql.Rows: true once, if the page holds events.
func (r *pageRows) Next() bool {
	if r.read || len(r.p.events) == 0 {
		return false
	}
	r.read = true
	return true
}

// Scan implements wsql.Rows; EventsSchema.UnmarshalMessage reads a page
// without it.
func (r *pageRows) Scan(...any) error {
	return errors.New("a page of events is read by EventsSchema.UnmarshalMessage, not scanned")
}

// Close implements wsql.Rows (the page's rows are closed already).
func (r *pageRows) Close() error { return nil }

// message is the page as one watermill message: its offset and
// transaction id are its last event's, which is what the ack writes.
func (p *page) message() wsql.Row {
	first, last := p.events[0], p.events[len(p.events)-1]
	msg := message.NewMessage(first.rec.EventID.String(), nil)
	msg.Metadata = message.Metadata{
		metaPosition: strconv.FormatInt(last.rec.Position, 10),
		metaTxID:     strconv.FormatUint(last.txID, 10),
		metaEvents:   strconv.Itoa(len(p.events)),
	}
	return wsql.Row{Offset: last.rec.Position, UUID: []byte(msg.UUID), Msg: msg,
		ExtraData: map[string]any{"transaction_id": wsql.XID8(last.txID)}}
}

// take returns the next event the handler has not taken yet.
func (p *page) take() (pagedEvent, bool) {
	if p.next >= len(p.events) {
		return pagedEvent{}, false
	}
	p.next++
	return p.events[p.next-1], true
}
