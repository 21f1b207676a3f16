//! How a placement that found nothing reads to a client: the optimiser reports integers (a price
//! in micro-USD, a reliability in basis points); the client wrote a decimal price and a
//! reliability from 0 to 1, and reads them back the same way.

use iocloud_billing::{Currency, Money};

use crate::placement::{Infeasible, Relaxation};

/// The eased value as the request writes it: a price in USD, a reliability from 0 to 1,
/// anything else as the number.
pub fn eased_value(r: &Relaxation) -> String {
    match r.field {
        "max_price_per_gpu_hour" => Money::from_micros(r.value, Currency::Usd).to_decimal(),
        "min_reliability" => format!("{:.2}", r.value as f64 / 10_000.0),
        _ => r.value.to_string(),
    }
}

/// What the cluster's reason and the problem's detail say.
impl std::fmt::Display for Infeasible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} GPUs asked for, {} fit up to {}",
            self.requested_gpus, self.available_gpus, self.constraint
        )?;
        if let Some(n) = &self.nearest {
            write!(
                f,
                "; {} fit with {} {}",
                n.available_gpus,
                n.field,
                eased_value(n)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eased_values_read_as_the_request_wrote_them() {
        let eased = |field, value| Relaxation {
            field,
            value,
            available_gpus: 8,
        };
        assert_eq!(
            eased_value(&eased("max_price_per_gpu_hour", 2_500_000)),
            "2.50"
        );
        assert_eq!(eased_value(&eased("min_reliability", 9_500)), "0.95");
        assert_eq!(eased_value(&eased("max_rtt_ms", 40)), "40");
        let why = Infeasible {
            constraint: "max_price_per_gpu_hour",
            requested_gpus: 16,
            available_gpus: 4,
            nearest: Some(eased("max_price_per_gpu_hour", 2_500_000)),
        };
        assert_eq!(
            why.to_string(),
            "16 GPUs asked for, 4 fit up to max_price_per_gpu_hour; 8 fit with max_price_per_gpu_hour 2.50"
        );
    }
}
