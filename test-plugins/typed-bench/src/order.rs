//! The typed-call benchmark's types and its pure function, shared as source by the
//! `typed-bench` plugin and the benches (`#[path = ".../order.rs"] mod order;`), so the
//! plugin and the direct baseline run identical code: an [`Order`] (about 1.1 KB of JSON)
//! in, its [`Priced`] (about 1 KB) out. Money is in integer cents, so equality is exact
//! after any codec.

use serde::{Deserialize, Serialize};

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Address {
    pub(crate) street: String,
    pub(crate) city: String,
    pub(crate) postcode: String,
    pub(crate) country: String,
}

/// Who placed the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Customer {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) email: String,
    pub(crate) phone: String,
    pub(crate) address: Address,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Line {
    pub(crate) sku: String,
    pub(crate) name: String,
    pub(crate) quantity: u32,
    pub(crate) unit_price: u64,
}

/// The call's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Order {
    pub(crate) id: u64,
    pub(crate) customer: Customer,
    pub(crate) lines: Vec<Line>,
    pub(crate) tags: Vec<String>,
}

/// One priced line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PricedLine {
    pub(crate) sku: String,
    pub(crate) gross: u64,
    pub(crate) discount: u64,
    pub(crate) net: u64,
}

/// The call's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Priced {
    pub(crate) order_id: u64,
    pub(crate) customer: String,
    pub(crate) ship_to: String,
    pub(crate) lines: Vec<PricedLine>,
    pub(crate) subtotal: u64,
    pub(crate) discount: u64,
    pub(crate) tax: u64,
    pub(crate) total: u64,
    pub(crate) note: String,
}

/// Prices `order`: 10% off a line of 5 or more, 5% more off the rest for a `vip` tag, and
/// 20% tax (none outside the EU list below).
#[inline(never)]
pub(crate) fn price(order: &Order) -> Priced {
    let vip = order.tags.iter().any(|t| t == "vip");
    let lines: Vec<PricedLine> = order
        .lines
        .iter()
        .map(|l| {
            let gross = l.unit_price * u64::from(l.quantity);
            let bulk = if l.quantity >= 5 { gross / 10 } else { 0 };
            let discount = bulk + if vip { (gross - bulk) / 20 } else { 0 };
            PricedLine {
                sku: l.sku.clone(),
                gross,
                discount,
                net: gross - discount,
            }
        })
        .collect();
    let subtotal: u64 = lines.iter().map(|l| l.gross).sum();
    let discount: u64 = lines.iter().map(|l| l.discount).sum();
    let a = &order.customer.address;
    let taxed = ["FR", "DE", "NL", "IT", "ES"].contains(&a.country.as_str());
    let tax = if taxed { (subtotal - discount) / 5 } else { 0 };
    let items: u32 = order.lines.iter().map(|l| l.quantity).sum();
    Priced {
        order_id: order.id,
        customer: format!("{} <{}>", order.customer.name, order.customer.email),
        ship_to: format!("{}, {} {}, {}", a.street, a.postcode, a.city, a.country),
        lines,
        subtotal,
        discount,
        tax,
        total: subtotal - discount + tax,
        note: format!(
            "{items} items on {} lines for customer {}; tags: {}",
            order.lines.len(),
            order.customer.id,
            order.tags.join(", ")
        ),
    }
}

/// The benches' input: 12 lines and 4 tags, about 1.1 KB as JSON.
#[allow(dead_code)] // The benches call it; the plugin does not.
pub(crate) fn sample_order() -> Order {
    let names = [
        "Espresso beans",
        "Oat milk",
        "Paper filters",
        "Ceramic mug",
        "Burr grinder",
        "Tea sampler",
        "Milk jug",
        "Cleaning tabs",
        "Travel flask",
        "Cocoa powder",
        "Scale",
        "Gift card",
    ];
    Order {
        id: 20_261_204_001,
        customer: Customer {
            id: 48_213,
            name: "Jeanne Dupont-Martin".into(),
            email: "jeanne.dupont@example.org".into(),
            phone: "+33 1 23 45 67 89".into(),
            address: Address {
                street: "12 rue des Lilas, apt 4B".into(),
                city: "Lyon".into(),
                postcode: "69003".into(),
                country: "FR".into(),
            },
        },
        lines: names
            .iter()
            .enumerate()
            .map(|(i, name)| Line {
                sku: format!("SKU-{:05}", 10_000 + i * 37),
                name: (*name).into(),
                quantity: 1 + (i as u32 * 3) % 8,
                unit_price: 199 + (i as u64 * 731) % 4_000,
            })
            .collect(),
        tags: ["vip", "gift-wrap", "express", "newsletter"]
            .iter()
            .map(|t| (*t).to_string())
            .collect(),
    }
}
