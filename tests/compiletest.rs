//! Compile-time checks: each misuse in `ui/<category>/` must fail with the message in its
//! `.stderr`; every case in `ui/pass/` must compile and run.
//!
//! Regenerate snapshots with `TRYBUILD=overwrite cargo test -p fanfare-tests --test compiletest`
//! and read the diff. They are made with the toolchain pinned in `rust-toolchain.toml`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/function/*.rs");
    t.compile_fail("ui/flow/*.rs");
    t.compile_fail("ui/triggers/*.rs");
    t.compile_fail("ui/union/*.rs");
    t.compile_fail("ui/cron/*.rs");
    t.compile_fail("ui/lifetime/*.rs");
    t.compile_fail("ui/event/*.rs");
    t.compile_fail("ui/send/*.rs");
    t.compile_fail("ui/step/*.rs");
}
