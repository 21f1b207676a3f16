//! The in-memory inventory index: every placeable device, bucketed by GPU model and region and
//! kept sorted by the price placement ranks it at, so a placement reads a few bucket heads
//! instead of scanning the fleet. Changing a device moves one entry; nothing is rebuilt.

use std::collections::HashMap;

use super::latency::rtt_ms;
use super::objective::adjusted_price;

/// Regions are sets of bits in a `u64` while placing.
pub const MAX_REGIONS: usize = 64;

/// A device as placement sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    pub device_id: String,
    /// The provider organisation.
    pub provider_id: String,
    /// GPU model id from the catalog.
    pub model: String,
    /// Region code from the catalog.
    pub region: String,
    /// GPUs not taken by a node.
    pub gpus_free: u32,
    /// Micro-USD per GPU-hour.
    pub price: i64,
    /// The slower direction, Mbit/s.
    pub bandwidth_mbps: u32,
    /// 0 to 10,000 (basis points).
    pub reliability_bps: u32,
}

/// A device in the index, with its strings interned.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub provider: u32,
    pub model: u16,
    pub region: u16,
    pub free: u32,
    pub price: i64,
    /// Price with the reliability penalty: the sort key.
    pub adjusted: i64,
    pub bandwidth: u32,
    pub reliability: u32,
    /// False once the device left the inventory; the slot is reused.
    pub live: bool,
}

/// A bucket entry: sorted by adjusted price, then fuller devices first, then slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    pub adjusted: i64,
    pub fewer_free: std::cmp::Reverse<u32>,
    pub slot: u32,
}

/// A GPU model placement can put work on.
#[derive(Clone, Debug)]
pub struct PlacedModel {
    pub id: String,
    pub vram_gib: u32,
}

/// A region placement can put work in, and where it is.
#[derive(Clone, Debug)]
pub struct Place {
    pub code: String,
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InventoryError {
    #[error("unknown GPU model {0}")]
    UnknownModel(String),
    #[error("unknown region {0}")]
    UnknownRegion(String),
}

pub struct Inventory {
    pub(crate) models: Vec<PlacedModel>,
    model_index: HashMap<String, u16>,
    pub(crate) regions: Vec<Place>,
    region_index: HashMap<String, u16>,
    /// RTT between regions, whole ms rounded up; `rtt[a * regions + b]`: the distance model's
    /// estimate until node tests have measured the pair.
    rtt: Vec<u32>,
    pub(crate) providers: Vec<String>,
    provider_index: HashMap<String, u32>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) device_ids: Vec<String>,
    slot_of: HashMap<String, u32>,
    vacant: Vec<u32>,
    /// `buckets[model * regions + region]`, sorted; only devices with a free GPU.
    pub(crate) buckets: Vec<Vec<Entry>>,
}

impl Inventory {
    /// An empty inventory over these models and regions (at most [`MAX_REGIONS`]).
    pub fn new(models: Vec<PlacedModel>, regions: Vec<Place>) -> Inventory {
        assert!(
            regions.len() <= MAX_REGIONS,
            "placement handles at most {MAX_REGIONS} regions"
        );
        let n = regions.len();
        let mut rtt = vec![0; n * n];
        for (a, ra) in regions.iter().enumerate() {
            for (b, rb) in regions.iter().enumerate() {
                rtt[a * n + b] = rtt_ms(ra.lat, ra.lon, rb.lat, rb.lon).ceil() as u32;
            }
        }
        Inventory {
            model_index: index_of(models.iter().map(|m| m.id.as_str())),
            region_index: index_of(regions.iter().map(|r| r.code.as_str())),
            buckets: vec![Vec::new(); models.len() * n],
            models,
            regions,
            rtt,
            providers: Vec::new(),
            provider_index: HashMap::new(),
            slots: Vec::new(),
            device_ids: Vec::new(),
            slot_of: HashMap::new(),
            vacant: Vec::new(),
        }
    }

    /// Adds a device, or replaces what the index knows of it.
    pub fn upsert(&mut self, offer: &Offer) -> Result<(), InventoryError> {
        let model = *self
            .model_index
            .get(&offer.model)
            .ok_or_else(|| InventoryError::UnknownModel(offer.model.clone()))?;
        let region = *self
            .region_index
            .get(&offer.region)
            .ok_or_else(|| InventoryError::UnknownRegion(offer.region.clone()))?;
        let provider = match self.provider_index.get(&offer.provider_id) {
            Some(p) => *p,
            None => {
                let p = self.providers.len() as u32;
                self.providers.push(offer.provider_id.clone());
                self.provider_index.insert(offer.provider_id.clone(), p);
                p
            }
        };
        let reliability = offer.reliability_bps.min(10_000);
        let slot = Slot {
            provider,
            model,
            region,
            free: offer.gpus_free,
            price: offer.price,
            adjusted: adjusted_price(offer.price, reliability),
            bandwidth: offer.bandwidth_mbps,
            reliability,
            live: true,
        };
        let index = match self.slot_of.get(&offer.device_id).copied() {
            Some(i) => {
                self.unlist(i);
                i
            }
            None => {
                let i = match self.vacant.pop() {
                    Some(i) => {
                        self.device_ids[i as usize] = offer.device_id.clone();
                        i
                    }
                    None => {
                        self.device_ids.push(offer.device_id.clone());
                        self.slots.push(slot.clone());
                        (self.slots.len() - 1) as u32
                    }
                };
                self.slot_of.insert(offer.device_id.clone(), i);
                i
            }
        };
        self.slots[index as usize] = slot;
        self.list(index);
        Ok(())
    }

    /// The device's free GPUs changed (a node was placed on it or released).
    pub fn set_free(&mut self, device_id: &str, gpus_free: u32) -> bool {
        let Some(&i) = self.slot_of.get(device_id) else {
            return false;
        };
        self.unlist(i);
        self.slots[i as usize].free = gpus_free;
        self.list(i);
        true
    }

    /// `gpus` of the device were taken by a node.
    pub fn take(&mut self, device_id: &str, gpus: u32) -> bool {
        let Some(&i) = self.slot_of.get(device_id) else {
            return false;
        };
        let free = self.slots[i as usize].free.saturating_sub(gpus);
        self.set_free(device_id, free)
    }

    /// Undoes a [`Inventory::take`] whose claim did not go through.
    pub fn give_back(&mut self, device_id: &str, gpus: u32) -> bool {
        let Some(&i) = self.slot_of.get(device_id) else {
            return false;
        };
        let free = self.slots[i as usize].free.saturating_add(gpus);
        self.set_free(device_id, free)
    }

    /// The device can no longer be placed on (offline, retired, in maintenance, suspended).
    pub fn remove(&mut self, device_id: &str) -> bool {
        let Some(i) = self.slot_of.remove(device_id) else {
            return false;
        };
        self.unlist(i);
        self.slots[i as usize].live = false;
        self.device_ids[i as usize].clear();
        self.vacant.push(i);
        true
    }

    /// Devices in the index (placeable or not).
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slot_of.is_empty()
    }

    /// Free GPUs over every device.
    pub fn free_gpus(&self) -> u64 {
        self.slots
            .iter()
            .filter(|s| s.live)
            .map(|s| u64::from(s.free))
            .sum()
    }

    /// Bytes the index holds, roughly: for the memory figure of the benchmark.
    pub fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        let strings: usize = self.device_ids.iter().map(|s| s.capacity()).sum();
        let map_entry = size_of::<String>() + size_of::<u32>() + 8;
        self.slots.capacity() * size_of::<Slot>()
            + self.device_ids.capacity() * size_of::<String>()
            + strings * 2 // the map keeps its own copy of each id
            + self.slot_of.capacity() * map_entry
            + self
                .buckets
                .iter()
                .map(|b| b.capacity() * size_of::<Entry>())
                .sum::<usize>()
    }

    pub(crate) fn model_index(&self, id: &str) -> Option<u16> {
        self.model_index.get(id).copied()
    }

    /// Estimated RTT between two regions, ms.
    /// Replaces the estimate between two regions with what node tests measured there (in
    /// both directions). Unknown regions are left alone: the catalog may have dropped one.
    pub fn set_measured_rtt(&mut self, a: &str, b: &str, rtt_ms: f64) -> bool {
        let (Some(&i), Some(&j)) = (self.region_index.get(a), self.region_index.get(b)) else {
            return false;
        };
        let n = self.regions.len();
        let ms = rtt_ms.max(0.0).ceil().min(f64::from(u32::MAX)) as u32;
        self.rtt[usize::from(i) * n + usize::from(j)] = ms;
        self.rtt[usize::from(j) * n + usize::from(i)] = ms;
        true
    }

    /// The RTT between two regions as placement counts it, whole ms.
    pub fn rtt_between(&self, a: &str, b: &str) -> Option<u32> {
        Some(self.rtt(*self.region_index.get(a)?, *self.region_index.get(b)?))
    }

    pub(crate) fn rtt(&self, a: u16, b: u16) -> u32 {
        self.rtt[a as usize * self.regions.len() + b as usize]
    }

    pub(crate) fn bucket(&self, model: u16, region: u16) -> &[Entry] {
        &self.buckets[model as usize * self.regions.len() + region as usize]
    }

    fn entry(&self, i: u32) -> Entry {
        let s = &self.slots[i as usize];
        Entry {
            adjusted: s.adjusted,
            fewer_free: std::cmp::Reverse(s.free),
            slot: i,
        }
    }

    fn bucket_mut(&mut self, i: u32) -> &mut Vec<Entry> {
        let s = &self.slots[i as usize];
        let b = s.model as usize * self.regions.len() + s.region as usize;
        &mut self.buckets[b]
    }

    fn list(&mut self, i: u32) {
        if self.slots[i as usize].free == 0 {
            return;
        }
        let entry = self.entry(i);
        let bucket = self.bucket_mut(i);
        let at = bucket.partition_point(|e| *e < entry);
        bucket.insert(at, entry);
    }

    fn unlist(&mut self, i: u32) {
        if self.slots[i as usize].free == 0 {
            return;
        }
        let entry = self.entry(i);
        let bucket = self.bucket_mut(i);
        if let Ok(at) = bucket.binary_search(&entry) {
            bucket.remove(at);
        }
    }
}

fn index_of<'a, T: TryFrom<usize>>(ids: impl Iterator<Item = &'a str>) -> HashMap<String, T>
where
    T::Error: std::fmt::Debug,
{
    ids.enumerate()
        .map(|(i, id)| {
            (
                id.to_string(),
                T::try_from(i).expect("catalog fits the index"),
            )
        })
        .collect()
}
