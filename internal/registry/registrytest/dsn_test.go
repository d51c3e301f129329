package registrytest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWithDatabase(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://postgres@127.0.0.1:25432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:25432/db1?sslmode=disable"},
		{"postgresql://u:p@h/", "postgresql://u:p@h/db1"},
		{"host=127.0.0.1 port=5432 dbname=postgres", "host=127.0.0.1 port=5432 dbname=postgres dbname=db1"},
	}
	for _, tc := range tests {
		got, err := withDatabase(tc.in, "db1")
		require.NoError(t, err)
		assert.Equal(t, tc.want, got)
	}
}

func TestDBName(t *testing.T) {
	a, b := dbName("TestThing/sub case #1"), dbName("TestThing/sub case #1")
	assert.NotEqual(t, a, b, "unique per call")
	assert.True(t, strings.HasPrefix(a, "skewguard_t_testthing_sub_case_1_"), a)
	long := dbName(strings.Repeat("TestVeryLongName", 10))
	assert.LessOrEqual(t, len(long), 63, "PostgreSQL truncates identifiers at 63 bytes")
}
