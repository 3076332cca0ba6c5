//! The events two test services share, from a crate of their own.

use serde::{Deserialize, Serialize};

/// An order was placed in the shop.
#[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "shop/order")]
pub struct ShopOrder {
    pub order_id: u64,
}
