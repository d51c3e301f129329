package validate

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCookieName(t *testing.T) {
	for name, want := range map[string]bool{
		"__plt_dpl": true, "sg.version": true, "a+b": true, "!#$%&'*+-.^_`|~": true,
		"": false, "a b": false, "a=b": false, "a;b": false, "a,b": false, `a"b`: false, "é": false, "a\tb": false,
	} {
		assert.Equal(t, want, CookieName(name), "%q", name)
	}
}
