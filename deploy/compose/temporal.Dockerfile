# syntax=docker/dockerfile:1
# The Temporal dev server (the CLI's `server start-dev`, Web UI included) for docker-compose.yaml,
# built from the same CLI version the repository's own stack runs (hack/lib/common.sh), so a
# laptop try-out and the tests see the same server. Runs as the unprivileged nonroot user; /data
# is created owned by it so the named volume mounted there is writable.

FROM golang:1.26 AS build
ARG TEMPORAL_CLI_VERSION=1.5.1
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOBIN=/out/bin \
    go install -trimpath \
      -ldflags "-s -w -X github.com/temporalio/cli/temporalcli.Version=$TEMPORAL_CLI_VERSION" \
      github.com/temporalio/cli/cmd/temporal@v$TEMPORAL_CLI_VERSION \
    && mkdir -p /out/data

FROM gcr.io/distroless/static-debian13:nonroot
COPY --from=build /out/bin/temporal /usr/local/bin/temporal
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
# 7233: gRPC frontend; 8233: Web UI.
EXPOSE 7233 8233
ENTRYPOINT ["/usr/local/bin/temporal"]
