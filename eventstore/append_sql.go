package eventstore

import (
	"fmt"
	"strings"
)

// The append statement appends the events of several commands (a batch,
// one command per run) in one statement, without an explicit transaction:
// for each command it moves the run's snapshot from the version the command
// expects and inserts the command's events only if that matched. It is a
// chain of data-modifying CTEs, each a named part below, put together by
// buildAppend in the order they are listed. It returns (run_id, last
// position) per command that applied; a command missing from the result was
// not applied (its caller learns why by appending alone, see appendAlone).
//
// The parameters are arrays, one element per command (the input part) or
// per event (the events part), named in appendParams; the builder numbers
// them, so a part names its parameter (@run_ids) rather than its position.

// appendParams are the statement's parameters in the order appendArgs
// passes them: per command, then per event, then the notification channel
// (only in the notifying forms).
var appendParams = []string{
	"run_ids", "expected", "next_versions", "ended", "last_heartbeat_ats", "stale_ats", "states", "business_ids",
	"event_run_ids", "event_ids", "event_versions", "event_types", "event_schema_versions", "event_data", "event_metadata", "event_occurred_ats",
	"notify_channel",
}

// appendInput is the commands, one row per run: the version it expects
// (0 for a new run), and the snapshot it moves to. Materialized: every later
// part reads the same rows.
const appendInput = `input AS MATERIALIZED (
		SELECT * FROM unnest(@run_ids::uuid[], @expected::bigint[], @next_versions::bigint[], @ended::bool[], @last_heartbeat_ats::timestamptz[], @stale_ats::timestamptz[], @states::bytea[], @business_ids::text[])
			AS i(run_id, expected, next_version, ended, last_heartbeat_at, stale_at, state, business_id)
	)`

// appendEvents is the events, one row each, with their positions drawn from
// the log's sequence first and in the order given, so that a run's events
// get increasing positions and each snapshot can record its run's last one.
// Materialized: the sequence is drawn once per event whatever the plan.
const appendEvents = `ev AS MATERIALIZED (
		SELECT e.*, nextval(pg_get_serial_sequence('events', 'position')) AS pos
		FROM unnest(@event_run_ids::uuid[], @event_ids::uuid[], @event_versions::bigint[], @event_types::text[], @event_schema_versions::int[], @event_data::jsonb[], @event_metadata::jsonb[], @event_occurred_ats::timestamptz[])
			WITH ORDINALITY AS e(run_id, id, v, t, sv, d, m, o, n)
		ORDER BY e.n
	)`

// appendLastPositions is each run's last position in this statement: what
// its snapshot records.
const appendLastPositions = `last AS (
		SELECT run_id, max(pos) AS pos FROM ev GROUP BY run_id
	)`

// appendMoveSnapshots moves the snapshot of each existing run that is still
// at the expected version and has not ended. A concurrent append of the
// same run blocks on the snapshot row, then finds the version moved and
// matches nothing: that is the optimistic concurrency of the log.
const appendMoveSnapshots = `moved AS (
		UPDATE run_snapshots rs SET version = i.next_version, ended = i.ended, last_heartbeat_at = i.last_heartbeat_at,
			stale_at = i.stale_at, state = i.state, last_position = last.pos
		FROM input i JOIN last USING (run_id)
		WHERE rs.run_id = i.run_id AND i.expected > 0 AND rs.version = i.expected AND NOT rs.ended
		RETURNING rs.run_id
	)`

// appendCreateSnapshots creates the snapshot of each new run (expected 0).
// The primary key refuses a run that exists, and the partial unique index
// run_snapshots_one_open_per_business a second open run of a business.
// Lenient (strict=false, the batch), such a run is skipped (ON CONFLICT DO
// NOTHING) so that it cannot fail the other commands; strict (a command
// appended alone), the violation is raised, by the constraint's name.
func appendCreateSnapshots(strict bool) string {
	onConflict := ` ON CONFLICT DO NOTHING`
	if strict {
		onConflict = ``
	}
	return `created AS (
		INSERT INTO run_snapshots (run_id, business_id, version, ended, last_heartbeat_at, stale_at, state, last_position)
		SELECT i.run_id, i.business_id, i.next_version, i.ended, i.last_heartbeat_at, i.stale_at, i.state, last.pos
		FROM input i JOIN last USING (run_id) WHERE i.expected = 0` + onConflict + `
		RETURNING run_id
	)`
}

// appendApplied is the runs whose snapshot moved or was created: only
// their events are written.
const appendApplied = `ok AS (
		SELECT run_id FROM moved UNION ALL SELECT run_id FROM created
	)`

// appendWriteEvents inserts the events of the applied runs, in position
// order. The unique (stream_id, stream_version) and event_id keys are the
// last guard: a retried event id or a version taken raises a violation.
const appendWriteEvents = `written AS (
		INSERT INTO events (position, event_id, stream_id, stream_version, business_id, type, schema_version, data, metadata, occurred_at)
		SELECT ev.pos, ev.id, ev.run_id, ev.v, i.business_id, ev.t, ev.sv, ev.d, ev.m, ev.o
		FROM ev JOIN ok USING (run_id) JOIN input i USING (run_id)
		ORDER BY ev.pos
		RETURNING stream_id, position
	)`

// appendNotify sends the highest position the statement wrote on the
// LISTEN/NOTIFY channel (delivered at commit), once per statement: the other
// replicas' projectors wake for it. Materialized, so it runs once whatever
// the plan; a statement that wrote nothing sends nothing (it is filtered on
// a position having been written, which a generic plan would otherwise send
// as an empty payload).
const appendNotify = `notified AS MATERIALIZED (
		SELECT pg_notify(@notify_channel, top::text) FROM (SELECT max(position) AS top FROM written) m WHERE top IS NOT NULL
	)`

// appendResult is what the statement returns: each applied run's last
// position (joined with the notification, when there is one, so that it is
// part of the statement's result and cannot be left out).
func appendResult(notify bool) string {
	if notify {
		return `SELECT w.stream_id, max(w.position) FROM written w, notified GROUP BY w.stream_id`
	}
	return `SELECT stream_id, max(position) FROM written GROUP BY stream_id`
}

// buildAppend puts the parts together into the statement of the given
// form and numbers its parameters ($1 … in appendParams' order).
func buildAppend(strict, notify bool) string {
	parts := []string{appendInput, appendEvents, appendLastPositions, appendMoveSnapshots,
		appendCreateSnapshots(strict), appendApplied, appendWriteEvents}
	if notify {
		parts = append(parts, appendNotify)
	}
	return numberParams("WITH "+strings.Join(parts, ", ")+"\n\t"+appendResult(notify), appendParams)
}

// numberParams replaces each @name in sql with $n, n its place in names
// (1-based). It panics on a name not in names: the statements are built at
// init, so a typo fails every test at once.
func numberParams(sql string, names []string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(sql, '@')
		if i < 0 {
			b.WriteString(sql)
			return b.String()
		}
		b.WriteString(sql[:i])
		sql = sql[i+1:]
		j := 0
		for j < len(sql) && (sql[j] == '_' || sql[j] >= 'a' && sql[j] <= 'z') {
			j++
		}
		n := -1
		for k, name := range names {
			if name == sql[:j] {
				n = k + 1
			}
		}
		if n < 0 {
			panic(fmt.Sprintf("append statement: unknown parameter @%s", sql[:j]))
		}
		fmt.Fprintf(&b, "$%d", n)
		sql = sql[j:]
	}
}

// appendStatements are the forms of the append statement, by [strict][notify].
var appendStatements = [2][2]string{
	{buildAppend(false, false), buildAppend(false, true)},
	{buildAppend(true, false), buildAppend(true, true)},
}
