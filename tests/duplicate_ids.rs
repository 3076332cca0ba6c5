//! Two functions with one id: the runtime refuses to start and names both places.
//! Its own test binary, because every runtime of a binary sees every function in it.

use fanfare::{function, Ctx, ErrorKind, Event, Runtime};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "test/dup")]
struct Dup;

#[function(id = "audit", trigger = "test/dup")]
async fn audit_one(_: Ctx<Dup>) -> fanfare::Result<()> {
    Ok(())
}

mod elsewhere {
    use super::*;

    #[function(id = "audit", trigger = "test/dup")]
    async fn audit_two(_: Ctx<Dup>) -> fanfare::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn duplicate_function_ids_are_refused_at_start_naming_both_places() {
    let err = Runtime::builder().start().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DuplicateFunction);
    let msg = err.to_string();
    assert!(msg.contains("function id `audit` is used twice"), "{msg}");
    assert!(
        msg.contains("duplicate_ids::audit_one` at tests/duplicate_ids.rs:12:10"),
        "{msg}"
    );
    assert!(
        msg.contains("duplicate_ids::elsewhere::audit_two` at tests/duplicate_ids.rs:20:14"),
        "{msg}"
    );
    assert!(msg.contains("help: give one of them another id"), "{msg}");
}
