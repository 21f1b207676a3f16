//! The latency model between places: an estimate from great-circle distance, since nothing
//! measures the real network between a customer and a region.

/// Mean radius of the Earth, km.
const EARTH_RADIUS_KM: f64 = 6371.0;
/// Light in fibre covers about 200 km per millisecond.
const FIBRE_KM_PER_MS: f64 = 200.0;
/// Cables do not follow great circles: real paths are about 1.5 times longer.
const ROUTE_FACTOR: f64 = 1.5;
/// Switching, queueing and the last mile, per round trip.
const BASE_RTT_MS: f64 = 2.0;

/// Great-circle distance between two points (degrees), km (haversine).
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

/// Estimated round-trip time between two points, ms: a fixed 2 ms plus there and back along a
/// path 1.5 times the great-circle distance at 200 km/ms (docs/providers.md).
pub fn rtt_ms(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    BASE_RTT_MS + 2.0 * distance_km(lat1, lon1, lat2, lon2) * ROUTE_FACTOR / FIBRE_KM_PER_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_rtts_are_plausible() {
        // Frankfurt to Ashburn is about 6,500 km; a real RTT there is 85-95 ms.
        let d = distance_km(50.11, 8.68, 39.04, -77.49);
        assert!((6400.0..6700.0).contains(&d), "{d}");
        let rtt = rtt_ms(50.11, 8.68, 39.04, -77.49);
        assert!((80.0..110.0).contains(&rtt), "{rtt}");
        // A point to itself is the fixed cost only; the model is symmetric.
        assert_eq!(rtt_ms(1.0, 2.0, 1.0, 2.0), BASE_RTT_MS);
        assert_eq!(
            rtt_ms(-33.87, 151.21, 51.51, -0.13),
            rtt_ms(51.51, -0.13, -33.87, 151.21)
        );
        // Antipodes: half the circumference.
        let half = distance_km(0.0, 0.0, 0.0, 180.0);
        assert!((half - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1.0);
    }
}
