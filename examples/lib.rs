//! Runnable examples of fanfare: see the `[[example]]` targets (`cargo run --example signup`).
