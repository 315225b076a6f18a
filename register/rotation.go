package register

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/sealing"
)

// Rotation is the progress of re-encrypting a tenant's register data under
// a new data key.
type Rotation struct {
	Tenant     string     `json:"tenant"`
	KeyVersion int        `json:"keyVersion"`
	StartedAt  time.Time  `json:"startedAt"`
	Total      int64      `json:"total"`
	Done       int64      `json:"done"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
}

// ReencryptArgs is the River job that re-encrypts a tenant's register data
// under data key KeyVersion. It works in batches, each committed on its
// own, and picks up where it stopped: what is left is exactly the rows
// under older keys.
type ReencryptArgs struct {
	Tenant     string `json:"tenant"`
	KeyVersion int    `json:"key_version"`
}

// Kind is the job kind.
func (ReencryptArgs) Kind() string { return "register_reencrypt" }

// InsertOpts runs one job per tenant and key version, retried for a day.
func (ReencryptArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 50, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// RotateKey makes a new data key the tenant's current one (first rotating
// the tenant's key-encryption key and wrapping every register key again
// when kek is set) and enqueues the re-encryption of the older data with
// jobs, in the same transaction.
func (s *Store) RotateKey(ctx context.Context, jobs *river.Client[pgx.Tx], tenantID string, kek bool) (Rotation, error) {
	r := Rotation{Tenant: tenantID}
	if s.tenants().Tenant(tenantID) == nil {
		return r, fmt.Errorf("register: rotate keys: no tenant %q", tenantID)
	}
	// The first keys exist from the first register operation on; make
	// sure they do before a KEK rotation rewraps.
	if err := s.keyring.Ensure(ctx, s.pool, tenantID); err != nil {
		return r, err
	}
	err := db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		if kek {
			if _, err := s.keyring.Provider().RotateKEK(ctx, tenantID); err != nil {
				return fmt.Errorf("register: rotate KEK of %s: %w", tenantID, err)
			}
			if _, err := s.keyring.Rewrap(ctx, tx, tenantID); err != nil {
				return err
			}
		}
		v, err := s.keyring.Rotate(ctx, tx, tenantID)
		if err != nil {
			return err
		}
		r.KeyVersion = v
		for _, t := range s.sealed {
			n, err := t.Count(ctx, tx, tenantID, v)
			if err != nil {
				return fmt.Errorf("register: count %s to re-encrypt: %w", t.Name, err)
			}
			r.Total += n
		}
		err = tx.QueryRow(ctx, `INSERT INTO register_rotation (tenant_id, key_version, total) VALUES ($1, $2, $3) RETURNING started_at`,
			tenantID, v, r.Total).Scan(&r.StartedAt)
		if err != nil {
			return fmt.Errorf("register: record rotation: %w", err)
		}
		if err := db.LeaveTenant(ctx, tx); err != nil {
			return err
		}
		if _, err := jobs.InsertTx(ctx, tx, ReencryptArgs{Tenant: tenantID, KeyVersion: v}, nil); err != nil {
			return fmt.Errorf("register: enqueue re-encryption: %w", err)
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	s.log.Info("register data key rotated; re-encryption enqueued", "tenant", tenantID, "key_version", r.KeyVersion, "kek_rotated", kek, "rows", r.Total)
	return r, nil
}

// Rotations lists the tenant's key rotations, newest first.
func (s *Store) Rotations(ctx context.Context, tenantID string) ([]Rotation, error) {
	var out []Rotation
	err := db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT tenant_id, key_version, started_at, total, done, finished_at
			FROM register_rotation WHERE tenant_id = $1 ORDER BY key_version DESC`, tenantID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Rotation])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("register: rotations of %s: %w", tenantID, err)
	}
	return out, nil
}

// WorkSlice bounds one run of a re-encryption or sealing job (under the
// node's job timeout, jobs.JobTimeout); the job snoozes and goes on.
const WorkSlice = 5 * time.Second

// reencryptBatch is how many rows one transaction re-encrypts (a variable
// for tests).
var reencryptBatch = 500

// ReencryptWorker runs ReencryptArgs jobs.
type ReencryptWorker struct {
	river.WorkerDefaults[ReencryptArgs]
	Store *Store
}

// Work re-encrypts batches until no row under an older key is left. Writes
// by nodes that have not yet noticed the new key (they look again after
// currentTTL) are caught by a last pass that waits until then.
func (w *ReencryptWorker) Work(ctx context.Context, job *river.Job[ReencryptArgs]) error {
	s, a := w.Store, job.Args
	log := s.log.With("tenant", a.Tenant, "key_version", a.KeyVersion)
	start := time.Now()
	for {
		if time.Since(start) > WorkSlice {
			return river.JobSnooze(0) // go on in a new run, progress is committed
		}
		n, rot, err := s.reencrypt(ctx, a.Tenant, a.KeyVersion)
		if err != nil {
			return err
		}
		s.metrics.reencryptRemaining.WithLabelValues(a.Tenant).Set(float64(max(rot.Total-rot.Done, 0)))
		if n > 0 {
			log.Info("re-encrypting register data", "done", rot.Done, "total", rot.Total)
			continue
		}
		if wait := rot.StartedAt.Add(2 * sealing.CurrentTTL).Sub(s.now()); wait > 0 {
			return river.JobSnooze(wait)
		}
		if err := s.finishRotation(ctx, a.Tenant, a.KeyVersion); err != nil {
			return err
		}
		log.Info("register data re-encrypted under the new key; older data keys retired", "rows", rot.Done)
		return nil
	}
}

// reencrypt re-encrypts one batch of the tenant's rows under older keys,
// of every sealed table, and returns how many it did and the rotation's
// progress.
func (s *Store) reencrypt(ctx context.Context, tenantID string, version int) (int, Rotation, error) {
	var n int
	var rot Rotation
	err := db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		n = 0
		for _, t := range s.sealed {
			done, err := t.Reseal(ctx, tx, s.keyring, tenantID, version, reencryptBatch)
			if err != nil {
				return fmt.Errorf("%s: %w", t.Name, err)
			}
			n += done
		}
		return tx.QueryRow(ctx, `UPDATE register_rotation SET done = done + $3 WHERE tenant_id = $1 AND key_version = $2
			RETURNING tenant_id, key_version, started_at, total, done, finished_at`, tenantID, version, n).Scan(
			&rot.Tenant, &rot.KeyVersion, &rot.StartedAt, &rot.Total, &rot.Done, &rot.FinishedAt)
	})
	if err != nil {
		return 0, rot, fmt.Errorf("register: re-encrypt data of %s under key %d: %w", tenantID, version, err)
	}
	return n, rot, nil
}

// registerTables are the register's sealed tables.
var registerTables = []sealing.Table{
	{Name: "register versions", SQL: "register_version", Reseal: sealing.Rows[versionRow]{
		Select: `SELECT v.record_id::text, v.seq, v.key_version, v.payload, r.register
			FROM register_version v JOIN register_record r ON r.tenant_id = v.tenant_id AND r.id = v.record_id
			WHERE v.tenant_id = $1 AND v.key_version < $2 LIMIT $3 FOR UPDATE OF v SKIP LOCKED`,
		Fields: func(tenantID string, v versionRow) (int, []sealing.Field) {
			return v.Key, []sealing.Field{{AAD: aad(tenantID, v.Register, v.ID, v.Seq), Sealed: v.Payload}}
		},
		Update: func(b *pgx.Batch, tenantID string, v versionRow, version int, sealed [][]byte) {
			b.Queue(`UPDATE register_version SET key_version = $4, payload = $5 WHERE tenant_id = $1 AND record_id = $2 AND seq = $3`,
				tenantID, v.ID, v.Seq, version, sealed[0])
		},
		Name: func(v versionRow) string { return fmt.Sprintf("version %d of record %s", v.Seq, v.ID) },
	}.Reseal},
	{Name: "access log", SQL: "register_access_log", Reseal: sealing.Rows[logRow]{
		Select: `SELECT id, key_version, idnr FROM register_access_log
			WHERE tenant_id = $1 AND key_version < $2 LIMIT $3 FOR UPDATE SKIP LOCKED`,
		Fields: func(tenantID string, l logRow) (int, []sealing.Field) {
			return l.Key, []sealing.Field{{AAD: accessAAD(tenantID, l.ID), Sealed: l.IDNr}}
		},
		Update: func(b *pgx.Batch, tenantID string, l logRow, version int, sealed [][]byte) {
			b.Queue(`UPDATE register_access_log SET key_version = $3, idnr = $4 WHERE tenant_id = $1 AND id = $2`, tenantID, l.ID, version, sealed[0])
		},
		Name: func(l logRow) string { return fmt.Sprintf("access log entry %d", l.ID) },
	}.Reseal},
	{Name: "register facts", SQL: "register_fact", Reseal: sealing.Rows[factRow]{
		Select: `SELECT register, event_index, key_version, payload FROM register_fact
			WHERE tenant_id = $1 AND key_version < $2 LIMIT $3 FOR UPDATE SKIP LOCKED`,
		Fields: func(tenantID string, f factRow) (int, []sealing.Field) {
			return f.Key, []sealing.Field{{AAD: factAAD(tenantID, f.Register, f.Event), Sealed: f.Payload}}
		},
		Update: func(b *pgx.Batch, tenantID string, f factRow, version int, sealed [][]byte) {
			b.Queue(`UPDATE register_fact SET key_version = $4, payload = $5 WHERE tenant_id = $1 AND register = $2 AND event_index = $3`,
				tenantID, f.Register, f.Event, version, sealed[0])
		},
		Name: func(factRow) string { return "a fact" },
	}.Reseal},
}

// versionRow, logRow and factRow are sealed rows as key rotation reads
// them.
type versionRow struct {
	ID       string
	Seq      int
	Key      int
	Payload  []byte
	Register string
}

type logRow struct {
	ID   int64
	Key  int
	IDNr []byte
}

type factRow struct {
	Register string
	Event    []byte
	Key      int
	Payload  []byte
}

// finishRotation marks the rotation done and deletes the data keys older
// than it that no sealed row uses any more.
func (s *Store) finishRotation(ctx context.Context, tenantID string, version int) error {
	return db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE register_rotation SET finished_at = now() WHERE tenant_id = $1 AND key_version = $2`, tenantID, version); err != nil {
			return fmt.Errorf("register: finish rotation of %s: %w", tenantID, err)
		}
		rows, err := tx.Query(ctx, `SELECT version FROM register_key WHERE tenant_id = $1 AND kind = 'data' AND version < $2`, tenantID, version)
		if err != nil {
			return fmt.Errorf("register: finish rotation of %s: %w", tenantID, err)
		}
		old, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			return fmt.Errorf("register: finish rotation of %s: %w", tenantID, err)
		}
	keys:
		for _, v := range old {
			for _, t := range s.sealed {
				used, err := t.Uses(ctx, tx, tenantID, v)
				if err != nil {
					return fmt.Errorf("register: finish rotation of %s: %s: %w", tenantID, t.Name, err)
				}
				if used {
					continue keys
				}
			}
			if _, err := tx.Exec(ctx, `DELETE FROM register_key WHERE tenant_id = $1 AND kind = 'data' AND version = $2`, tenantID, v); err != nil {
				return fmt.Errorf("register: finish rotation of %s: %w", tenantID, err)
			}
		}
		return nil
	})
}

// AddWorkers registers the register's workers: re-encryption after a key
// rotation, and the sealing of data stored in plaintext.
func (s *Store) AddWorkers(w *river.Workers) {
	river.AddWorker(w, &ReencryptWorker{Store: s})
	river.AddWorker(w, &SealWorker{Store: s})
}

// SealArgs is the River job that seals the tenant's rows an earlier
// version stored in plaintext (key version 0: message content, report
// texts, dead letters) under its current data key, batch by batch, each
// committed on its own: it picks up where it stopped.
type SealArgs struct {
	Tenant string `json:"tenant"`
}

// Kind is the job kind.
func (SealArgs) Kind() string { return "seal_plaintext" }

// InsertOpts runs one job per tenant at a time.
func (SealArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 50, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable, rivertype.JobStateRunning, rivertype.JobStateScheduled}}}
}

// SealPlaintext enqueues, for every tenant that has rows stored in
// plaintext, the job that seals them.
func (s *Store) SealPlaintext(ctx context.Context, jobs *river.Client[pgx.Tx]) error {
	for _, t := range s.tenants().Tenants() {
		n, err := s.plaintextRows(ctx, t.ID)
		if err != nil {
			return err
		}
		if n == 0 {
			continue
		}
		s.log.Info("sealing data stored in plaintext", "tenant", t.ID, "rows", n)
		s.metrics.plaintextRemaining.WithLabelValues(t.ID).Set(float64(n))
		if _, err := jobs.Insert(ctx, SealArgs{Tenant: t.ID}, nil); err != nil {
			return fmt.Errorf("register: enqueue sealing of %s: %w", t.ID, err)
		}
	}
	return nil
}

// plaintextRows counts the tenant's rows stored in plaintext.
func (s *Store) plaintextRows(ctx context.Context, tenantID string) (int64, error) {
	var n int64
	err := db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		for _, t := range s.plain {
			c, err := t.Count(ctx, tx, tenantID, 1)
			if err != nil {
				return fmt.Errorf("%s: %w", t.Name, err)
			}
			n += c
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("register: count plaintext rows of %s: %w", tenantID, err)
	}
	return n, nil
}

// SealWorker runs SealArgs jobs.
type SealWorker struct {
	river.WorkerDefaults[SealArgs]
	Store *Store
}

// Work seals batches under the tenant's current data key until no row is
// left in plaintext.
func (w *SealWorker) Work(ctx context.Context, job *river.Job[SealArgs]) error {
	s, tenantID := w.Store, job.Args.Tenant
	if err := s.keyring.Ensure(ctx, s.pool, tenantID); err != nil {
		return err
	}
	start := time.Now()
	for {
		if time.Since(start) > WorkSlice {
			return river.JobSnooze(0) // go on in a new run, progress is committed
		}
		var done int
		err := db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
			version, err := s.keyring.CurrentVersion(ctx, tx, tenantID)
			if err != nil {
				return err
			}
			for _, t := range s.plain {
				n, err := t.Reseal(ctx, tx, s.keyring, tenantID, version, reencryptBatch)
				if err != nil {
					return fmt.Errorf("%s: %w", t.Name, err)
				}
				done += n
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("register: seal plaintext rows of %s: %w", tenantID, err)
		}
		left, err := s.plaintextRows(ctx, tenantID)
		if err != nil {
			return err
		}
		s.metrics.plaintextRemaining.WithLabelValues(tenantID).Set(float64(left))
		s.log.Info("sealing data stored in plaintext", "tenant", tenantID, "sealed", done, "left", left)
		if left == 0 || done == 0 {
			return nil
		}
	}
}
