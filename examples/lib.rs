//! Runnable examples of fanfare: see the `[[example]]` targets
//! (`cargo run --example signup`).
//!
//! This library is the *shared event crate* of the two-service PostgreSQL example: the
//! event types that services exchange, and no functions.

/// Events of the shop, shared by the billing and shipping services.
pub mod shop {
    use serde::{Deserialize, Serialize};

    /// An order was placed.
    #[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
    #[event(name = "shop/order-placed")]
    pub struct OrderPlaced {
        pub order_id: u64,
        pub cents: u64,
    }
}
