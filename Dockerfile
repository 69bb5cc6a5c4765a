# servebench as a SageMaker inference container (the contract of the Hugging
# Face LLM container: GET /ping, POST /invocations on port 8080, limits from
# the environment, the model unpacked under /opt/ml/model).
#
#   docker build -t servebench .
#   docker run --rm -p 8080:8080 -v "$PWD/models:/opt/ml/model:ro" servebench
#
# Not built in CI. See docs/sagemaker.md.

FROM rust:1.85-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY prices.toml prices.toml
RUN cargo build --release --locked -p servebench \
 && strip target/release/servebench

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /home/servebench --create-home servebench
COPY --from=build /src/target/release/servebench /usr/local/bin/servebench
USER servebench
ENV PORT=8080
EXPOSE 8080
# SageMaker runs `docker run IMAGE serve`; `serve` is accepted after these.
ENTRYPOINT ["servebench", "serve", "--host", "0.0.0.0"]
