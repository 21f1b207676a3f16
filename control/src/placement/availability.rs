//! What can be rented now, summed per GPU model and region from the inventory index: the
//! offers a customer browses before asking for a quote. Read from the buckets, which hold only
//! devices with a free GPU, so the sum costs one pass over the free part of the fleet.

use std::collections::HashSet;

use super::Inventory;

/// Free GPUs of one model in one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Availability {
    pub model: String,
    pub region: String,
    /// Devices with at least one free GPU.
    pub devices: u32,
    /// Distinct provider organisations among them.
    pub providers: u32,
    pub gpus_free: u64,
    /// The most free GPUs on one device: the largest node that needs no second machine.
    pub most_on_one_device: u32,
    /// Micro-USD per GPU-hour, the cheapest and the dearest device.
    pub min_price: i64,
    pub max_price: i64,
    /// The middle device's reliability, basis points.
    pub median_reliability_bps: u32,
}

impl Inventory {
    /// Every model and region with a free GPU, in catalog order (model, then region).
    pub fn availability(&self) -> Vec<Availability> {
        let regions = self.regions.len();
        let mut out = Vec::new();
        for (b, bucket) in self.buckets.iter().enumerate() {
            if bucket.is_empty() {
                continue;
            }
            let slots: Vec<_> = bucket
                .iter()
                .map(|e| &self.slots[e.slot as usize])
                .collect();
            let mut reliability: Vec<u32> = slots.iter().map(|s| s.reliability).collect();
            reliability.sort_unstable();
            let providers: HashSet<u32> = slots.iter().map(|s| s.provider).collect();
            out.push(Availability {
                model: self.models[b / regions].id.clone(),
                region: self.regions[b % regions].code.clone(),
                devices: slots.len() as u32,
                providers: providers.len() as u32,
                gpus_free: slots.iter().map(|s| u64::from(s.free)).sum(),
                most_on_one_device: slots.iter().map(|s| s.free).max().unwrap_or(0),
                min_price: slots.iter().map(|s| s.price).min().unwrap_or(0),
                max_price: slots.iter().map(|s| s.price).max().unwrap_or(0),
                median_reliability_bps: reliability[reliability.len() / 2],
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Offer, Place, PlacedModel};
    use super::*;

    fn inventory() -> Inventory {
        Inventory::new(
            vec![
                PlacedModel {
                    id: "h100".into(),
                    vram_gib: 80,
                },
                PlacedModel {
                    id: "rtx4090".into(),
                    vram_gib: 24,
                },
            ],
            vec![
                Place {
                    code: "eu".into(),
                    lat: 50.0,
                    lon: 8.0,
                },
                Place {
                    code: "us".into(),
                    lat: 39.0,
                    lon: -77.0,
                },
            ],
        )
    }

    fn offer(id: &str, provider: &str, model: &str, region: &str, free: u32, price: i64) -> Offer {
        Offer {
            device_id: id.into(),
            provider_id: provider.into(),
            model: model.into(),
            region: region.into(),
            gpus_free: free,
            price,
            bandwidth_mbps: 1_000,
            reliability_bps: 9_000 + free * 100,
        }
    }

    #[test]
    fn sums_free_gpus_per_model_and_region_and_skips_full_devices() {
        let mut inv = inventory();
        for o in [
            offer("d1", "p1", "h100", "eu", 8, 2_500_000),
            offer("d2", "p2", "h100", "eu", 2, 2_100_000),
            offer("d3", "p2", "h100", "eu", 4, 2_300_000),
            offer("d4", "p1", "rtx4090", "us", 1, 400_000),
            offer("d5", "p3", "h100", "us", 0, 1_000_000),
        ] {
            inv.upsert(&o).unwrap();
        }
        let got = inv.availability();
        assert_eq!(
            got,
            vec![
                Availability {
                    model: "h100".into(),
                    region: "eu".into(),
                    devices: 3,
                    providers: 2,
                    gpus_free: 14,
                    most_on_one_device: 8,
                    min_price: 2_100_000,
                    max_price: 2_500_000,
                    median_reliability_bps: 9_400,
                },
                Availability {
                    model: "rtx4090".into(),
                    region: "us".into(),
                    devices: 1,
                    providers: 1,
                    gpus_free: 1,
                    most_on_one_device: 1,
                    min_price: 400_000,
                    max_price: 400_000,
                    median_reliability_bps: 9_100,
                },
            ],
            "a device with no free GPU is not offered"
        );
        // Taking the last free GPUs of a device takes it off the offers.
        assert!(inv.take("d4", 1));
        assert!(inv.availability().iter().all(|a| a.model != "rtx4090"));
    }
}
