package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/feed"
)

// This file is the one place in the module that reads or writes the
// consumer groups' offsets table, whose layout and meaning belong to
// watermill-sql (TestOffsetsTableAsWatermillWritesIt pins them for the version
// in go.mod). Outside projections, only eventstore's compaction check
// (compact.go) and the erase function of migration 0008 name it.
//
// The table (migrations/0002_read_models.sql, the layout of watermill-sql's
// DefaultPostgreSQLOffsetsAdapter) holds one row per consumer group:
//
//	consumer_group                 the group's name
//	offset_acked                   Row.Offset of the last event acked: its position
//	last_processed_transaction_id  Row.ExtraData["transaction_id"] of that event
//
// Together they are the group's Offset: the group has applied every event at
// or before (last_processed_transaction_id, offset_acked) in
// (transaction_id, position) order, and none after. Watermill writes the row
// (its AckMessageQuery, in the batch's transaction) from what
// EventsSchema.UnmarshalMessage puts in Row.Offset and Row.ExtraData; we read
// it back here for the lag, verify and rebuild, and write it in rebuild.

// offsetsTable is where consumer groups keep their offsets (created by the migrations).
const offsetsTable = "projection_offsets"

// OffsetsAdapter returns the offsets adapter for projection_offsets.
func OffsetsAdapter() wsql.OffsetsAdapter {
	return offsetsAdapter{DefaultPostgreSQLOffsetsAdapter: postgresOffsets}
}

var postgresOffsets = wsql.DefaultPostgreSQLOffsetsAdapter{GenerateMessagesOffsetsTableName: func(string) string { return offsetsTable }}

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
	// fromStartIf is ConsumerOptions.FromStartIf: empty, a new group
	// starts at the log's start; else at its head unless this holds.
	fromStartIf string
}

// BeforeSubscribingQueries inserts the group's first offset unless its row
// already exists: the log's start, or for a group with fromStartIf, the
// last event below the oldest running transaction (every event at or
// before it committed before this statement's snapshot, every later one
// is read) unless fromStartIf holds in that snapshot.
func (a offsetsAdapter) BeforeSubscribingQueries(params wsql.BeforeSubscribingQueriesParams) ([]wsql.Query, error) {
	table := a.MessagesOffsetsTable(params.Topic)
	first := `SELECT $1::text, 0, '0'::xid8`
	if a.fromStartIf != "" {
		first = `SELECT $1::text, coalesce(head.position, 0), coalesce(head.transaction_id, '0'::xid8)
			FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT e.transaction_id, e.position FROM events e
				WHERE e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) AND NOT (` + a.fromStartIf + `)
				ORDER BY e.transaction_id DESC, e.position DESC LIMIT 1) head ON true`
	}
	return []wsql.Query{{
		Query: `INSERT INTO ` + table + ` (consumer_group, offset_acked, last_processed_transaction_id)
			` + first + ` WHERE NOT EXISTS (SELECT 1 FROM ` + table + ` WHERE consumer_group = $1)
			ON CONFLICT DO NOTHING`,
		Args: []any{params.ConsumerGroup},
	}}, nil
}

// consumerReadSQL is a consumer group's read of its next batch (at most
// batch events) after its offset, which next (watermill's NextOffsetQuery:
// offset_acked, last_processed_transaction_id … FOR UPDATE) selects and
// locks, for exactly-once between subscribers. The log is entered through
// the (transaction_id, position) index at that offset: a row comparison
// against the lateral offset is an index bound under any plan, custom or
// generic, so a read costs the batch it returns however long the log. (An OR
// of "same transaction, later position" and "later transaction" is not: a
// generic plan walks the index from the log's start.) Only events below the
// oldest running transaction are read (watermill's rule), so none is skipped
// when transactions commit out of order.
//
// A group that skips heartbeats reads the other events only, through the
// partial index that leaves them out (so the heartbeats in between cost it
// nothing), and its offset moves on those events alone: it stays at the last
// event the group read, with any heartbeats after it unread.
func consumerReadSQL(next wsql.Query, batch int, skipHeartbeats bool) string {
	return `
	SELECT e.position, e.transaction_id, e.event_id, e.stream_id, e.stream_version, e.business_id, e.type,
		e.schema_version, e.data, e.metadata, e.occurred_at, e.recorded_at
	FROM (` + next.Query + `) AS last_processed
	CROSS JOIN LATERAL (
		SELECT * FROM events
		WHERE (transaction_id, position) > (last_processed.last_processed_transaction_id, coalesce(last_processed.offset_acked, 0))
			AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())` + typeFilter(skipHeartbeats, "") + `
		ORDER BY transaction_id ASC, position ASC
		LIMIT ` + strconv.Itoa(batch) + `
	) AS e
	ORDER BY e.transaction_id ASC, e.position ASC`
}

// skipHeartbeatsSQL is the condition of a group that never acts on a
// heartbeat. It is, word for word, the predicate of the partial index
// events_except_heartbeats (migrations/0010_events_except_heartbeats.sql),
// which is what lets the planner use that index.
const skipHeartbeatsSQL = `type <> '` + domain.TypeHeartbeat + `'`

// typeFilter is the clause a group's reads add to their WHERE (none for a
// group that reads every event); alias qualifies the column ("e." or "").
func typeFilter(skipHeartbeats bool, alias string) string {
	if !skipHeartbeats {
		return ""
	}
	return `
			AND ` + alias + skipHeartbeatsSQL
}

// lagCountCap bounds the events counted per measurement, so measuring a
// projection a million events behind stays cheap.
const lagCountCap = 100_000

// lagSQL measures one consumer group ($1): the committed events past its
// offset (at most $2), and the age of the first of them in subscriber order.
// Both subqueries enter the (transaction_id, position) index at the offset
// (a row comparison against the outer offset row is an index bound), so the
// measurement costs what the group is behind, capped, and nothing more on a
// long log than on an empty one; the count reads the index alone. A group
// that skips heartbeats counts (and dates) only the events it reads.
func lagSQL(skipHeartbeats bool) string {
	filter := typeFilter(skipHeartbeats, "e.")
	return `
	SELECT
		(SELECT count(*) FROM (
			SELECT 1 FROM events e WHERE (e.transaction_id, e.position) > (o.tx, o.pos)` + filter + `
			ORDER BY e.transaction_id, e.position LIMIT $2) behind),
		coalesce((SELECT extract(epoch FROM clock_timestamp() - e.recorded_at) FROM events e
			WHERE (e.transaction_id, e.position) > (o.tx, o.pos)` + filter + `
			ORDER BY e.transaction_id, e.position LIMIT 1), 0)::float8
	FROM (
		SELECT last_processed_transaction_id AS tx, coalesce(offset_acked, 0) AS pos
		FROM projection_offsets WHERE consumer_group = $1
		UNION ALL SELECT '0'::xid8, 0
		ORDER BY tx DESC LIMIT 1) o`
}

// readOffset reads group's committed offset (the zero Offset when the group
// has never run).
func readOffset(ctx context.Context, q Querier, group string) (Offset, error) {
	var (
		txID int64
		pos  int64
	)
	err := q.QueryRow(ctx, `SELECT last_processed_transaction_id::text::bigint, coalesce(offset_acked, 0)
		FROM projection_offsets WHERE consumer_group = $1`, group).Scan(&txID, &pos)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Offset{}, err
	}
	return Offset{TxID: uint64(txID), Position: pos}, nil
}

// holdOffset locks group's offset row in tx (creating the zero offset if the
// group has never run), so its subscribers wait until tx ends.
func holdOffset(ctx context.Context, tx pgx.Tx, group string) error {
	if _, err := tx.Exec(ctx, `INSERT INTO projection_offsets (consumer_group, offset_acked, last_processed_transaction_id)
		VALUES ($1, 0, '0') ON CONFLICT DO NOTHING`, group); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `SELECT 1 FROM projection_offsets WHERE consumer_group = $1 FOR UPDATE`, group)
	return err
}

// moveOffset sets group's offset to at, in tx.
func moveOffset(ctx context.Context, tx pgx.Tx, group string, at Offset) error {
	_, err := tx.Exec(ctx, `UPDATE projection_offsets SET offset_acked = $2, last_processed_transaction_id = $3::text::xid8
		WHERE consumer_group = $1`, group, at.Position, fmt.Sprint(at.TxID))
	return err
}

// eventsAfterSQL reads the next committed events ($3 at most) after the
// offset ($1 transaction id as text, $2 position), in subscriber order, with
// each one's transaction id first: rebuild's catch-up, which reads what the
// consumer read would.
const eventsAfterSQL = `SELECT transaction_id::text::bigint, %s FROM events
		WHERE (transaction_id, position) > ($1::text::xid8, $2) AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY transaction_id, position LIMIT $3`

// ConsumerRead is the statement, with its arguments, that group's
// subscriber sends to read its next batch of at most batch events (for plan
// tests and measurements).
func ConsumerRead(group string, batch int, skipHeartbeats bool) (string, []any, error) {
	q, err := EventsSchema{BatchSize: batch, SkipHeartbeats: skipHeartbeats}.SelectQuery(wsql.SelectQueryParams{Topic: Topic, ConsumerGroup: group, OffsetsAdapter: OffsetsAdapter()})
	return q.Query, q.Args, err
}

// ReadOffsets reads every consumer group's committed offset from
// watermill-sql's offsets table: the feed's resync (feed.OffsetReader).
func ReadOffsets(ctx context.Context, q feed.Querier) (map[string]eventstore.Offset, error) {
	rows, err := q.Query(ctx, `SELECT consumer_group, last_processed_transaction_id::text::bigint, coalesce(offset_acked, 0)
		FROM projection_offsets`)
	if err != nil {
		return nil, fmt.Errorf("read offsets: %w", err)
	}
	defer rows.Close()
	offsets := map[string]eventstore.Offset{}
	for rows.Next() {
		var (
			group string
			tx    int64
			off   eventstore.Offset
		)
		if err := rows.Scan(&group, &tx, &off.Position); err != nil {
			return nil, err
		}
		off.TxID = uint64(tx)
		offsets[group] = off
	}
	return offsets, rows.Err()
}
