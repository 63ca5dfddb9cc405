//! Integration tests against the real local services; run them with `make test`.
//! One test binary (modules below) keeps linking time down.

mod alerts;
mod allocator;
mod auth;
mod batch;
mod command_execution;
mod contract;
mod dashboard;
mod database_outage;
mod docs;
mod dynamo_signing;
mod faults;
mod hooks;
mod http_front;
mod keys;
mod lifecycle;
mod live;
mod load;
mod migrations;
mod openapi;
mod otlp;
mod rate_limit;
mod routes;
mod secrets;
mod sessions;
mod settings;
mod summary;
mod team;
mod template;
mod tenancy;
mod trust;
