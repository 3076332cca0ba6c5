//! The dashboard (`GET /`, feature `http`) in a real browser: headless Chromium driven
//! through chromedriver (WebDriver). A failed run's error shows on the page as text,
//! even with `<script>` in it; replay is a button, and the replayed run turns
//! `completed` on the page without a reload (the live update). Through a plain HTTP
//! client: no page without logging in, and no change without the session's CSRF token
//! or from another site.
//!
//! Without `chromedriver` and Chromium the test prints SKIPPED and passes, unless
//! `FANFARE_REQUIRE_BROWSER=1` (as `.ci/run` sets): then it fails. Screenshots land in
//! `target/dashboard-screenshots/`.

mod common;

use common::http::request;
use common::LIMIT;
use fanfare::{function, Ctx, Error, Event, EventId, RunId, RunStatus, Runtime};
use fantoccini::{Client, Locator};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::time::timeout;

const ADMIN_KEY: &str = "adm-test-7c1e9d";

/// What the failing run's error carries: markup that must show as text.
const HOSTILE: &str = "<script>window.__xss = 1</script><b>bold</b>";

/// Whether the card service is fixed: until then, every charge fails.
static FIXED: AtomicBool = AtomicBool::new(false);

/// Holds a fixed charge until the test lets it finish (after the page is shown).
static GATE: Semaphore = Semaphore::const_new(0);

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "dash/charge")]
struct Charge {
    note: String,
}

#[function(trigger = "dash/charge", retries = 0)]
async fn dash_charge(ctx: Ctx<Charge>) -> fanfare::Result<String> {
    if !FIXED.load(Ordering::SeqCst) {
        return Err(Error::msg(format!("card declined: {}", ctx.event().note)));
    }
    let _permit = GATE
        .acquire()
        .await
        .map_err(|_| Error::msg("gate closed"))?;
    Ok("charged".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_failure_and_its_replay_completes_live() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let rt = Runtime::builder()
        .http("127.0.0.1:0")
        .admin_key(ADMIN_KEY)
        .start()
        .await
        .unwrap();
    let addr = rt.http_addr().unwrap();
    let event = rt
        .send(Charge {
            note: HOSTILE.to_owned(),
        })
        .await
        .unwrap();
    let failed = timeout(LIMIT, rt.wait(event)).await.unwrap().unwrap()[0].clone();
    assert_eq!(failed.status, RunStatus::Failed);

    refused_without_a_session_or_a_token(addr, &rt, event, failed.run_id).await;

    let driver = browser.start().await;
    let c = &driver.client;
    let base = format!("http://{addr}");
    let shots = screenshots_dir();

    // Not logged in: the login page.
    c.goto(&format!("{base}/")).await.unwrap();
    wait_text(c, "h1", "Log in").await;
    assert!(c.current_url().await.unwrap().path().ends_with("/login"));
    save(c, &shots, "login.png").await;
    c.find(Locator::Css("#key"))
        .await
        .unwrap()
        .send_keys(ADMIN_KEY)
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(c, "h1", "Functions").await;
    let row = wait_text(c, "tbody", "dash_charge").await;
    assert!(row.contains("dash/charge"), "{row}");
    save(c, &shots, "functions.png").await;

    // The failed run in the runs table, its error as text.
    c.goto(&format!("{base}/runs?status=failed&function=dash_charge"))
        .await
        .unwrap();
    let note = wait_text(c, "#runs td.note", "card declined").await;
    assert!(note.contains(HOSTILE), "the error shows as text: {note:?}");
    save(c, &shots, "runs.png").await;

    // Its page: the error, as text; no script of the event ran.
    c.goto(&format!("{base}/runs/{}", failed.run_id))
        .await
        .unwrap();
    let error = wait_text(c, "#error", "card declined").await;
    assert_eq!(error, format!("card declined: {HOSTILE}"));
    assert_eq!(
        c.find_all(Locator::Css("#error script"))
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(c.find_all(Locator::Css("#error b")).await.unwrap().len(), 0);
    // Its one attempt in the history, with its error as text.
    let attempts = wait_text(c, "#attempts tbody", "card declined").await;
    assert!(attempts.starts_with('1'), "{attempts:?}");
    assert!(attempts.contains(HOSTILE), "{attempts:?}");
    let xss = c
        .execute("return typeof window.__xss;", vec![])
        .await
        .unwrap();
    assert_eq!(xss, "undefined", "a script from the event ran");
    save(c, &shots, "failed-run.png").await;

    // The fix is deployed: replay. The new run's page shows it live.
    FIXED.store(true, Ordering::SeqCst);
    c.find(Locator::Css("#replay"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let replayed = until("the replayed run's page", async || {
        let path = c.current_url().await.ok()?.path().to_owned();
        let id = path.strip_prefix("/runs/")?.parse::<RunId>().ok()?;
        (id != failed.run_id).then_some(id)
    })
    .await;
    assert_eq!(
        rt.run(replayed).await.unwrap().replay_of,
        Some(failed.run_id)
    );
    let shown = wait_text(c, "#status", "").await;
    assert_ne!(
        shown, "completed",
        "the run is held until the page is shown"
    );
    c.execute("window.__marker = 'same page';", vec![])
        .await
        .unwrap();
    GATE.add_permits(1);
    wait_text(c, "#status", "completed").await;
    let marker = c.execute("return window.__marker;", vec![]).await.unwrap();
    assert_eq!(marker, "same page", "the page was reloaded");
    wait_text(c, "#output", "charged").await;
    save(c, &shots, "replayed-run.png").await;

    // The event's fan-out lists both runs.
    c.goto(&format!("{base}/events/{event}")).await.unwrap();
    let runs = wait_text(c, "#runs tbody", "completed").await;
    assert!(runs.contains("failed"), "{runs}");
    // Its data, which holds `<script>`, as text.
    let data = wait_text(c, "#data", "note").await;
    assert!(data.contains(HOSTILE), "the data shows as text: {data:?}");
    assert_eq!(
        c.find_all(Locator::Css("#data script"))
            .await
            .unwrap()
            .len(),
        0
    );
    let xss = c
        .execute("return typeof window.__xss;", vec![])
        .await
        .unwrap();
    assert_eq!(xss, "undefined", "a script from the event's data ran");
    save(c, &shots, "event.png").await;

    driver.close().await;
    rt.shutdown().await.unwrap();
}

/// Through a plain HTTP client: no page without a session, no change without the
/// session's CSRF token, or from another site.
async fn refused_without_a_session_or_a_token(
    addr: SocketAddr,
    rt: &Runtime,
    event: EventId,
    run: RunId,
) {
    let page = request(addr, "GET", "/", &[], "").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), "/login");
    let page = request(addr, "GET", &format!("/runs/{run}"), &[], "").await;
    assert_eq!(page.status, 303, "a run's page needs a session too");

    let form = [("content-type", "application/x-www-form-urlencoded")];
    let wrong = request(addr, "POST", "/login", &form, "key=not-the-key").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_empty());
    let login = request(addr, "POST", "/login", &form, format!("key={ADMIN_KEY}")).await;
    assert_eq!(login.status, 303);
    let set_cookie = login.header("set-cookie");
    assert!(
        set_cookie.contains("HttpOnly")
            && set_cookie.contains("SameSite=Strict")
            && set_cookie.contains("Path=/"),
        "{set_cookie}"
    );
    assert!(!set_cookie.contains(ADMIN_KEY), "the key is not the cookie");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let home = request(addr, "GET", "/", &[("cookie", &cookie)], "").await;
    assert_eq!(home.status, 200);
    assert!(home
        .header("content-security-policy")
        .contains("script-src 'self'"));
    assert_eq!(home.header("x-content-type-options"), "nosniff");
    assert_eq!(home.header("x-frame-options"), "DENY");
    let csrf = home
        .text
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field on the page")
        .to_owned();

    let replay = format!("/runs/{run}/replay");
    let with = |extra: &'static [(&'static str, &'static str)]| {
        let mut h: Vec<(&str, &str)> = vec![form[0], ("cookie", cookie.as_str())];
        h.extend_from_slice(extra);
        h
    };
    for (body, extra, why) in [
        (String::new(), &[][..], "no token"),
        ("csrf=0000".to_owned(), &[][..], "a wrong token"),
        (
            format!("csrf={csrf}"),
            &[("sec-fetch-site", "cross-site")][..],
            "a cross-site request",
        ),
        (
            format!("csrf={csrf}"),
            &[("origin", "http://evil.example")][..],
            "another origin",
        ),
    ] {
        let answer = request(addr, "POST", &replay, &with(extra), body).await;
        assert_eq!(answer.status, 403, "{why}: {}", answer.text);
    }
    let no_session = request(addr, "POST", &replay, &form, format!("csrf={csrf}")).await;
    assert_eq!(no_session.status, 303, "no session: to the login page");
    assert_eq!(
        rt.runs(event).await.unwrap().len(),
        1,
        "a refused request replays nothing"
    );
}

/// chromedriver and the Chromium it drives, found on the `PATH`.
struct Browser {
    driver: PathBuf,
    chromium: Option<PathBuf>,
}

impl Browser {
    /// The browser, or `None` after printing SKIPPED; panics when it is missing and
    /// `FANFARE_REQUIRE_BROWSER=1`.
    fn find() -> Option<Browser> {
        let driver = which("chromedriver");
        let chromium = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find_map(which);
        match driver {
            Some(driver) if chromium.is_some() => Some(Browser { driver, chromium }),
            _ => {
                let message = "chromedriver and Chromium are needed for the dashboard test: \
                     install them (Debian: `apt-get install chromium chromium-driver`)";
                if std::env::var("FANFARE_REQUIRE_BROWSER").as_deref() == Ok("1") {
                    panic!("{message} (FANFARE_REQUIRE_BROWSER=1)");
                }
                println!("SKIPPED: {message}");
                None
            }
        }
    }

    /// chromedriver on a free port, and a headless session in it.
    async fn start(&self) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let process = Command::new(&self.driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let process = Kill(process);
        let mut options = serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--window-size=1280,860", "--disable-dev-shm-usage"]
        });
        if let Some(chromium) = &self.chromium {
            options["binary"] = chromium.to_string_lossy().into();
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let url = format!("http://127.0.0.1:{port}");
        let client = until("a chromedriver session", async || {
            fantoccini::ClientBuilder::new(
                hyper_util::client::legacy::connect::HttpConnector::new(),
            )
            .capabilities(caps.clone())
            .connect(&url)
            .await
            .ok()
        })
        .await;
        Driver {
            client,
            _process: process,
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// A browser session, and chromedriver, killed when dropped.
struct Driver {
    client: Client,
    _process: Kill,
}

impl Driver {
    async fn close(self) {
        let _ = self.client.close().await;
    }
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `check` until it gives a value, for at most `LIMIT`.
async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of the element `css` once it contains `text`.
async fn wait_text(c: &Client, css: &str, text: &str) -> String {
    until(&format!("{css:?} containing {text:?}"), async || {
        let element = c.find(Locator::Css(css)).await.ok()?;
        let shown = element.text().await.ok()?;
        shown.contains(text).then_some(shown)
    })
    .await
}

/// `target/dashboard-screenshots/`.
fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|target| target.join("dashboard-screenshots"))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn save(c: &Client, dir: &std::path::Path, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}
