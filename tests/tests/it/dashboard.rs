//! The dashboard in a real browser: Debian's headless Chromium, driven over WebDriver by Debian's
//! chromedriver (through `fantoccini`), against the local front with real PostgreSQL and moto.
//! Each state's screenshot is written to `target/dashboard-screenshots/` for people to look at.
//!
//! Without Chromium the tests fail under CI (`CI=true`); elsewhere they say why they did not run.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use integration_tests::{TestApp, admin_token, free_port, http, repo_root, token};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a page may take to reach a state (generous: the machine is shared).
const SETTLE: Duration = Duration::from_secs(20);
/// The bound: a metric posted over HTTP is in the live feed and the counts within 2 s.
const LIVE_DEADLINE: Duration = Duration::from_secs(2);

/// A chromedriver and the session it opened; both end when this is dropped.
struct Browser {
    client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    /// `None` (after saying why) when Chromium is not installed and this is not CI.
    async fn start() -> Option<Self> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            let why =
                "Chromium is not installed (Debian packages chromium and chromium-driver; `make test` installs them)";
            assert!(std::env::var("CI").is_err(), "{why}");
            eprintln!("dashboard browser test not run: {why}");
            return None;
        }
        let port = free_port();
        // Its own process group, so that Chromium goes with it even when a test panics.
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = std::env::temp_dir().join(format!("dashboard-chromium-{}", uuid::Uuid::new_v4().simple()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                // Without the network flags Chromium looks for Google's hosts and hangs or is
                // refused on a closed network (see the machine notes in docs/dashboard.md).
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.display())],
            }
        });
        let webdriver = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + SETTLE;
        let client = loop {
            let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            builder.capabilities(capabilities.as_object().unwrap().clone());
            match builder.connect(&webdriver).await {
                Ok(client) => break client,
                Err(err) if Instant::now() < deadline => {
                    let _ = err;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => panic!("no WebDriver session from chromedriver: {err}"),
            }
        };
        Some(Self {
            client,
            driver,
            profile,
        })
    }

    /// Ends the session (Chromium quits with it).
    async fn close(&self) {
        self.client.clone().close().await.expect("end the WebDriver session");
    }

    async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("open the page");
    }

    async fn script(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .expect("run a script in the page")
    }

    async fn state(&self) -> String {
        self.script("return document.body.dataset.state")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn text_of(&self, id: &str) -> String {
        let script = format!("return document.getElementById({id:?}).textContent");
        self.script(&script).await.as_str().unwrap_or_default().to_owned()
    }

    /// Waits until `check` holds, polling the page; panics with `what` after `within`.
    async fn wait_for<F, Fut>(&self, what: &str, within: Duration, check: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + within;
        while !check().await {
            if Instant::now() > deadline {
                let body = self.script("return document.body.innerText").await;
                panic!("{what} did not happen within {within:?}; the page shows: {body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_for_state(&self, wanted: &str) {
        self.wait_for(&format!("state {wanted}"), SETTLE, || async move {
            self.state().await == wanted
        })
        .await;
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let folder = repo_root().join("target/dashboard-screenshots");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn post_command(addr: SocketAddr, bearer: &str, name: &str, status: &str, ms: u32) {
    let body = json!({"command_name": name, "execution_time_ms": ms, "status": status}).to_string();
    let (code, _, answer) = http(
        addr,
        "POST",
        "/api/v1/metrics/command-execution",
        Some(bearer),
        "application/json",
        &body,
    )
    .await;
    assert_eq!(code, 201, "{answer}");
}

async fn post_interaction(addr: SocketAddr, bearer: &str, agent: &str) {
    let body = json!({"agent_name": agent, "interaction_type": "tool_call", "input_tokens": 120,
                      "output_tokens": 80, "processing_time_ms": 900, "success": true})
    .to_string();
    let (code, _, answer) = http(
        addr,
        "POST",
        "/api/v1/metrics/agent-interaction",
        Some(bearer),
        "application/json",
        &body,
    )
    .await;
    assert_eq!(code, 201, "{answer}");
}

/// Pastes `credential` into the sign-in form and submits it.
fn paste_script(credential: &str) -> String {
    format!(
        "document.getElementById('sign-in-token').value = {credential:?}; \
         document.querySelector('#sign-in button').click();"
    )
}

/// A new API key made by `admin`: its text and id.
async fn create_key(addr: SocketAddr, admin: &str, body: Value) -> (String, String) {
    let (code, _, answer) = http(
        addr,
        "POST",
        "/api/v1/keys",
        Some(admin),
        "application/json",
        &body.to_string(),
    )
    .await;
    assert_eq!(code, 201, "{answer}");
    let data = &answer["data"];
    (
        data["key"].as_str().unwrap().to_owned(),
        data["id"].as_str().unwrap().to_owned(),
    )
}

async fn start_session(addr: SocketAddr, bearer: &str) {
    let (code, _, answer) = http(
        addr,
        "POST",
        "/api/v1/metrics/session/start",
        Some(bearer),
        "application/json",
        "{}",
    )
    .await;
    assert_eq!(code, 201, "{answer}");
}

/// The headline figures as the summary API gives them for the page's default range (last 24 h,
/// per hour), formatted as the page formats them: commands, error rate, p95, agent
/// interactions, sessions started.
async fn expected_figures(addr: SocketAddr, bearer: &str) -> (String, String, String, String, String) {
    let (code, _, body) = http(
        addr,
        "GET",
        "/api/v1/metrics/summary?group_by=hour&p95=true&limit=1000",
        Some(bearer),
        "application/json",
        "",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let groups = body["data"]["groups"].as_array().unwrap().clone();
    let total = |pick: &dyn Fn(&Value) -> f64| groups.iter().map(pick).sum::<f64>();
    let commands = total(&|g| g["commands"]["count"].as_f64().unwrap_or(0.0));
    let errors = total(&|g| g["commands"]["error_count"].as_f64().unwrap_or(0.0));
    let interactions = total(&|g| g["agents"]["interactions"].as_f64().unwrap_or(0.0));
    let p95 = groups
        .iter()
        .filter_map(|g| g["commands"]["p95_execution_time_ms"].as_f64())
        .fold(f64::MIN, f64::max);
    let p95 = if p95 >= 1000.0 {
        format!("{:.2} s", p95 / 1000.0)
    } else {
        format!("{} ms", p95.round())
    };
    (
        format!("{commands}"),
        format!("{:.1} %", 100.0 * errors / commands),
        p95,
        format!("{interactions}"),
        format!("{}", body["data"]["sessions"]["started"].as_i64().unwrap()),
    )
}

#[tokio::test]
async fn the_dashboard_shows_the_summarys_figures_and_live_updates_of_its_organization_only() {
    let (_app, addr) = TestApp::spawn_live(&[]).await;
    let Some(browser) = Browser::start().await else { return };
    let lead = admin_token("acme", "lead");
    let (alice, bob) = (token("acme", "alice"), token("acme", "bob"));
    post_command(addr, &alice, "claude_code_generate", "success", 1250).await;
    post_command(addr, &alice, "claude_code_review", "error", 400).await;
    post_command(addr, &bob, "claude_code_generate", "success", 2300).await;
    post_interaction(addr, &bob, "coder").await;
    for bearer in [&alice, &alice, &bob] {
        start_session(addr, bearer).await;
    }
    // Another organization's developer, command and session, which must never appear or count.
    let mallory = token("umbrella", "mallory");
    post_command(addr, &mallory, "umbrella_secret_tool", "success", 10).await;
    start_session(addr, &mallory).await;

    browser.open(&format!("http://{addr}/dashboard#token={lead}")).await;
    browser.wait_for_state("data").await;
    // The fragment went to this tab's storage and out of the address bar.
    let url = browser.client.current_url().await.unwrap();
    assert_eq!((url.path(), url.fragment()), ("/dashboard", None));
    let stored = browser
        .script("return sessionStorage.getItem('metrics-dashboard-token')")
        .await;
    assert_eq!(stored.as_str(), Some(lead.as_str()));

    let (commands, error_rate, p95, interactions, sessions) = expected_figures(addr, &lead).await;
    assert_eq!((commands.as_str(), sessions.as_str()), ("3", "3"));
    assert_eq!(browser.text_of("fig-commands").await, commands);
    assert_eq!(browser.text_of("fig-error-rate").await, error_rate);
    assert_eq!(browser.text_of("fig-p95").await, p95);
    assert_eq!(browser.text_of("fig-interactions").await, interactions);
    assert_eq!(browser.text_of("fig-sessions").await, sessions);
    let users = browser.text_of("table-user").await;
    assert!(users.contains("alice") && users.contains("bob"), "{users}");
    assert!(browser.text_of("table-command").await.contains("claude_code_review"));
    assert!(browser.text_of("table-agent").await.contains("coder"));
    // Two charts drawn by uPlot.
    assert_eq!(
        browser
            .script("return document.querySelectorAll('.uplot canvas').length")
            .await,
        2
    );
    browser.screenshot("data-laptop").await;
    // Printed for docs/dashboard.md, never asserted (timings are measured, not tested).
    let timings = "return [performance.getEntriesByName('first-contentful-paint')[0].startTime, \
                   performance.getEntriesByName('figures-shown')[0].startTime]";
    eprintln!(
        "first paint, figures shown (ms after navigation): {}",
        browser.script(timings).await
    );

    let b = &browser;
    b.wait_for("the live connection", SETTLE, || async move {
        b.text_of("live-status").await == "connected"
    })
    .await;
    post_command(addr, &mallory, "umbrella_live_tool", "success", 10).await;
    post_command(addr, &alice, "live_probe_tool", "error", 321).await;
    let posted = Instant::now();
    b.wait_for(
        "the posted metric in the feed and the counts",
        LIVE_DEADLINE,
        || async move {
            b.text_of("live-feed").await.contains("live_probe_tool")
                && b.text_of("fig-commands").await == "4"
                && b.text_of("fig-error-rate").await == "50.0 %"
        },
    )
    .await;
    eprintln!("live update shown {:?} after the POST answered", posted.elapsed());
    browser.screenshot("live-update").await;

    let page = browser.script("return document.body.innerText").await;
    let page = page.as_str().unwrap();
    for foreign in ["umbrella", "mallory"] {
        assert!(
            !page.contains(foreign),
            "another organization's {foreign} shown: {page}"
        );
    }

    // On a phone's width the page fits: nothing wider than the window.
    browser.client.set_window_size(390, 844).await.unwrap();
    b.wait_for("the page to fit a phone", SETTLE, || async move {
        let widest = "return Math.max(...[...document.querySelectorAll('.uplot, .figure')].map(e => e.getBoundingClientRect().right)) <= document.documentElement.clientWidth";
        b.script(widest).await == true
    })
    .await;
    browser.screenshot("data-phone").await;

    // A member: the organization's totals, but only their own row by user.
    browser.client.set_window_size(1280, 900).await.unwrap();
    browser.open(&format!("http://{addr}/dashboard#token={alice}")).await;
    b.wait_for("the member's view", SETTLE, || async move {
        b.state().await == "data" && b.text_of("per-user-note").await.contains("yours only")
    })
    .await;
    assert_eq!(browser.text_of("fig-commands").await, "4");
    assert_eq!(
        browser.text_of("fig-sessions").await,
        expected_figures(addr, &alice).await.4,
        "the organization's sessions, as the member's summary gives them"
    );
    assert_eq!(browser.text_of("fig-sessions").await, "3");
    let users = browser.text_of("table-user").await;
    assert!(users.contains("alice") && !users.contains("bob"), "{users}");
    browser.screenshot("data-member").await;

    // Another organization's link opened in the same tab: nothing of the first one stays, and
    // the first one's socket moves nothing.
    b.wait_for("the member's live connection", SETTLE, || async move {
        b.text_of("live-status").await == "connected"
    })
    .await;
    post_command(addr, &alice, "member_live_tool", "success", 20).await;
    b.wait_for("the member's update in the feed", SETTLE, || async move {
        b.text_of("live-feed").await.contains("member_live_tool")
    })
    .await;
    browser.open(&format!("http://{addr}/dashboard#token={mallory}")).await;
    b.wait_for("the other organization's view, connected", SETTLE, || async move {
        b.state().await == "data"
            && b.text_of("who").await == "mallory · umbrella · member"
            && b.text_of("live-status").await == "connected"
    })
    .await;
    assert_eq!(
        browser.text_of("live-feed").await,
        "",
        "the first organization's feed stays"
    );
    let (commands, error_rate, p95, interactions, sessions) = expected_figures(addr, &mallory).await;
    assert_eq!((commands.as_str(), sessions.as_str()), ("2", "1"));
    let shown = [
        "fig-commands",
        "fig-error-rate",
        "fig-p95",
        "fig-interactions",
        "fig-sessions",
    ];
    let mut figures = Vec::new();
    for id in shown {
        figures.push(browser.text_of(id).await);
    }
    assert_eq!(figures, [commands, error_rate, p95, interactions, sessions]);
    post_command(addr, &alice, "acme_after_switch", "error", 30).await;
    post_command(addr, &mallory, "umbrella_after_switch", "success", 40).await;
    b.wait_for(
        "the other organization's update in the feed and count",
        SETTLE,
        || async move {
            b.text_of("live-feed").await.contains("umbrella_after_switch")
                && b.text_of("fig-commands").await == "3"
                && b.text_of("fig-error-rate").await == "0.0 %"
        },
    )
    .await;
    assert_eq!(expected_figures(addr, &mallory).await.0, "3");
    let page = browser.script("return document.body.innerText").await;
    let page = page.as_str().unwrap();
    for first in [
        "alice",
        "bob",
        "member_live_tool",
        "acme_after_switch",
        "live_probe_tool",
        "claude_code",
    ] {
        assert!(
            !page.contains(first),
            "the first organization's {first} still shown: {page}"
        );
    }
    browser.screenshot("switched-organization").await;
    browser.close().await;
}

#[tokio::test]
async fn the_dashboard_shows_signed_out_empty_error_and_loading_states() {
    // Containers that trust an API key they read for half a second (revocation is seen soon).
    let (_app, addr) = TestApp::spawn_live(&[("API_KEY_CACHE_MS", "500")]).await;
    let Some(browser) = Browser::start().await else { return };
    let page = format!("http://{addr}/dashboard");

    browser.open(&page).await;
    browser.wait_for_state("signed-out").await;
    browser.screenshot("signed-out").await;

    // A wrong token: refused by the API, back to signing in, with the reason, and forgotten.
    browser.open(&format!("{page}#token=not-a-token")).await;
    let b = &browser;
    b.wait_for("the refusal", SETTLE, || async move {
        b.text_of("sign-in-message").await.contains("refused")
    })
    .await;
    assert_eq!(browser.state().await, "signed-out");
    assert_eq!(browser.script("return sessionStorage.length").await, 0);
    browser.screenshot("signed-out-wrong-token").await;

    // Pasting a token of an organization with no metrics: the empty state.
    let quiet = token("quiet", "dana");
    browser.script(&paste_script(&quiet)).await;
    browser.wait_for_state("empty").await;
    assert_eq!(browser.text_of("who").await, "dana · quiet · member");
    browser.screenshot("empty").await;

    // A custom range that ends before it starts: the API's 400, naming the field, as the error.
    browser
        .script(
            "const preset = document.getElementById('range-preset'); preset.value = 'custom'; \
             preset.dispatchEvent(new Event('change')); \
             document.getElementById('range-since').value = '2026-11-02T10:00'; \
             document.getElementById('range-until').value = '2026-11-01T10:00'; \
             document.getElementById('range-apply').click();",
        )
        .await;
    browser.wait_for_state("error").await;
    assert!(
        browser
            .text_of("error-message")
            .await
            .contains("until: Must be after since")
    );
    browser.screenshot("error").await;

    // The loading state, shown for people to look at (it lasts only as long as a request).
    browser.script("document.body.dataset.state = 'loading'").await;
    browser.screenshot("loading").await;

    // An admin's API key pasted: the page says whose key it is (no answer names its organization).
    let owner = admin_token("quiet", "owner");
    let (key, id) = create_key(
        addr,
        &owner,
        json!({"user_id": "kim", "role": "admin", "name": "laptop"}),
    )
    .await;
    browser
        .script("document.getElementById('range-preset').value = '24h'; document.getElementById('sign-out').click()")
        .await;
    browser.wait_for_state("signed-out").await;
    browser.script(&paste_script(&key)).await;
    let who = format!("kim · admin · API key {}… (laptop)", &id[..8]);
    let b = &browser;
    b.wait_for("the key's holder named, connected", SETTLE, || async {
        b.text_of("who").await == who && b.text_of("live-status").await == "connected"
    })
    .await;
    browser.screenshot("api-key").await;

    // Revoked: once the socket closes (the server ends it at the latest at its expiry) the page
    // asks the API, is refused, signs out and forgets the key rather than retrying for ever.
    let (code, _, answer) = http(
        addr,
        "DELETE",
        &format!("/api/v1/keys/{id}"),
        Some(&owner),
        "application/json",
        "",
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    tokio::time::sleep(Duration::from_millis(600)).await; // the containers' key cache
    browser.script("view.socket.close()").await;
    b.wait_for("the revoked key's refusal", SETTLE, || async move {
        b.state().await == "signed-out" && b.text_of("sign-in-message").await.contains("refused")
    })
    .await;
    assert_eq!(browser.script("return sessionStorage.length").await, 0);
    assert_eq!(browser.text_of("who").await, "");

    browser.close().await;
}
