//! Usage metering: each proxy's request and byte counts per tenant, in
//! per-minute buckets and a per-month rollup, for billing and quotas.
//!
//! Every proxy process writes absolute totals into its own fields
//! (`<incarnation>:req`, `:in`, `:out`, where the incarnation is the proxy
//! id and its start time), so a retried write changes nothing and two
//! processes never overwrite each other, even with the same proxy id.
//! Readers add the fields up.

use std::collections::{BTreeMap, HashMap};

use fred::prelude::{Client, HashesInterface, KeysInterface};

use crate::connect::StoreError;

/// Requests, bytes in, bytes out.
pub type Counts = [u64; 3];

const FIELDS: [&str; 3] = ["req", "in", "out"];
/// Minute buckets are kept this long.
pub const MINUTE_TTL_SECONDS: i64 = 35 * 24 * 3600;
/// Month rollups are kept this long.
pub const MONTH_TTL_SECONDS: i64 = 400 * 24 * 3600;

/// `vf:usage:{tenant}:m:<minute>` (minutes since the Unix epoch).
pub fn minute_key(tenant: &str, minute: u64) -> String {
    format!("vf:usage:{{{tenant}}}:m:{minute}")
}

/// `vf:usage:{tenant}:month:<YYYYMM>` (UTC).
pub fn month_key(tenant: &str, month: u32) -> String {
    format!("vf:usage:{{{tenant}}}:month:{month}")
}

/// The UTC month (`YYYYMM`) of a minute since the Unix epoch.
pub fn month_of(minute: u64) -> u32 {
    // Days to civil date (H. Hinnant's algorithm), proleptic Gregorian.
    let days = i64::try_from(minute / 1440).unwrap_or(0) + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    u32::try_from(year * 100 + month).unwrap_or(0)
}

/// Writes one incarnation's absolute counts: per minute and per month.
pub async fn write(
    client: &Client,
    tenant: &str,
    incarnation: &str,
    minutes: &BTreeMap<u64, Counts>,
    months: &BTreeMap<u32, Counts>,
) -> Result<(), StoreError> {
    let pipeline = client.pipeline();
    let fields = |counts: &Counts| -> HashMap<String, String> {
        FIELDS
            .iter()
            .zip(counts)
            .map(|(f, v)| (format!("{incarnation}:{f}"), v.to_string()))
            .collect()
    };
    for (minute, counts) in minutes {
        let key = minute_key(tenant, *minute);
        let () = pipeline.hset(&key, fields(counts)).await?;
        let () = pipeline.expire(&key, MINUTE_TTL_SECONDS, None).await?;
    }
    for (month, counts) in months {
        let key = month_key(tenant, *month);
        let () = pipeline.hset(&key, fields(counts)).await?;
        let () = pipeline.expire(&key, MONTH_TTL_SECONDS, None).await?;
    }
    let _: Vec<fred::prelude::Value> = pipeline.all().await?;
    Ok(())
}

fn sum(fields: &HashMap<String, String>) -> Counts {
    let mut total = [0u64; 3];
    for (field, value) in fields {
        let Some((_, kind)) = field.rsplit_once(':') else {
            continue;
        };
        if let Some(i) = FIELDS.iter().position(|f| *f == kind) {
            total[i] += value.parse::<u64>().unwrap_or(0);
        }
    }
    total
}

/// A tenant's total over minutes `from..=to`.
pub async fn read_minutes(
    client: &Client,
    tenant: &str,
    from: u64,
    to: u64,
) -> Result<Counts, StoreError> {
    let mut total = [0u64; 3];
    for minute in from..=to {
        let fields: HashMap<String, String> = client.hgetall(minute_key(tenant, minute)).await?;
        let counts = sum(&fields);
        for i in 0..3 {
            total[i] += counts[i];
        }
    }
    Ok(total)
}

/// A tenant's total for a month (`YYYYMM`).
pub async fn read_month(client: &Client, tenant: &str, month: u32) -> Result<Counts, StoreError> {
    let fields: HashMap<String, String> = client.hgetall(month_key(tenant, month)).await?;
    Ok(sum(&fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_map_to_utc_months() {
        assert_eq!(month_of(0), 197_001);
        // 2024-02-29T23:59Z and 2024-03-01T00:00Z.
        let leap_day_end = (1_709_251_140 / 60) as u64;
        assert_eq!(month_of(leap_day_end), 202_402);
        assert_eq!(month_of(leap_day_end + 1), 202_403);
        // 2026-12-31T23:59Z and 2027-01-01T00:00Z.
        let year_end = (1_798_761_540 / 60) as u64;
        assert_eq!(month_of(year_end), 202_612);
        assert_eq!(month_of(year_end + 1), 202_701);
    }

    #[test]
    fn incarnations_add_up() {
        let fields: HashMap<String, String> = [
            ("p-1@1:req", "3"),
            ("p-1@1:in", "10"),
            ("p-1@2:req", "4"),
            ("p-2@1:out", "7"),
            ("junk", "9"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(sum(&fields), [7, 10, 7]);
    }
}
