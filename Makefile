# VeloFlux developer tasks. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
MANIFESTS ?= examples/quickstart

.PHONY: help build test lint fmt crds crds-check openapi run dev bench e2e deploy ci

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

build: ## Build every crate (debug)
	$(CARGO) build --workspace --all-targets

test: ## Run the whole test suite (unit, property, integration) and print the totals
	@set -o pipefail; $(CARGO) test --workspace --all-targets --no-fail-fast 2>&1 \
	  | awk '{ print } /^test result:/ { p += $$4; f += $$6 } END { printf "\n%d passed, %d failed\n", p, f }'

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

crds: ## Regenerate manifests/crds/ from the Rust types
	$(CARGO) run -q -p veloflux-crds --bin crdgen -- manifests/crds

crds-check: ## Fail when manifests/crds/ differs from what the types generate
	$(CARGO) run -q -p veloflux-crds --bin crdgen -- --check manifests/crds

openapi: ## Regenerate api/openapi.json and the endpoint table of docs/API.md from the endpoint table
	VELOFLUX_BLESS=1 $(CARGO) test -q -p veloflux-api --test openapi

run: ## Run the standalone proxy on the quickstart manifests
	$(CARGO) run -q -p veloflux-proxy -- --manifests $(MANIFESTS) --demo-backends

dev: ## Run the whole platform locally: redis-server, the proxy on a folder, the API writing into it
	CARGO=$(CARGO) bash scripts/dev.sh

bench: ## Run the benchmarks (nginx, haproxy, wrk, redis-server needed; see docs/BENCHMARKS.md)
	bash bench/proxy-compare.sh 5 10
	$(CARGO) bench -p veloflux-proxy --bench scale -- 10000 1
	$(CARGO) bench -p veloflux-proxy --bench scale -- 10000 10
	$(CARGO) bench -p veloflux-proxy --bench fleet -- 10000 1000
	$(CARGO) bench -p veloflux-proxy --bench ratelimit -- 5 10
	bash bench/api-compare.sh 3 10
	$(CARGO) bench -p veloflux-api --bench auth

e2e: ## Run the end-to-end suite against the cluster in KUBECONFIG (skips without one)
	bash e2e/run.sh

deploy: ## Install the CRDs and the operator into the current kube context
	kubectl apply --server-side -f manifests/crds/
	kubectl apply -f manifests/operator/
	kubectl apply -f manifests/api/

ci: ## What CI runs: lint, CRD drift check, tests
	bash .ci/run
