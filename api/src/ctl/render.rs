//! How the CLI shows things to people (`--output json` prints the API's own JSON instead).

use serde_json::Value;

/// Prints a value as the API gave it, indented, for `--output json`.
pub fn json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

pub fn quote(q: &Value) {
    println!(
        "quote {} (prices hold until {})",
        s(&q["id"]),
        s(&q["expires_at"])
    );
    for p in q["plans"].as_array().into_iter().flatten() {
        println!(
            "  {:<15} {:>10} USD/h  {:>12} USD for {} h  ~{} ms",
            s(&p["label"]),
            s(&p["price_per_hour"]),
            s(&p["total"]),
            q["duration_hours"],
            p["estimated_rtt_ms"]
        );
        for n in p["nodes"].as_array().into_iter().flatten() {
            println!(
                "      {} × {} in {} on {} at {} USD/GPU-h",
                n["gpus"],
                s(&n["gpu_model"]),
                s(&n["region"]),
                s(&n["device_id"]),
                s(&n["price_per_gpu_hour"])
            );
        }
    }
}

pub fn offers(offers: &[Value]) {
    if offers.is_empty() {
        println!("nothing free matches");
        return;
    }
    println!(
        "{:<14} {:<16} {:>5} {:>8} {:>9} {:>21} {:>11}",
        "MODEL", "REGION", "FREE", "PER NODE", "MACHINES", "USD/GPU-H", "RELIABILITY"
    );
    for o in offers {
        println!(
            "{:<14} {:<16} {:>5} {:>8} {:>9} {:>21} {:>11.2}",
            s(&o["gpu_model"]),
            s(&o["region"]),
            o["gpus_free"],
            o["max_gpus_per_node"],
            o["devices"],
            format!(
                "{} – {}",
                s(&o["min_price_per_gpu_hour"]),
                s(&o["max_price_per_gpu_hour"])
            ),
            o["reliability"].as_f64().unwrap_or(0.0)
        );
    }
}

pub fn plan(p: &Value) {
    let action = s(&p["action"]);
    let sign = match action {
        "create" => "+",
        "update" => "~",
        "replace" => "-/+",
        _ => "=",
    };
    println!(
        "{sign} {} ({action}{})",
        s(&p["name"]),
        if p["needs_replace"] == true {
            ", needs a replace"
        } else {
            ""
        }
    );
    for c in p["changes"].as_array().into_iter().flatten() {
        println!(
            "    {}: {} → {}{}",
            s(&c["field"]),
            c["from"],
            c["to"],
            if c["in_place"] == true {
                ""
            } else {
                "  (forces replace)"
            }
        );
    }
    if action != "none" {
        println!(
            "    {} {}/h; holds {} {}",
            s(&p["price_per_hour"]),
            s(&p["currency"]),
            s(&p["hold"]),
            s(&p["currency"])
        );
    }
    // Where the nodes would go, so a plan is judged by place as well as price.
    if let Some(placement) = p["placement"].as_object() {
        for n in placement["nodes"].as_array().into_iter().flatten() {
            println!(
                "    node: {} × {} in {} on {} at {} USD/GPU-h",
                n["gpus"],
                s(&n["gpu_model"]),
                s(&n["region"]),
                s(&n["device_id"]),
                s(&n["price_per_gpu_hour"])
            );
        }
        println!(
            "    estimated round trip: {} ms",
            placement["estimated_rtt_ms"]
        );
    }
}

/// `name [####----] 2/4 nodes · provisioning`
pub fn progress(name: &str, status: &str, nodes: &Value) -> String {
    let current: Vec<&Value> = nodes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["current"] == true)
        .collect();
    let ready = current.iter().filter(|n| n["status"] == "ready").count();
    let total = current.len().max(1);
    let width = 10;
    let filled = ready * width / total;
    format!(
        "{name} [{}{}] {ready}/{total} nodes · {status}",
        "#".repeat(filled),
        "-".repeat(width - filled)
    )
}

pub fn cluster(c: &Value) {
    println!("{} ({})", s(&c["name"]), s(&c["id"]));
    println!(
        "  status      {}{}",
        s(&c["status"]),
        c["status_reason"]
            .as_str()
            .map(|r| format!(" — {r}"))
            .unwrap_or_default()
    );
    println!("  kind        {}", s(&c["kind"]));
    println!(
        "  gpus        {} at {} {}/h",
        c["gpus"],
        s(&c["price_per_hour"]),
        s(&c["currency"])
    );
    println!(
        "  version     {} (generation {})",
        c["resource_version"], c["generation"]
    );
    if let Some(t) = c["expires_at"].as_str() {
        println!("  expires     {t}");
    }
    if let Some(conn) = c["connection"].as_object() {
        for (k, v) in conn {
            // A container's nodes, one line each: how to log in, else where it answers.
            if k == "nodes" {
                for n in v.as_array().into_iter().flatten() {
                    match n["ssh_command"].as_str() {
                        Some(ssh) => println!("  {:<11} {ssh}", s(&n["node_id"])),
                        None => println!("  {:<11} {}", s(&n["node_id"]), n["endpoints"]),
                    }
                }
                continue;
            }
            if !v.is_null() {
                println!(
                    "  {k:<11} {}",
                    v.as_str().map(str::to_string).unwrap_or(v.to_string())
                );
            }
        }
    }
    if c["kind"] == "kubernetes" && c["connection"]["api_server"].is_string() {
        println!("  kubeconfig  iocloud kubeconfig {}", s(&c["name"]));
    }
    for n in c["nodes"].as_array().into_iter().flatten() {
        if n["current"] != true {
            continue;
        }
        println!(
            "  node {} {:<13} {:<9} {} × {} in {}",
            s(&n["id"]),
            s(&n["role"]),
            s(&n["status"]),
            n["gpus"],
            s(&n["gpu_model"]),
            s(&n["region"])
        );
    }
}

pub fn list(items: &[Value]) {
    println!(
        "{:<24} {:<32} {:<13} {:>5} {:>12}",
        "NAME", "ID", "STATUS", "GPUS", "PRICE/H"
    );
    for c in items {
        println!(
            "{:<24} {:<32} {:<13} {:>5} {:>8} {}",
            s(&c["name"]),
            s(&c["id"]),
            s(&c["status"]),
            c["gpus"],
            s(&c["price_per_hour"]),
            s(&c["currency"])
        );
    }
}

pub fn event(e: &Value) {
    println!(
        "{} #{:<3} {:<13} {:<13} {}",
        s(&e["at"]),
        e["seq"],
        s(&e["kind"]),
        s(&e["status"]),
        s(&e["message"])
    );
}
