# Two commands on a fresh machine: `make demo` and `make test`. Everything they need
# (PostgreSQL, Redis, moto) is installed and started by scripts/services.sh.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help demo stop test lint check check-terraform check-monitoring bench services-up services-down build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

demo: ## the main job end to end: services, both servers, 3 tenants by webhook, a fleet migration
	@scripts/demo.sh run

stop: ## stop what `make demo` started (servers and services)
	@scripts/demo.sh stop

test: ## the whole test suite against real PostgreSQL, Redis and moto
	@scripts/test.sh

lint: ## formatting and clippy with the workspace lints, warnings as errors
	@scripts/build-deps.sh
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

check-monitoring: ## Prometheus alert rules (promtool check + unit tests), the Grafana dashboard against Grafana's schema, every metric named
	@scripts/check-monitoring.sh

check-terraform: ## terraform/ and Dockerfile: .tf files parse, env names match --help, checkov
	@scripts/check-terraform.sh

check: lint check-terraform test ## what CI runs

bench: ## run the benchmarks (release build) against the services; prints rows for bench/RESULTS.md
	@scripts/bench.sh

build: ## build both binaries (debug)
	@scripts/build-deps.sh
	cargo build --locked --bins

services-up: ## start PostgreSQL, Redis and moto; print their settings
	@scripts/services.sh up

services-down: ## stop them
	@scripts/services.sh down
