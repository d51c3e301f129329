package registry

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeReads makes c read from versions, calling during (when set) in the middle of each read.
func fakeReads(c *LiveCache, versions map[VersionRef]Version, during func()) *int {
	n := 0
	c.read = func(_ context.Context, ref VersionRef) (Version, bool, error) {
		n++
		v, ok := versions[ref]
		if during != nil {
			during()
		}
		return v, ok, nil
	}
	return &n
}

var (
	refA1 = VersionRef{Namespace: "shop", App: "a", Label: "1"}
	refA2 = VersionRef{Namespace: "shop", App: "a", Label: "2"}
	refB1 = VersionRef{Namespace: "shop", App: "b", Label: "1"}
)

func TestLiveCacheKeepsNothingWhileNotListening(t *testing.T) {
	c := NewLiveCache(nil, LiveCacheOptions{})
	reads := fakeReads(c, map[VersionRef]Version{refA1: {AppID: 1, State: Active}}, nil)
	for range 3 {
		_, ok, err := c.LiveVersion(context.Background(), refA1)
		require.NoError(t, err)
		require.True(t, ok)
	}
	assert.Equal(t, 3, *reads)
	assert.False(t, c.Cached(refA1))
}

func TestLiveCacheForgetsOnlyTheChangedApp(t *testing.T) {
	c := NewLiveCache(nil, LiveCacheOptions{})
	c.setListening(true)
	reads := fakeReads(c, map[VersionRef]Version{refA1: {AppID: 1}, refA2: {AppID: 1}, refB1: {AppID: 2}}, nil)
	for _, r := range []VersionRef{refA1, refA2, refB1, refA1, refA2, refB1} {
		_, _, err := c.LiveVersion(context.Background(), r)
		require.NoError(t, err)
	}
	assert.Equal(t, 3, *reads)
	c.notified("1")
	assert.False(t, c.Cached(refA1))
	assert.False(t, c.Cached(refA2))
	assert.True(t, c.Cached(refB1))
	c.notified("not a number")
	assert.False(t, c.Cached(refB1), "an unreadable announcement forgets everything")
	c.setListening(false)
	assert.False(t, c.Listening())
}

// A read that a change of its app overtakes is answered but not kept: it may predate the change.
func TestLiveCacheDoesNotKeepAReadOvertakenByAChange(t *testing.T) {
	c := NewLiveCache(nil, LiveCacheOptions{})
	c.setListening(true)
	versions := map[VersionRef]Version{refA1: {AppID: 1, State: Active}, refB1: {AppID: 2, State: Active}}
	fakeReads(c, versions, func() { c.forget(1) })
	_, ok, err := c.LiveVersion(context.Background(), refA1)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.False(t, c.Cached(refA1), "kept a read that a change of its app overtook")
	_, _, err = c.LiveVersion(context.Background(), refB1)
	require.NoError(t, err)
	assert.True(t, c.Cached(refB1), "another app's change does not spoil the read")

	// Listening restarted during the read: nothing read before may be kept.
	c.forget(2)
	reads := fakeReads(c, versions, func() { c.setListening(false); c.setListening(true) })
	_, _, err = c.LiveVersion(context.Background(), refB1)
	assert.Equal(t, 1, *reads)
	require.NoError(t, err)
	assert.False(t, c.Cached(refB1))
}

func TestLiveCacheRereadsAfterMaxAgeAndStaysBounded(t *testing.T) {
	c := NewLiveCache(nil, LiveCacheOptions{MaxAge: time.Nanosecond, MaxEntries: 2})
	c.setListening(true)
	reads := fakeReads(c, map[VersionRef]Version{refA1: {AppID: 1}, refA2: {AppID: 1}, refB1: {AppID: 2}}, nil)
	for range 2 {
		_, _, err := c.LiveVersion(context.Background(), refA1)
		require.NoError(t, err)
	}
	assert.Equal(t, 2, *reads, "an entry older than MaxAge is read again")
	for _, r := range []VersionRef{refA2, refB1} {
		_, _, err := c.LiveVersion(context.Background(), r)
		require.NoError(t, err)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	assert.LessOrEqual(t, len(c.entries), 2)
}
