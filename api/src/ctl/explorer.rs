//! `iocloud explorer …`: IO Explorer's public reads from the terminal, no key needed: the
//! network now, the device directory and a device, the hourly blocks, and the supply.

use clap::{Args, Subcommand};

use super::billing::text;
use super::client::{Client, Conn, CtlResult, exit, seg};
use super::render;

#[derive(Args, Debug)]
pub struct ExplorerArgs {
    #[command(flatten)]
    pub(super) conn: Conn,
    #[command(subcommand)]
    command: ExplorerCommand,
}

#[derive(Subcommand, Debug)]
enum ExplorerCommand {
    /// Devices and GPUs now, hired and idle, by model and by region.
    Network,
    /// The device directory, one page (`--cursor` for the next).
    Devices {
        /// A GPU model id, or `cpu`.
        #[arg(long)]
        model: Option<String>,
        /// A region code, e.g. eu-central.
        #[arg(long)]
        region: Option<String>,
        /// available, busy, offline, maintenance or suspended.
        #[arg(long)]
        status: Option<String>,
        /// Only hired (true) or only idle (false) devices.
        #[arg(long)]
        hired: Option<bool>,
        /// 0 to 1.
        #[arg(long)]
        min_reliability: Option<f64>,
        /// Devices per page, at most 200.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Where the previous page ended (printed after it).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One device's public page.
    Device {
        /// The device's id (`dev_…`).
        id: String,
    },
    /// The latest hourly blocks.
    Blocks {
        /// How many, newest first, at most 200.
        #[arg(long, default_value_t = 24)]
        limit: u32,
    },
    /// $IO supply: launch, emitted, burned, staked, circulating and the cap.
    Supply,
}

pub async fn run(a: ExplorerArgs) -> CtlResult<i32> {
    let json = a.conn.json();
    let client = Client::public(&a.conn);
    let shown = match a.command {
        ExplorerCommand::Network => {
            let n = client.get("/v1/explorer/network").await?;
            if !json {
                println!(
                    "{} devices ({} hired), {} GPUs ({} hired), {}% utilised, {} countries",
                    n["devices"],
                    n["devices_hired"],
                    n["gpus"],
                    n["gpus_hired"],
                    n["utilisation_pct"],
                    n["countries"]
                );
                for m in n["by_model"].as_array().into_iter().flatten() {
                    println!(
                        "  {:<14} {:>8} devices  {:>8} GPUs  {:>8} hired",
                        text(&m["gpu_model"]),
                        m["devices"],
                        m["gpus"],
                        m["gpus_hired"]
                    );
                }
                for r in n["by_region"].as_array().into_iter().flatten() {
                    println!(
                        "  {:<14} {:>8} devices  {:>8} GPUs  {:>8} hired",
                        text(&r["region"]),
                        r["devices"],
                        r["gpus"],
                        r["gpus_hired"]
                    );
                }
            }
            n
        }
        ExplorerCommand::Devices {
            model,
            region,
            status,
            hired,
            min_reliability,
            limit,
            cursor,
        } => {
            let mut query = vec![format!("limit={limit}")];
            for (name, value) in [
                ("gpu_model", model),
                ("region", region),
                ("status", status),
                ("cursor", cursor),
            ] {
                if let Some(v) = value {
                    query.push(format!("{name}={}", seg(&v)));
                }
            }
            if let Some(h) = hired {
                query.push(format!("hired={h}"));
            }
            if let Some(r) = min_reliability {
                query.push(format!("min_reliability={r}"));
            }
            let page = client
                .get(&format!("/v1/explorer/devices?{}", query.join("&")))
                .await?;
            if !json {
                for d in page["items"].as_array().into_iter().flatten() {
                    println!(
                        "{}  {:<12} ×{:<2}  {:<14}  {:<11}  reliability {:.2}  ${}/GPU-hour",
                        text(&d["id"]),
                        d["gpu_model"].as_str().unwrap_or("cpu"),
                        d["gpu_count"],
                        text(&d["region"]),
                        text(&d["status"]),
                        d["reliability"].as_f64().unwrap_or(0.0),
                        text(&d["price_per_gpu_hour"])
                    );
                }
                if let Some(next) = page["next_cursor"].as_str() {
                    println!("more: --cursor {next}");
                }
            }
            page
        }
        ExplorerCommand::Device { id } => {
            let d = client
                .get(&format!("/v1/explorer/devices/{}", seg(&id)))
                .await?;
            if !json {
                let dev = &d["device"];
                println!(
                    "{}  {} ×{}  {}  {}  reliability {}",
                    text(&dev["id"]),
                    dev["gpu_model"].as_str().unwrap_or("cpu"),
                    dev["gpu_count"],
                    text(&dev["region"]),
                    text(&dev["status"]),
                    dev["reliability"]
                );
                println!(
                    "  stake needed {} IO, co-staked {} IO; proofs in 30 days: {} passed, {} failed, {} unanswered",
                    text(&d["required_stake"]),
                    text(&d["co_staked"]),
                    d["proofs_30d"]["passed"],
                    d["proofs_30d"]["failed"],
                    d["proofs_30d"]["unanswered"]
                );
                for b in d["blocks"].as_array().into_iter().flatten() {
                    println!(
                        "  {}  {}  {}",
                        text(&b["hour"]),
                        text(&b["outcome"]),
                        b["amount"].as_str().unwrap_or("")
                    );
                }
            }
            d
        }
        ExplorerCommand::Blocks { limit } => {
            let page = client
                .get(&format!("/v1/explorer/blocks?limit={limit}"))
                .await?;
            if !json {
                for b in page["items"].as_array().into_iter().flatten() {
                    println!(
                        "{}  emitted {} IO  paid {} IO  {} eligible, {} not",
                        text(&b["hour"]),
                        text(&b["emission"]),
                        text(&b["paid"]),
                        b["eligible_devices"],
                        b["ineligible_devices"]
                    );
                }
            }
            page
        }
        ExplorerCommand::Supply => {
            let s = client.get("/v1/explorer/supply").await?;
            if !json {
                for name in [
                    "launch_supply",
                    "emitted",
                    "burned",
                    "staked",
                    "in_escrow",
                    "circulating",
                    "to_be_emitted",
                    "cap",
                ] {
                    println!("{name:<14} {:>22} IO", text(&s[name]));
                }
            }
            s
        }
    };
    if json {
        render::json(&shown);
    }
    Ok(exit::OK)
}
