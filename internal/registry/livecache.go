package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// versionsChannel is the channel the versions_changed trigger (migration 00003) notifies with
// the app_id of every inserted, deleted or changed versions row, when its transaction commits.
const versionsChannel = "skewguard_versions"

// LiveCacheOptions tune a LiveCache; zero fields take the defaults.
type LiveCacheOptions struct {
	// MaxAge is how long an entry is answered without reading it again, whatever was announced
	// (default one minute): a last resort should a change ever go unannounced.
	MaxAge time.Duration
	// PingInterval is how long the listening connection may stay quiet before it is checked,
	// with the trigger that announces changes (default 5 s); PingTimeout is how long that check
	// may take (default 2 s). A connection that fails the check is dropped, and the cache with
	// it, until a new connection passes it.
	PingInterval time.Duration
	PingTimeout  time.Duration
	// MaxEntries bounds the cache (default 65,536 versions); when full it starts over.
	MaxEntries int
	Logger     *slog.Logger
}

// LiveCache is the Store with LiveVersion, the read of every registration, answered from
// memory for versions it has read before. It is kept right by PostgreSQL itself: a trigger
// announces every change to a versions row (NOTIFY at commit; never for a rolled-back
// change) and Run listens on a connection of its own, forgetting the changed application's
// entries. A change is therefore seen here as soon as its notification arrives, a moment after
// the commit: the same race a registration's database read has always had with a commit that
// lands just after it. Entries are only kept while the listening connection is up: before Run
// has subscribed, while it reconnects, and when the connection fails its periodic check, every
// LiveVersion reads the database (as the Store does) and nothing is cached, and everything
// cached is dropped when listening stops or starts again. Only live versions are cached: an
// unknown or expired label is always read again. Every other method is the Store's.
type LiveCache struct {
	*Store
	opts LiveCacheOptions
	// read is Store.LiveVersion (replaced in tests).
	read func(ctx context.Context, ref VersionRef) (Version, bool, error)

	mu        sync.RWMutex
	listening bool
	// seq counts announced changes and starts of listening; changed[app] is the seq of the
	// app's last change. A read started at seq s is kept only if its app did not change since,
	// and listening did not restart (epoch).
	seq     uint64
	epoch   uint64
	changed map[int64]uint64
	entries map[VersionRef]liveEntry
	byApp   map[int64]map[VersionRef]struct{}

	hits, reads, notifications atomic.Int64
}

type liveEntry struct {
	v    Version
	read time.Time // when the read that produced it started
}

// NewLiveCache returns a cache over s. Call Run to make it cache anything.
func NewLiveCache(s *Store, opts LiveCacheOptions) *LiveCache {
	if opts.MaxAge <= 0 {
		opts.MaxAge = time.Minute
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 5 * time.Second
	}
	if opts.PingTimeout <= 0 {
		opts.PingTimeout = 2 * time.Second
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 1 << 16
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &LiveCache{Store: s, opts: opts, changed: map[int64]uint64{},
		entries: map[VersionRef]liveEntry{}, byApp: map[int64]map[VersionRef]struct{}{}}
	if s != nil {
		c.read = s.LiveVersion
	}
	return c
}

// LiveVersion returns the live life of ref, as Store.LiveVersion does, from memory when it
// can.
func (c *LiveCache) LiveVersion(ctx context.Context, ref VersionRef) (Version, bool, error) {
	now := time.Now()
	c.mu.RLock()
	e, ok := c.entries[ref]
	listening, epoch, seq := c.listening, c.epoch, c.seq
	c.mu.RUnlock()
	if ok && listening && now.Sub(e.read) < c.opts.MaxAge {
		c.hits.Add(1)
		return e.v, true, nil
	}
	c.reads.Add(1)
	v, live, err := c.read(ctx, ref)
	if err != nil || !live || !listening {
		return v, live, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.listening && c.epoch == epoch && c.changed[v.AppID] <= seq {
		if len(c.entries) >= c.opts.MaxEntries {
			c.resetLocked()
		}
		c.entries[ref] = liveEntry{v: v, read: now}
		refs := c.byApp[v.AppID]
		if refs == nil {
			refs = map[VersionRef]struct{}{}
			c.byApp[v.AppID] = refs
		}
		refs[ref] = struct{}{}
	}
	return v, true, nil
}

// Listening reports whether the cache is subscribed to changes, hence answering from memory.
func (c *LiveCache) Listening() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.listening
}

// Cached reports whether ref is answered from memory.
func (c *LiveCache) Cached(ref VersionRef) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.entries[ref]
	return ok && c.listening
}

// LiveCacheStats count what a LiveCache did since it was made.
type LiveCacheStats struct {
	Hits          int64 // LiveVersion calls answered from memory
	Reads         int64 // LiveVersion calls that read the database
	Notifications int64 // changes announced
}

// Stats returns the counts so far.
func (c *LiveCache) Stats() LiveCacheStats {
	return LiveCacheStats{Hits: c.hits.Load(), Reads: c.reads.Load(), Notifications: c.notifications.Load()}
}

// forget drops the entries of app after a change to one of its versions.
func (c *LiveCache) forget(app int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.changed[app] = c.seq
	for ref := range c.byApp[app] {
		delete(c.entries, ref)
	}
	delete(c.byApp, app)
}

// setListening drops everything and starts or stops caching.
func (c *LiveCache) setListening(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listening = on
	c.resetLocked()
}

func (c *LiveCache) resetLocked() {
	c.epoch++
	c.seq++
	clear(c.changed)
	clear(c.entries)
	clear(c.byApp)
}

// Run listens for version changes until ctx ends, reconnecting (after 0.1 s, doubling up to
// 5 s) whenever the connection is lost; the cache is off while it is.
func (c *LiveCache) Run(ctx context.Context) error {
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff, warned := minBackoff, false
	for {
		subscribed, err := c.listen(ctx)
		c.setListening(false)
		if ctx.Err() != nil {
			return nil
		}
		if subscribed {
			backoff, warned = minBackoff, false
		}
		// Warned once per outage; the retries after that are logged at debug level.
		level := slog.LevelWarn
		if warned {
			level = slog.LevelDebug
		}
		warned = true
		c.opts.Logger.Log(ctx, level, "live version cache off until it listens again: registrations read the database",
			"error", err, "retryIn", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// listen subscribes on a connection of its own and handles notifications until the connection
// fails or ctx ends. subscribed says whether LISTEN succeeded.
func (c *LiveCache) listen(ctx context.Context) (subscribed bool, err error) {
	cfg := c.pool.Config().ConnConfig.Copy()
	cfg.Tracer = nil
	cfg.RuntimeParams["application_name"] = "skewguard-listen"
	// Waiting ends by a deadline on the socket, which leaves the connection usable (the default
	// would send the server a cancel request every PingInterval).
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+versionsChannel); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	if err := checkAnnounced(ctx, conn); err != nil {
		return false, err
	}
	// From here every committed change is announced to this connection, so what is read from
	// now on may be kept.
	c.setListening(true)
	c.opts.Logger.Debug("live version cache on")
	for {
		wctx, cancel := context.WithTimeout(ctx, c.opts.PingInterval)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if n != nil {
			c.notified(n.Payload)
		}
		switch {
		case err == nil:
			continue
		case ctx.Err() != nil:
			return true, ctx.Err()
		case !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err):
			return true, fmt.Errorf("wait for notifications: %w", err)
		}
		// Quiet for PingInterval: make sure the connection is still there, and the trigger too.
		pctx, cancel := context.WithTimeout(ctx, c.opts.PingTimeout)
		err = checkAnnounced(pctx, conn)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return true, ctx.Err()
			}
			return true, fmt.Errorf("check listening connection: %w", err)
		}
	}
}

// checkAnnounced makes sure changes are announced: the trigger of migration 00003 is there and
// enabled. A schema not migrated yet (or the trigger dropped or disabled) keeps the cache off.
func checkAnnounced(ctx context.Context, conn *pgx.Conn) error {
	var ok bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_trigger
		WHERE tgrelid = 'versions'::regclass AND tgname = 'versions_changed' AND tgenabled <> 'D')`).Scan(&ok)
	switch {
	case err != nil:
		return fmt.Errorf("check the versions_changed trigger: %w", err)
	case !ok:
		return errors.New("the versions_changed trigger is missing or disabled: run skewguard migrate")
	}
	return nil
}

func (c *LiveCache) notified(payload string) {
	defer c.notifications.Add(1)
	app, err := strconv.ParseInt(payload, 10, 64)
	if err != nil {
		// Not ours to read: forget everything rather than guess.
		c.mu.Lock()
		c.resetLocked()
		c.mu.Unlock()
		return
	}
	c.forget(app)
}
