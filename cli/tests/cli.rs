//! The `fanfare` binary against a real runtime serving the runs API: every command run as
//! a user runs it, its `--json` output parsed and checked, and the exit codes scripts rely
//! on.

use fanfare::{function, Ctx, Event, Runtime};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const KEY: &str = "adm-cli-test";

/// Whether the card processor works again: `cli-charge` fails until it is set.
static FIXED: AtomicBool = AtomicBool::new(false);

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cli/order")]
struct Order {
    order: u32,
}

#[function(id = "cli-charge", trigger = "cli/order", retries = 0)]
async fn charge(ctx: Ctx<Order>) -> fanfare::Result<u32> {
    if FIXED.load(Ordering::SeqCst) {
        Ok(ctx.event().order)
    } else {
        Err(fanfare::Error::msg("the card was declined"))
    }
}

#[function(id = "cli-receipt", trigger = "cli/order")]
async fn receipt(ctx: Ctx<Order>) -> fanfare::Result<String> {
    Ok(format!("receipt {}", ctx.event().order))
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "cli/nap")]
struct Nap {
    n: u32,
}

#[function(id = "cli-napper", trigger = "cli/nap")]
async fn napper(ctx: Ctx<Nap>) -> fanfare::Result<()> {
    ctx.sleep("nap", Duration::from_secs(3600)).await?;
    Ok(())
}

/// What one run of the binary gave.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Stdout as JSON, after checking the command succeeded.
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "the command failed: {self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    fn text(&self) -> &str {
        assert_eq!(self.code, 0, "the command failed: {self:?}");
        &self.stdout
    }
}

/// Runs `fanfare` with `args` against `url`, with `key` as `FANFARE_ADMIN_KEY` if any.
async fn fanfare(url: &str, key: Option<&str>, args: &[&str]) -> Ran {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fanfare"));
    cmd.args(args)
        .env("FANFARE_URL", url)
        .env_remove("FANFARE_ADMIN_KEY");
    if let Some(key) = key {
        cmd.env("FANFARE_ADMIN_KEY", key);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("the command's thread")
        .expect("the fanfare binary runs");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The CLI pointed at one runtime with the right key.
struct Cli {
    url: String,
}

impl Cli {
    async fn run(&self, args: &[&str]) -> Ran {
        fanfare(&self.url, Some(KEY), args).await
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        self.run(&args).await.json()
    }

    /// Sends an event; its id.
    async fn send(&self, name: &str, data: &str) -> String {
        let sent = self.json(&["send", name, data]).await;
        let ids = sent["ids"].as_array().expect("ids");
        assert_eq!(ids.len(), 1, "{sent}");
        ids[0].as_str().expect("an id is a string").to_string()
    }

    /// The run of `function` for event `event`, once `done` holds for it.
    async fn run_of(&self, event: &str, function: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.until(|| async {
            let e = self.json(&["event", event]).await;
            e["runs"]
                .as_array()
                .expect("runs")
                .iter()
                .find(|r| r["function_id"] == function && done(r))
                .cloned()
        })
        .await
    }

    /// Run `id`, once its status is `status`.
    async fn run_with_status(&self, id: &str, status: &str) -> Value {
        self.until(|| async {
            let r = self.json(&["run", id]).await;
            (r["status"] == status).then_some(r)
        })
        .await
    }

    async fn until<F, Fut>(&self, mut f: F) -> Value
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<Value>>,
    {
        let start = Instant::now();
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn status(run: &Value) -> &str {
    run["status"].as_str().unwrap_or_default()
}

fn finished(run: &Value) -> bool {
    matches!(
        status(run),
        "completed" | "failed" | "cancelled" | "skipped"
    )
}

fn ids_of(runs: &Value) -> Vec<String> {
    runs.as_array()
        .expect("a list of runs")
        .iter()
        .map(|r| r["run_id"].as_str().expect("run_id").to_string())
        .collect()
}

async fn start() -> (Runtime, Cli) {
    let rt = Runtime::builder()
        .http("127.0.0.1:0")
        .admin_key(KEY)
        .start()
        .await
        .expect("the runtime starts");
    let addr = rt.http_addr().expect("the runtime listens");
    let url = format!("http://{addr}");
    (rt, Cli { url })
}

/// Every command, in the order an operator would use them on a failing function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_against_a_runtime() {
    let (rt, cli) = start().await;

    // send: one event, two runs.
    let event = cli.send("cli/order", r#"{"order": 1}"#).await;
    let failed = cli.run_of(&event, "cli-charge", finished).await;
    assert_eq!(status(&failed), "failed", "{failed}");
    let done = cli.run_of(&event, "cli-receipt", finished).await;
    assert_eq!(status(&done), "completed", "{done}");
    assert_eq!(done["output"], "receipt 1");
    let failed_id = failed["run_id"].as_str().unwrap().to_string();

    // event: the event and its fan-out.
    let e = cli.json(&["event", &event]).await;
    assert_eq!(e["event"]["id"], event.as_str());
    assert_eq!(e["event"]["name"], "cli/order");
    assert_eq!(e["event"]["data"]["order"], 1);
    assert_eq!(e["runs"].as_array().unwrap().len(), 2, "{e}");
    let text = cli.run(&["event", &event]).await;
    assert!(text.text().contains("cli/order"), "{text:?}");

    // runs --status failed: the failed run, and only failed runs.
    let runs = cli
        .json(&[
            "runs",
            "--status",
            "failed",
            "--function",
            "cli-charge",
            "--since",
            "1h",
        ])
        .await;
    assert!(ids_of(&runs["runs"]).contains(&failed_id), "{runs}");
    assert!(runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["status"] == "failed"));
    let by_event = cli.json(&["runs", "--event", &event, "--all"]).await;
    assert_eq!(ids_of(&by_event["runs"]).len(), 2, "{by_event}");
    assert_eq!(by_event["next"], Value::Null);
    let table = cli.run(&["runs", "--status", "failed"]).await;
    assert!(table.text().starts_with("RUN ID"), "{table:?}");
    assert!(table.text().contains(&failed_id), "{table:?}");

    // run ID: its error, in JSON and for people.
    let run = cli.json(&["run", &failed_id]).await;
    assert_eq!(run["function_id"], "cli-charge");
    assert_eq!(run["event_id"], event.as_str());
    assert_eq!(run["attempts"], 1);
    assert!(
        run["last_error"]
            .as_str()
            .unwrap()
            .contains("the card was declined"),
        "{run}"
    );
    let text = cli.run(&["run", &failed_id]).await;
    assert!(text.text().contains("the card was declined"), "{text:?}");
    assert!(
        text.text().contains("failed attempts\n  #  STARTED (UTC)"),
        "{text:?}"
    );
    assert!(text.text().contains("  1  "), "{text:?}");

    // replay ID: a new run of the same event, which now completes.
    FIXED.store(true, Ordering::SeqCst);
    let replayed = cli.json(&["replay", &failed_id]).await;
    assert_eq!(replayed["replay_of"], failed_id.as_str());
    let new_id = replayed["run_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, failed_id);
    let new_run = cli.run_with_status(&new_id, "completed").await;
    assert_eq!(new_run["replay_of"], failed_id.as_str());
    assert_eq!(new_run["event_id"], event.as_str());
    assert_eq!(new_run["output"], 1);

    // Bulk replay: three more failures, replayed by a filter, all complete.
    FIXED.store(false, Ordering::SeqCst);
    for order in 2..5 {
        let e = cli
            .send("cli/order", &format!(r#"{{"order": {order}}}"#))
            .await;
        cli.run_of(&e, "cli-charge", |r| status(r) == "failed")
            .await;
    }
    let all_failed = cli
        .json(&[
            "runs",
            "--status",
            "failed",
            "--function",
            "cli-charge",
            "--all",
        ])
        .await;
    let all_failed = ids_of(&all_failed["runs"]);
    assert_eq!(all_failed.len(), 4, "{all_failed:?}");
    FIXED.store(true, Ordering::SeqCst);
    let bulk = cli
        .json(&[
            "replay",
            "--status",
            "failed",
            "--function",
            "cli-charge",
            "--since",
            "1h",
        ])
        .await;
    assert_eq!(bulk["matched"], 4, "{bulk}");
    assert_eq!(bulk["passed_over"], 0, "{bulk}");
    let pairs = bulk["replayed"].as_array().expect("replayed");
    assert_eq!(pairs.len(), 4, "{bulk}");
    let mut originals: Vec<String> = pairs
        .iter()
        .map(|p| p["replay_of"].as_str().unwrap().to_string())
        .collect();
    originals.sort();
    let mut expected = all_failed.clone();
    expected.sort();
    assert_eq!(originals, expected);
    for p in pairs {
        cli.run_with_status(p["run_id"].as_str().unwrap(), "completed")
            .await;
    }

    // cancel ID of a sleeping run; a sleeping run cannot be replayed (409 → 4).
    let nap = cli.send("cli/nap", r#"{"n": 1}"#).await;
    let sleeping = cli
        .run_of(&nap, "cli-napper", |r| status(r) == "sleeping")
        .await;
    let sleeping_id = sleeping["run_id"].as_str().unwrap().to_string();
    let refused = cli.run(&["replay", &sleeping_id]).await;
    assert_eq!(refused.code, 4, "{refused:?}");
    assert!(refused.stderr.contains("cannot be replayed"), "{refused:?}");
    let cancelled = cli.json(&["cancel", &sleeping_id]).await;
    assert_eq!(cancelled["run_id"], sleeping_id.as_str());
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(status(&cli.json(&["run", &sleeping_id]).await), "cancelled");

    // Bulk cancel: two sleeping runs.
    let mut naps = Vec::new();
    for n in 2..4 {
        let e = cli.send("cli/nap", &format!(r#"{{"n": {n}}}"#)).await;
        let r = cli
            .run_of(&e, "cli-napper", |r| status(r) == "sleeping")
            .await;
        naps.push(r["run_id"].as_str().unwrap().to_string());
    }
    let bulk = cli
        .json(&["cancel", "--status", "sleeping", "--function", "cli-napper"])
        .await;
    assert_eq!(bulk["matched"], 2, "{bulk}");
    let mut cancelled: Vec<String> = bulk["cancelled"]
        .as_array()
        .expect("cancelled")
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect();
    cancelled.sort();
    naps.sort();
    assert_eq!(cancelled, naps);
    let none_left = cli
        .run(&["cancel", "--status", "sleeping", "--function", "cli-napper"])
        .await;
    assert_eq!(none_left.text(), "cancelled 0 of 0 matching run(s)\n");

    // functions: counts by status, once every run has settled (the receipts were not
    // waited for).
    let functions = cli
        .until(|| async {
            let f = cli.json(&["functions"]).await;
            let settled = f["functions"]
                .as_array()
                .expect("functions")
                .iter()
                .all(|f| {
                    let c = &f["counts"];
                    ["queued", "running"].iter().all(|s| c[*s] == 0)
                });
            settled.then_some(f)
        })
        .await;
    let of = |id: &str| {
        functions["functions"]
            .as_array()
            .expect("functions")
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no function {id} in {functions}"))
            .clone()
    };
    let charge = of("cli-charge");
    assert_eq!(charge["trigger"], "cli/order");
    assert_eq!(charge["cron"], Value::Null);
    assert_eq!(charge["counts"]["failed"], 4, "{charge}");
    assert_eq!(charge["counts"]["completed"], 5, "{charge}");
    assert_eq!(of("cli-receipt")["counts"]["completed"], 4);
    let napper = of("cli-napper");
    assert_eq!(napper["counts"]["cancelled"], 3, "{napper}");
    assert_eq!(napper["counts"]["sleeping"], 0, "{napper}");
    let table = cli.run(&["functions"]).await;
    assert!(table.text().contains("cli-napper"), "{table:?}");

    rt.shutdown().await.unwrap();
}

/// The exit codes scripts rely on, and messages that say what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_have_their_exit_codes() {
    let (rt, cli) = start().await;

    // A wrong key, and no key: 5.
    let wrong = fanfare(&cli.url, Some("not-the-key"), &["functions"]).await;
    assert_eq!(wrong.code, 5, "{wrong:?}");
    assert!(wrong.stderr.contains("FANFARE_ADMIN_KEY"), "{wrong:?}");
    let none = fanfare(&cli.url, None, &["runs"]).await;
    assert_eq!(none.code, 5, "{none:?}");
    assert!(none.stdout.is_empty());

    // An unknown run or event: 3.
    let unknown = "01936f4e-0000-7000-8000-000000000000";
    let missing = cli.run(&["run", unknown]).await;
    assert_eq!(missing.code, 3, "{missing:?}");
    assert!(missing.stdout.is_empty());
    assert_eq!(cli.run(&["event", unknown]).await.code, 3);
    assert_eq!(cli.run(&["replay", unknown]).await.code, 3);
    assert_eq!(cli.run(&["cancel", unknown]).await.code, 3);

    rt.shutdown().await.unwrap();
}

/// Usage errors (2) and an unreachable runtime (6) need no runtime at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_connection_errors() {
    // Nothing listens on a port just freed.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", free.local_addr().unwrap());
    drop(free);

    // Usage errors: 2, before any request.
    let since = fanfare(&url, Some(KEY), &["runs", "--since", "yesterday"]).await;
    assert_eq!(since.code, 2, "{since:?}");
    assert!(since.stderr.contains("--since"), "{since:?}");
    assert_eq!(fanfare(&url, Some(KEY), &["replay"]).await.code, 2);
    assert_eq!(
        fanfare(&url, Some(KEY), &["send", "cli/order", "{not json"])
            .await
            .code,
        2
    );
    assert_eq!(
        fanfare(&url, Some(KEY), &["runs", "--limit", "0"])
            .await
            .code,
        2
    );
    assert_eq!(
        fanfare("https://127.0.0.1:1", Some(KEY), &["runs"])
            .await
            .code,
        2
    );

    // Nothing listening: 6, naming the address and the variable to set.
    let unreachable = fanfare(&url, Some(KEY), &["functions"]).await;
    assert_eq!(unreachable.code, 6, "{unreachable:?}");
    assert!(unreachable.stderr.contains(&url), "{unreachable:?}");
    assert!(
        unreachable.stderr.contains("FANFARE_URL"),
        "{unreachable:?}"
    );
}
