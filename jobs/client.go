package jobs

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
)

// JobTimeout bounds one run of a job; long work (re-encryption, sealing:
// register.WorkSlice) runs in slices and snoozes in between.
const (
	JobTimeout = 10 * time.Second
	// RescueAfter is how long a job may stay running before River takes
	// it for one whose node died (kill -9, power loss) and runs it again:
	// a restarted node leads after River's 15 s leader lease, and its
	// first look (River looks every 30 s) finds such jobs older than this,
	// so they run again about 15–20 s after the crash. River's
	// default is an hour, during which an accepted message would wait
	// unapplied with its report open. Every job is idempotent, so a
	// rescued job that had committed does nothing twice.
	RescueAfter = JobTimeout + 2*time.Second
)

// NewClient returns a River client that runs the given workers. Start it
// with Start; jobs inserted with InsertTx run once their transaction
// commits.
func NewClient(pool *pgxpool.Pool, workers *river.Workers, log *slog.Logger) (*river.Client[pgx.Tx], error) {
	c, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 20}},
		Workers: workers,
		Logger:  log,
		// Jobs that exhausted their retries stay visible for a month, not
		// River's default week, so an operator back from leave still finds them.
		DiscardedJobRetentionPeriod: 30 * 24 * time.Hour,
		FetchPollInterval:           200 * time.Millisecond,
		// River fetches at most a queue's free workers per fetch and waits
		// its cooldown (100 ms by default) between fetches, which capped a
		// queue at a few dozen jobs a second; the pipeline needs hundreds.
		FetchCooldown:        5 * time.Millisecond,
		JobTimeout:           JobTimeout,
		RescueStuckJobsAfter: RescueAfter,
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	return c, nil
}
