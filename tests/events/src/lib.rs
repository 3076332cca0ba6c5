//! The events two test services share, from a crate of their own.

use serde::{Deserialize, Serialize};

/// An order was placed in the shop.
#[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "shop/order")]
pub struct ShopOrder {
    pub order_id: u64,
}

/// A customer's contact changed (flow-control tests: one run per customer at a time).
#[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "crm/contact")]
pub struct CrmContact {
    pub customer: u64,
}

/// An email to send (flow-control tests: throttled).
#[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "crm/email")]
pub struct CrmEmail {
    pub n: u64,
}

/// A login (flow-control tests: rate limited per user).
#[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "crm/login")]
pub struct CrmLogin {
    pub user: u64,
}

/// A signup (trigger tests: a filter and an idempotency key per user).
#[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "crm/signup")]
pub struct CrmSignup {
    pub user: u64,
}

/// A document was edited (flow-control tests: debounced per document).
#[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "crm/note.edited")]
pub struct CrmNoteEdited {
    pub note: u64,
    pub n: u64,
}

/// A line to ingest (flow-control tests: batched).
#[derive(fanfare::Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "crm/line")]
pub struct CrmLine {
    pub n: u64,
}
