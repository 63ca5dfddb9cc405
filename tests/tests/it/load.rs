//! Limits under load, over HTTP through the local front: 64 concurrent clients on one
//! organization are admitted exactly up to its limit, and a flooding organization does not
//! starve the others.

use std::net::SocketAddr;

use integration_tests::{TestApp, http, token};
use serde_json::json;
use uuid::Uuid;

/// `deny` makes the limit strict: had DynamoDB failed to answer, the request would be refused
/// (a 503, which fails these tests) rather than admitted. The budget is generous because 80
/// clients queue on one emulator; `faults` covers DynamoDB going away.
const PATIENT_LIMITER: (&str, &str) = ("RATE_LIMIT_TIMEOUT_MS", "20000");
const STRICT_LIMITER: (&str, &str) = ("RATE_LIMIT_ON_STORE_ERROR", "deny");

/// One command execution over HTTP; the status and the id it carried.
async fn post(addr: SocketAddr, bearer: &str) -> (u16, Uuid) {
    let id = Uuid::new_v4();
    let body = json!({"id": id, "command_name": "load", "execution_time_ms": 1, "status": "success"});
    let (status, _, answer) = http(
        addr,
        "POST",
        "/api/v1/metrics/command-execution",
        Some(bearer),
        "application/json",
        &body.to_string(),
    )
    .await;
    assert!(status == 201 || status == 429, "{status}: {answer}");
    (status, id)
}

/// `clients` concurrent clients, each sending `each` requests for `org`; the admitted ids.
fn flood(addr: SocketAddr, org: &str, clients: usize, each: usize) -> tokio::task::JoinHandle<Vec<Uuid>> {
    let bearer = token(org, "alice");
    tokio::spawn(async move {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let bearer = bearer.clone();
                tokio::spawn(async move {
                    let mut admitted = vec![];
                    for _ in 0..each {
                        if let (201, id) = post(addr, &bearer).await {
                            admitted.push(id);
                        }
                    }
                    admitted
                })
            })
            .collect();
        let mut admitted = vec![];
        for task in tasks {
            admitted.extend(task.await.unwrap());
        }
        admitted
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_clients_are_admitted_exactly_up_to_the_limit() {
    let given = TestApp::spawn_with(&[
        ("RATE_LIMIT_MAX_REQUESTS", "50"),
        ("RATE_LIMIT_WINDOW_MS", "86400000"),
        PATIENT_LIMITER,
        STRICT_LIMITER,
    ])
    .await;
    let addr = given.serve_http().await;
    let admitted = flood(addr, "acme", 64, 2).await.unwrap();
    assert_eq!(admitted.len(), 50, "128 requests, a limit of 50 in the window");
    assert_eq!(
        given.count("acme", "command_executions").await,
        50,
        "every admitted request stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_organization_does_not_starve_the_others() {
    let given = TestApp::spawn_with(&[
        ("RATE_LIMIT_MAX_REQUESTS", "20"),
        ("RATE_LIMIT_WINDOW_MS", "86400000"),
        PATIENT_LIMITER,
        STRICT_LIMITER,
    ])
    .await;
    let addr = given.serve_http().await;
    let noisy = flood(addr, "noisy", 32, 3);
    let quiet: Vec<_> = (0..8)
        .map(|n| (format!("quiet{n}"), flood(addr, &format!("quiet{n}"), 2, 5)))
        .collect();
    assert_eq!(noisy.await.unwrap().len(), 20, "the flood gets its own limit, no more");
    for (org, admitted) in quiet {
        assert_eq!(
            admitted.await.unwrap().len(),
            10,
            "{org}: every request under its limit admitted"
        );
        assert_eq!(given.count(&org, "command_executions").await, 10);
    }
}
