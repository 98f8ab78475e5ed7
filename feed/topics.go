package feed

import (
	"context"
	"strconv"
)

// The LISTEN/NOTIFY channels replicas share.
const (
	// ChangesChannel carries each committed projector batch (see EncodeChange).
	ChangesChannel = "runledger_changes"
	// AppendsChannel carries the last position of each committed append
	// statement, so every replica's projector wakes for it.
	AppendsChannel = "runledger_appends"
)

// ChangesTopic publishes to f the batches other replicas tell on
// ChangesChannel (origin names this replica: its own are skipped), and
// after every (re)connect re-reads the offsets (Sync) so that every
// subscriber that may have missed a change re-reads once.
func ChangesTopic[P any](f *Feed[P], origin string, m *Metrics) Topic {
	return Topic{
		Notify: func(_ context.Context, payload string) error {
			from, c, err := decodeChange[P](payload)
			if err != nil || from == origin {
				return err
			}
			if c.Resync {
				m.resynced()
			}
			f.Publish(c)
			return nil
		},
		Resync: func(ctx context.Context, q Querier) error {
			m.resynced()
			return f.Sync(ctx, q)
		},
	}
}

// AppendsTopic calls wake with the position each committed append tells on
// AppendsChannel, and with 0 after every (re)connect (appends may have been
// missed: look again).
func AppendsTopic(wake func(position int64)) Topic {
	return Topic{
		Notify: func(_ context.Context, payload string) error {
			pos, err := strconv.ParseInt(payload, 10, 64)
			if err == nil {
				wake(pos)
			}
			return err
		},
		Resync: func(context.Context, Querier) error {
			wake(0)
			return nil
		},
	}
}
