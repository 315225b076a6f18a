package nodetest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// CPUTimes are the machine's CPU times from /proc/stat, in clock ticks
// summed over all cores: busy (user, system and interrupts) and in all
// (also idle, waiting for I/O, and stolen by the hypervisor).
type CPUTimes struct{ busy, total int64 }

// clockTicks is USER_HZ, the unit of /proc/stat on every Linux platform Go
// supports.
const clockTicks = 100

// MachineCPU reads the CPU time the machine has spent; false where there
// is no /proc/stat. Per operation, it is a figure that varies less than
// throughput when the machine's neighbours take their share, so load
// commands print it to compare changes by.
func MachineCPU() (CPUTimes, bool) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTimes{}, false
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	if len(fields) < 6 || fields[0] != "cpu" {
		return CPUTimes{}, false
	}
	var t CPUTimes
	for i, f := range fields[1:] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return CPUTimes{}, false
		}
		switch i {
		case 0, 1, 2, 5, 6: // user, nice, system, irq, softirq
			t.busy += v
			t.total += v
		case 3, 4, 7: // idle, iowait, steal
			t.total += v
		} // guest time is already counted as user time
	}
	return t, true
}

// Sub is the CPU time spent between before and t.
func (t CPUTimes) Sub(before CPUTimes) CPUTimes {
	return CPUTimes{t.busy - before.busy, t.total - before.total}
}

// PerOp is the busy time in milliseconds per operation of n.
func (t CPUTimes) PerOp(n int) float64 { return float64(t.busy) * 1000 / clockTicks / float64(n) }

// Busy is the busy share of the time, in percent.
func (t CPUTimes) Busy() float64 { return 100 * float64(t.busy) / float64(max(t.total, 1)) }

// ProcessCPU is the CPU time used by this process (node and test clients)
// and by the PostgreSQL backends serving a database.
type ProcessCPU struct{ Self, Postgres time.Duration }

// ReadProcessCPU reads, from /proc (Linux; zero elsewhere), the CPU time
// used so far by this process and by the backends connected to the pool's
// database. A backend that ended in between is not counted.
func ReadProcessCPU(ctx context.Context, pool *pgxpool.Pool) (ProcessCPU, error) {
	rows, err := pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		return ProcessCPU{}, fmt.Errorf("nodetest: list backends: %w", err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return ProcessCPU{}, fmt.Errorf("nodetest: list backends: %w", err)
	}
	c := ProcessCPU{Self: procCPU("self")}
	for _, pid := range pids {
		c.Postgres += procCPU(strconv.Itoa(int(pid)))
	}
	return c, nil
}

// Sub is the CPU time used between before and c.
func (c ProcessCPU) Sub(before ProcessCPU) ProcessCPU {
	return ProcessCPU{c.Self - before.Self, c.Postgres - before.Postgres}
}

// procCPU returns the user and system time of /proc/<pid>/stat.
func procCPU(pid string) time.Duration {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold blanks): utime
	// and stime are the 12th and 13th, in clock ticks.
	_, rest, _ := strings.Cut(string(stat), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	user, _ := strconv.ParseInt(f[11], 10, 64)
	sys, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(user+sys) * time.Second / clockTicks
}

// EnvInt reads a load command's positive integer setting from the
// environment (def when unset); anything else fails the benchmark.
func EnvInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		tb.Fatalf("%s=%q is not a positive number", name, v)
	}
	return n
}
