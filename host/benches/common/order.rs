//! The dead letter both filter benchmarks use (`engine.rs`, `guests.rs`).

use chrono::{TimeZone, Utc};
use redrive::core::envelope::{Envelope, FailureContext, Origin};

/// A realistic dead letter: an order (exactly 1 KiB of JSON) whose consumer timed out upstream.
pub fn envelope() -> Envelope {
    let mut body = serde_json::json!({
        "order_id": "ord-2026-118734",
        "schema_version": 2,
        "created_at": "2026-11-20T14:03:27.512Z",
        "channel": "web",
        "customer": {"id": "cus-55120", "name": "Maria Keller", "tier": "gold"},
        "customer_email": "maria.keller@kellerhaus.ch",
        "currency": "CHF",
        "items": [
            {"sku": "TEA-GRN-250", "name": "Sencha green tea, 250 g", "quantity": 2, "unit_price": "14.90"},
            {"sku": "CUP-CER-WHT", "name": "Ceramic cup, white", "quantity": 4, "unit_price": "9.50"},
            {"sku": "KTL-STL-1L", "name": "Stainless kettle, 1 l", "quantity": 1, "unit_price": "49.00"}
        ],
        "totals": {"subtotal": "117.80", "shipping": "7.50", "tax": "9.65", "total": "134.95"},
        "shipping_address": {
            "street": "Bahnhofstrasse 42", "postcode": "8001", "city": "Zürich", "country": "CH"
        },
        "payment": {"method": "card", "brand": "visa", "last4": "4242", "authorized": true},
        "fulfilment": {"warehouse": "zrh-2", "priority": "standard", "gift_wrap": false},
        "note": ""
    });
    let len = serde_json::to_vec(&body).unwrap().len();
    assert!(len <= 1024, "the base body is {len} bytes, more than 1 KiB");
    body["note"] = serde_json::Value::String("x".repeat(1024 - len));
    let body = serde_json::to_vec(&body).unwrap();
    assert_eq!(body.len(), 1024);

    let at = |s| Some(Utc.timestamp_opt(s, 0).single().unwrap());
    Envelope {
        id: "ord-2026-118734".into(),
        body,
        attributes: vec![
            ("content-type".into(), "application/json".into()),
            ("x-origin-service".into(), "checkout".into()),
            ("x-correlation-id".into(), "6f1c2a9e-3b7d-4c55-9a0e-1d2f3b4c5d6e".into()),
        ],
        origin: Origin {
            system: "rabbitmq".into(),
            dlq: "orders.dlq".into(),
            original_queue: Some("orders".into()),
        },
        failure: FailureContext {
            reason: Some("rejected".into()),
            error_text: Some("upstream timeout after 30s".into()),
            error_class: Some("TimeoutError".into()),
            receive_count: Some(5),
            first_failed_at: at(1_795_615_407),
            last_failed_at: at(1_795_615_527),
        },
        replay_count: 0,
        ..Envelope::default()
    }
}
