# syntax=docker/dockerfile:1
# The skewguard image: one static binary on distroless, running as an unprivileged user.
#   docker build --build-arg VERSION=$(git describe --tags --always) --build-arg COMMIT=$(git rev-parse HEAD) -t skewguard .
# The build stage runs on the builder's own platform and cross-compiles, so multi-platform builds
# (docker buildx build --platform linux/amd64,linux/arm64) need no emulation.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
# The commit, since .git stays out of the build context: --build-arg COMMIT=$(git rev-parse HEAD).
ARG COMMIT=
ARG TARGETOS=linux
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X github.com/skewguard/skewguard/internal/buildinfo.Version=$VERSION -X github.com/skewguard/skewguard/internal/buildinfo.Commit=$COMMIT" \
      -o /out/skewguard ./cmd/skewguard

# static: no libc, no shell, CA certificates and /etc/passwd only; :nonroot is uid 65532.
FROM gcr.io/distroless/static-debian13:nonroot
COPY --from=build /out/skewguard /usr/local/bin/skewguard
USER 65532:65532
# 8080: API, /healthz, /readyz (PLT_SKEW_LISTEN_ADDRESS); 9090: /metrics when PLT_SKEW_METRICS_ADDRESS=:9090.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/skewguard"]
CMD ["serve"]
