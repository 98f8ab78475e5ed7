package longlog

// seedSQL is the DO block Seed runs, formatted with: label, runs,
// businesses, events per run, events per transaction, waves, heartbeat
// seconds. Wave w runs one run per business (run g = w*businesses + r for
// business r); each transaction appends a few steps of every run of the wave
// in step order, as concurrent workers would; the wave's last transaction
// also writes its runs' snapshots. One run in 20 goes silent and is failed
// stale by the reaper 15 minutes later, one in 20 is cancelled from the
// page, the rest complete. Instants are whole milliseconds from t0, so an
// event and its snapshot agree exactly; they are written as Go writes a
// time.Time (RFC 3339, trailing zeros of the fraction dropped).
const seedSQL = `
DO $seed$
DECLARE
	lbl    text := '%[1]s';
	nruns  int  := %[2]d;
	nb     int  := %[3]d;
	n      int  := %[4]d;
	per_tx int  := %[5]d;
	nwaves int  := %[6]d;
	hb     int  := %[7]d;
	period interval := make_interval(secs => %[4]d * %[7]d + 960);
	t0     timestamptz;
	w      int;
	width  int;
	steps  int;
	k0     int;
	k1     int;
BEGIN
	t0 := greatest(date_trunc('second', now()) - nwaves * period - interval '1 hour',
		(SELECT date_trunc('second', occurred_at) + interval '1 minute' FROM events ORDER BY position DESC LIMIT 1));
	FOR w IN 0 .. nwaves - 1 LOOP
		width := least(nb, nruns - w * nb);
		steps := greatest(1, per_tx / width);
		k0 := 0;
		WHILE k0 < n LOOP
			k1 := least(n, k0 + steps);
			INSERT INTO events (event_id, stream_id, stream_version, business_id, type, schema_version, data, metadata, occurred_at, recorded_at)
			SELECT (lpad(to_hex((extract(epoch FROM e.t) * 1000)::bigint), 12, '0') || '7' || substr(e.h, 1, 3) || '8' || substr(e.h, 4, 15))::uuid,
				e.run, e.k + 1, e.biz, e.typ, CASE e.typ WHEN 'RunStarted' THEN 2 ELSE 1 END,
				CASE e.typ
				WHEN 'RunStarted' THEN jsonb_build_object('run_id', e.run, 'business_id', e.biz, 'worker_id', e.worker,
					'total_calls', 10 * n, 'stale_after', '15m0s', 'stall_after', '10m0s', 'occurred_at', e.jt)
				WHEN 'Heartbeat' THEN jsonb_build_object('completed_calls', 9 * e.k, 'failed_calls', e.k, 'occurred_at', e.jt)
				WHEN 'CancelRequested' THEN jsonb_build_object('reason', 'stopped from the page', 'requested_by', 'user:support',
					'forced', false, 'occurred_at', e.jt)
				WHEN 'RunCompleted' THEN jsonb_build_object('outcome', CASE e.kind WHEN 1 THEN 'cancelled' ELSE 'completed' END,
					'completed_calls', 9 * e.k, 'failed_calls', e.k, 'occurred_at', e.jt)
				ELSE jsonb_build_object('last_activity_at', regexp_replace(to_char((e.tb - hb * interval '1 second') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), '\.?0+Z$', 'Z'),
					'stale_after', '15m0s', 'detected_at', e.jt, 'abandoned_calls', 20, 'detected_by', 'reaper:seed')
				END,
				CASE e.typ
				WHEN 'RunStaleFailed' THEN jsonb_build_object('correlation_id', 'reap-' || e.run, 'actor', 'reaper:seed')
				WHEN 'CancelRequested' THEN jsonb_build_object('correlation_id', e.rid, 'actor', 'user:support', 'request_id', e.rid)
				ELSE jsonb_build_object('correlation_id', e.rid, 'actor', 'worker:' || e.worker, 'request_id', e.rid)
				END,
				e.t, e.t + interval '2 milliseconds'
			FROM (
				SELECT s.*, regexp_replace(to_char(s.t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), '\.?0+Z$', 'Z') AS jt
				FROM (
					SELECT r, k, g, run, biz, worker, kind, h, md5(h)::uuid::text AS rid, typ, tb,
						CASE typ WHEN 'RunStaleFailed' THEN tb + (902 - hb) * interval '1 second' ELSE tb END AS t
					FROM (
						SELECT r, k, w * nb + r AS g, md5(lbl || ':' || (w * nb + r))::uuid AS run, lbl || '-' || r AS biz,
							'worker-' || mod(r, 50) AS worker, mod(w * nb + r, 20) AS kind,
							md5(lbl || ':' || (w * nb + r) || ':' || k) AS h,
							t0 + w * period + (k::bigint * hb * 1000 + r * 3) * interval '1 millisecond' AS tb,
							CASE WHEN k = 0 THEN 'RunStarted'
								WHEN k = n - 1 AND mod(w * nb + r, 20) = 0 THEN 'RunStaleFailed'
								WHEN k = n - 1 THEN 'RunCompleted'
								WHEN k = n - 2 AND mod(w * nb + r, 20) = 1 THEN 'CancelRequested'
								ELSE 'Heartbeat' END AS typ
						FROM generate_series(0, width - 1) r, generate_series(k0, k1 - 1) k
					) b
				) s
			) e
			ORDER BY e.k, e.r;
			IF k1 = n THEN
				INSERT INTO run_snapshots (run_id, business_id, version, ended, last_heartbeat_at, stale_at, state, last_position)
				SELECT x.run, x.biz, n, true, x.hb_at, x.hb_at + interval '15 minutes',
					convert_to(jsonb_strip_nulls(jsonb_build_object(
						'run_id', x.run, 'business_id', x.biz, 'worker_id', x.worker, 'status', x.status,
						'cancel_requested', x.kind = 1,
						'cancel_reason', CASE WHEN x.kind = 1 THEN 'stopped from the page' END,
						'cancel_requested_by', CASE WHEN x.kind = 1 THEN 'user:support' END,
						'total_calls', 10 * n, 'completed_calls', 9 * x.done_k, 'failed_calls', x.done_k,
						'started_at', regexp_replace(to_char(x.t_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), '\.?0+Z$', 'Z'),
						'last_heartbeat_at', regexp_replace(to_char(x.hb_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), '\.?0+Z$', 'Z'),
						'ended_at', regexp_replace(to_char(x.ended_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), '\.?0+Z$', 'Z'),
						'end_reason', x.end_reason,
						'abandoned_calls', CASE WHEN x.kind = 0 THEN 20 END,
						'stale_after', '15m0s', 'stall_after', '10m0s',
						'last_progress_at', regexp_replace(to_char(x.progress_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), '\.?0+Z$', 'Z'),
						'version', n))::text, 'UTF8'),
					(SELECT max(position) FROM events WHERE stream_id = x.run)
				FROM (
					SELECT y.*,
						CASE y.kind WHEN 0 THEN 'failed' WHEN 1 THEN 'cancelled' ELSE 'completed' END AS status,
						CASE y.kind WHEN 0 THEN 'stale' WHEN 1 THEN 'cancelled' ELSE 'completed' END AS end_reason,
						CASE y.kind WHEN 0 THEN n - 2 ELSE n - 1 END AS done_k,
						y.t_start + (CASE y.kind WHEN 1 THEN greatest(0, n - 3) ELSE n - 2 END) * hb * interval '1 second' AS hb_at,
						y.t_start + (CASE y.kind WHEN 0 THEN n - 2 ELSE n - 1 END) * hb * interval '1 second' AS progress_at,
						CASE y.kind WHEN 0 THEN y.t_start + ((n - 2) * hb + 902) * interval '1 second'
							ELSE y.t_start + (n - 1) * hb * interval '1 second' END AS ended_at
					FROM (
						SELECT md5(lbl || ':' || (w * nb + r))::uuid AS run, lbl || '-' || r AS biz, 'worker-' || mod(r, 50) AS worker,
							mod(w * nb + r, 20) AS kind, t0 + w * period + r * 3 * interval '1 millisecond' AS t_start
						FROM generate_series(0, width - 1) r
					) y
				) x;
			END IF;
			COMMIT;
			k0 := k1;
		END LOOP;
	END LOOP;
END $seed$`
