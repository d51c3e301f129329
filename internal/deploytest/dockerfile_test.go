package deploytest

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, …
	args string
	line int
}

// stage is the instructions from one FROM to the next.
type stage struct {
	from  instruction
	image string
	name  string
	body  []instruction
}

// parseDockerfile reads the instruction stream of a Dockerfile: comments and blank lines dropped,
// lines ending in a backslash joined to the next. Enough for the checks below; there is no Docker
// engine here to build the image.
func parseDockerfile(t testing.TB, path string) []stage {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()

	var (
		stages  []stage
		pending strings.Builder
		start   int
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if pending.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, `\`) {
			pending.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		pending.WriteString(line)
		text := pending.String()
		pending.Reset()
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.Join(strings.Fields(args), " "), line: start}
		if in.cmd == "FROM" {
			fields := strings.Fields(in.args)
			var image, name []string
			for i := 0; i < len(fields); i++ {
				switch {
				case strings.HasPrefix(fields[i], "--"):
				case strings.EqualFold(fields[i], "AS") && i+1 < len(fields):
					name = append(name, fields[i+1])
					i++
				default:
					image = append(image, fields[i])
				}
			}
			require.Len(t, image, 1, "line %d: FROM %s", start, in.args)
			st := stage{from: in, image: image[0]}
			if len(name) == 1 {
				st.name = name[0]
			}
			stages = append(stages, st)
			continue
		}
		require.NotEmpty(t, stages, "line %d: %s before any FROM", start, in.cmd)
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	require.NoError(t, sc.Err())
	require.Zero(t, pending.Len(), "the Dockerfile ends inside a continued line")
	return stages
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.body {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// buildCommand is the RUN of the build stage that runs `go build` or `go install`.
func buildCommand(t testing.TB, s stage) string {
	t.Helper()
	for _, in := range s.all("RUN") {
		if strings.Contains(in.args, "go build") || strings.Contains(in.args, "go install") {
			return in.args
		}
	}
	t.Fatalf("stage %q has no RUN with go build or go install", s.name)
	return ""
}

// goTool is the go command that runs these tests.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

var ldflagsRE = regexp.MustCompile(`-ldflags "([^"]*)"`)

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join(repoRoot(t), "Dockerfile"))
	require.Len(t, stages, 2, "a build stage and a runtime stage")
	build, final := stages[0], stages[1]

	t.Run("build stage", func(t *testing.T) {
		assert.Regexp(t, `^golang:1\.26(\.\d+)?$`, build.image)
		assert.Equal(t, "build", build.name)
		run := buildCommand(t, build)
		for _, want := range []string{"CGO_ENABLED=0", "go build", "-trimpath", "./cmd/skewguard"} {
			assert.Contains(t, run, want)
		}
		m := ldflagsRE.FindStringSubmatch(run)
		require.NotNil(t, m, "go build has -ldflags \"…\"")
		flags := strings.Fields(m[1])
		assert.Subset(t, flags, []string{"-s", "-w"}, "strip the symbol table and DWARF")
		assert.Contains(t, m[1], "-X github.com/skewguard/skewguard/internal/buildinfo.Version=$VERSION")
		var args []string
		for _, in := range build.all("ARG") {
			args = append(args, in.args)
		}
		assert.Contains(t, args, "VERSION=dev", "VERSION is a build argument with a default")
		assert.Contains(t, args, "COMMIT=", "COMMIT is a build argument (.git is not in the context)")
		assert.Contains(t, m[1], "-X github.com/skewguard/skewguard/internal/buildinfo.Commit=$COMMIT")
	})

	t.Run("runtime stage", func(t *testing.T) {
		assert.Equal(t, "gcr.io/distroless/static-debian13:nonroot", final.image, "static distroless, no shell, no libc")
		assert.Empty(t, final.all("RUN"), "nothing runs in the runtime stage")

		users := final.all("USER")
		require.NotEmpty(t, users)
		assert.Equal(t, "65532:65532", users[len(users)-1].args, "the last USER is the unprivileged nonroot uid:gid")

		copies := final.all("COPY")
		require.Len(t, copies, 1)
		assert.Equal(t, "--from=build /out/skewguard /usr/local/bin/skewguard", copies[0].args)

		var exposed []string
		for _, in := range final.all("EXPOSE") {
			exposed = append(exposed, strings.Fields(in.args)...)
		}
		assert.Contains(t, exposed, "8080")

		entry := final.all("ENTRYPOINT")
		require.Len(t, entry, 1)
		var argv []string
		require.NoError(t, json.Unmarshal([]byte(entry[0].args), &argv), "ENTRYPOINT in exec form: signals reach the binary")
		assert.Equal(t, []string{"/usr/local/bin/skewguard"}, argv)
	})
}

// The image's binary must run on an image without libc: build it exactly as the Dockerfile does
// and check the ELF file has no interpreter and needs no shared library.
func TestBinaryIsStatic(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Fatalf("the image is linux; this check reads ELF files and needs linux, not %s", runtime.GOOS)
	}
	root := repoRoot(t)
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	run := buildCommand(t, stages[0])
	m := ldflagsRE.FindStringSubmatch(run)
	require.NotNil(t, m)
	ldflags := strings.NewReplacer("$VERSION", "deploytest-static", "$COMMIT", "0123abcd").Replace(m[1])

	out := filepath.Join(t.TempDir(), "skewguard")
	cmd := exec.Command(goTool(), "build", "-trimpath", "-ldflags", ldflags, "-o", out, "./cmd/skewguard")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	msg, err := cmd.CombinedOutput()
	require.NoError(t, err, string(msg))

	f, err := elf.Open(out)
	require.NoError(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "a dynamic loader is requested")
		assert.NotEqual(t, elf.PT_DYNAMIC, p.Type, "the binary is dynamically linked")
	}
	libs, err := f.ImportedLibraries()
	require.NoError(t, err)
	assert.Empty(t, libs, "DT_NEEDED libraries")
	assert.Nil(t, f.Section(".symtab"), "-s strips the symbol table")

	version, err := exec.Command(out, "version").CombinedOutput()
	require.NoError(t, err, string(version))
	assert.Contains(t, string(version), "deploytest-static", "the version is stamped through -X")
	assert.Contains(t, string(version), "commit 0123abcd", "the commit is stamped through -X")
}
