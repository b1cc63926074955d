//! `labrun status`: each lab with its instances (from the engine, for local
//! labs), network and security groups, else its recorded resources. Takes
//! no lock, so it works while a run is going on.

use crate::error::exit;
use crate::ledger::{self, LedgerData, now_secs};
use crate::providers::Instance;
use crate::providers::local::groups;

/// `42s`, `5m`, `3h`, `2d`.
pub fn age(since: u64) -> String {
    let s = now_secs().saturating_sub(since);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

pub fn status(runtime: &tokio::runtime::Runtime, only: Option<&str>) -> i32 {
    let root = ledger::state_root();
    let labs: Vec<String> = ledger::list_labs(&root)
        .into_iter()
        .filter(|l| only.is_none_or(|o| o == l))
        .collect();
    if labs.is_empty() {
        match only {
            Some(l) => println!("no lab named '{l}' under {}", root.display()),
            None => println!("no labs under {}", root.display()),
        }
        return exit::OK;
    }
    for lab in labs {
        let dir = root.join("labs").join(&lab);
        match LedgerData::load(&dir) {
            Ok(Some(d)) => {
                println!(
                    "{lab}  provider={}{}  resources={}  created {} ago, updated {} ago",
                    d.provider,
                    d.region
                        .as_deref()
                        .map(|r| format!("  region={r}"))
                        .unwrap_or_default(),
                    d.resources.len(),
                    age(d.created_at),
                    age(d.updated_at)
                );
                match runtime.block_on(d.provider.observe(&lab)) {
                    Some(live) => print_local(&d, live.map_err(|e| e.to_string())),
                    None => print_recorded(&d),
                }
            }
            Ok(None) => {}
            Err(e) => eprintln!("{lab}: {e}"),
        }
    }
    exit::OK
}

fn print_local(d: &LedgerData, live: Result<Vec<Instance>, String>) {
    let instances = match live {
        Ok(list) => list,
        Err(e) => {
            println!("  (engine not reachable: {e}; showing the ledger)");
            print_recorded(d);
            return;
        }
    };
    if instances.is_empty() {
        println!("  no instances");
    } else {
        println!(
            "  {:<20} {:<15} {:<15} {:<16} {:<8} AGE",
            "INSTANCE", "ID", "PRIVATE IP", "SSH", "STATE"
        );
        for i in &instances {
            let ssh = if i.ssh_port > 0 {
                format!("{}:{}", i.public_ip, i.ssh_port)
            } else {
                "-".into()
            };
            println!(
                "  {:<20} {:<15} {:<15} {:<16} {:<8} {}",
                i.name,
                i.id,
                i.private_ip,
                ssh,
                i.state,
                age(i.launched_at)
            );
        }
    }
    for r in d
        .resources
        .iter()
        .filter(|r| r.kind == ledger::ResourceKind::Network)
    {
        println!(
            "  network {} {}",
            r.name,
            r.data["subnet"].as_str().unwrap_or("")
        );
    }
    let sgs = groups::from_ledger(d);
    if !sgs.is_empty() {
        let list: Vec<String> = sgs
            .iter()
            .map(|g| format!("{} ({}, {})", g.name, g.id, g.rules_summary()))
            .collect();
        println!("  security groups: {}", list.join(", "));
    }
    let pending = d
        .resources
        .iter()
        .filter(|r| r.state == ledger::ResourceState::Pending)
        .count();
    if pending > 0 {
        println!(
            "  {pending} resource(s) recorded as pending (a run was interrupted): `labrun destroy --lab {}` cleans up",
            d.lab
        );
    }
}

fn print_recorded(d: &LedgerData) {
    for r in &d.resources {
        println!(
            "  {:<15} {:<24} {:<22} {:?}  {}",
            r.kind,
            r.name,
            r.id.as_deref().unwrap_or("-"),
            r.state,
            age(r.recorded_at)
        );
    }
}
