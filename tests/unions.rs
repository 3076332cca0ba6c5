//! Event unions: an enum of events, sent under its variant's name; a function triggered
//! by several of its names takes the union, and the variants' own functions run too.
//! Conformance: every test runs against every store.

mod common;

use common::{hit, hits, Store, LIMIT};
use fanfare::{function, Ctx, Event, RunStatus};
use serde::{Deserialize, Serialize};
use tokio::time::timeout;

conformance!(each_variant_runs_the_union_function_and_its_own_functions);

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "union/signup")]
struct Signup {
    tag: String,
    user: u64,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "union/invited")]
struct Invited {
    tag: String,
    by: u64,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
enum UserChanged {
    #[event(name = "union/signup")]
    Signup(Signup),
    #[event(name = "union/invited")]
    Invited(Invited),
}

#[function(
    trigger = ["union/signup", "union/invited"],
    filter = |e| !matches!(e, UserChanged::Signup(s) if s.user == 0),
)]
async fn add_to_crm(ctx: Ctx<UserChanged>) -> fanfare::Result<()> {
    match ctx.event() {
        UserChanged::Signup(s) => hit(format!("{} crm signup {}", s.tag, s.user)),
        UserChanged::Invited(i) => hit(format!("{} crm invited {}", i.tag, i.by)),
    };
    Ok(())
}

#[function(trigger = "union/signup")]
async fn welcome(ctx: Ctx<Signup>) -> fanfare::Result<()> {
    hit(format!("{} welcome {}", ctx.event().tag, ctx.event().user));
    Ok(())
}

async fn each_variant_runs_the_union_function_and_its_own_functions(store: Store) {
    let rt = store.builder().start().await.unwrap();
    let tag = format!("union {}", store.name());
    let signup = |user| Signup {
        tag: tag.clone(),
        user,
    };
    let ids = [
        // A variant's own type, the union's variants, and JSON from outside Rust.
        rt.send(signup(1)).await.unwrap(),
        rt.send(UserChanged::Signup(signup(2))).await.unwrap(),
        rt.send(UserChanged::Invited(Invited {
            tag: tag.clone(),
            by: 3,
        }))
        .await
        .unwrap(),
        rt.send_json(
            "union/invited",
            serde_json::json!({ "tag": tag.clone(), "by": 4 }),
        )
        .await
        .unwrap(),
        rt.send(signup(0)).await.unwrap(),
    ];
    let mut all = Vec::new();
    for id in ids {
        let runs = timeout(LIMIT, rt.wait(id)).await.unwrap().unwrap();
        all.push(runs);
    }
    let functions = |i: usize| {
        let mut f: Vec<_> = all[i].iter().map(|r| r.function_id.clone()).collect();
        f.sort();
        f
    };
    assert_eq!(functions(0), ["add_to_crm", "welcome"]);
    assert_eq!(functions(1), ["add_to_crm", "welcome"]);
    assert_eq!(functions(2), ["add_to_crm"]);
    assert_eq!(functions(3), ["add_to_crm"]);
    for user in [1, 2] {
        assert_eq!(hits(format!("{tag} crm signup {user}")), 1);
        assert_eq!(hits(format!("{tag} welcome {user}")), 1);
    }
    for by in [3, 4] {
        assert_eq!(hits(format!("{tag} crm invited {by}")), 1);
    }
    // The union function's filter sees the variant: user 0 is a test account.
    let test_account = &all[4];
    let crm = test_account
        .iter()
        .find(|r| r.function_id == "add_to_crm")
        .unwrap();
    assert_eq!(crm.status, RunStatus::Skipped);
    assert_eq!(hits(format!("{tag} welcome 0")), 1);
    rt.shutdown().await.unwrap();
}
