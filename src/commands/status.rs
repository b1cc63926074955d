//! `labrun status`: each lab with its instances (as the provider has them
//! now, where it can say so without the lab's lock), network and security
//! groups, else its recorded resources. Takes no lock, so it works while a
//! run is going on.

use std::sync::Arc;

use crate::error::{Error, Exit};
use crate::ledger::{self, LedgerData, ResourceKind, ResourceState, now_secs};
use crate::providers::Instance;
use crate::providers::local::groups;
use crate::report::Reporter;

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

pub fn status(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    only: Option<&str>,
) -> Result<Exit, Error> {
    let root = ledger::state_root()?;
    let labs: Vec<String> = ledger::list_labs(&root)
        .into_iter()
        .filter(|l| only.is_none_or(|o| o == l))
        .collect();
    if labs.is_empty() {
        reporter.print(&match only {
            Some(l) => format!("no lab named '{l}' under {}", root.display()),
            None => format!("no labs under {}", root.display()),
        });
        return Ok(Exit::Ok);
    }
    for lab in labs {
        let dir = root.join("labs").join(&lab);
        match LedgerData::load(&dir) {
            Ok(Some(d)) => {
                let mut lines = vec![format!(
                    "{lab}  provider={}{}  resources={}  created {} ago, updated {} ago",
                    d.provider,
                    d.region
                        .as_deref()
                        .map(|r| format!("  region={r}"))
                        .unwrap_or_default(),
                    d.resources.len(),
                    age(d.created_at),
                    age(d.updated_at)
                )];
                match runtime.block_on(d.provider.observe(&lab)) {
                    Some(live) => observed(&d, live.map_err(|e| e.to_string()), &mut lines),
                    None => recorded(&d, &mut lines),
                }
                for line in lines {
                    reporter.print(&line);
                }
            }
            Ok(None) => {}
            Err(e) => reporter.warn(&format!("{lab}: {e}")),
        }
    }
    Ok(Exit::Ok)
}

/// A lab whose provider reported its instances.
fn observed(d: &LedgerData, live: Result<Vec<Instance>, String>, out: &mut Vec<String>) {
    let instances = match live {
        Ok(list) => list,
        Err(e) => {
            out.push(format!("  (engine not reachable: {e}; showing the ledger)"));
            recorded(d, out);
            return;
        }
    };
    if instances.is_empty() {
        out.push("  no instances".into());
    } else {
        out.push(format!(
            "  {:<20} {:<15} {:<15} {:<16} {:<8} AGE",
            "INSTANCE", "ID", "PRIVATE IP", "SSH", "STATE"
        ));
        for i in &instances {
            let ssh = if i.ssh_port > 0 {
                format!("{}:{}", i.public_ip, i.ssh_port)
            } else {
                "-".into()
            };
            out.push(format!(
                "  {:<20} {:<15} {:<15} {:<16} {:<8} {}",
                i.name,
                i.id,
                i.private_ip,
                ssh,
                i.state,
                age(i.launched_at)
            ));
        }
    }
    for r in d
        .resources
        .iter()
        .filter(|r| r.kind == ResourceKind::Network)
    {
        out.push(format!(
            "  network {} {}",
            r.name,
            r.data["subnet"].as_str().unwrap_or("")
        ));
    }
    let sgs = groups::from_ledger(d);
    if !sgs.is_empty() {
        let list: Vec<String> = sgs
            .iter()
            .map(|g| format!("{} ({}, {})", g.name, g.id, g.rules_summary()))
            .collect();
        out.push(format!("  security groups: {}", list.join(", ")));
    }
    let pending = d
        .resources
        .iter()
        .filter(|r| r.state == ResourceState::Pending)
        .count();
    if pending > 0 {
        out.push(format!(
            "  {pending} resource(s) recorded as pending (a run was interrupted): `labrun destroy --lab {}` cleans up",
            d.lab
        ));
    }
}

/// A lab as its ledger records it.
fn recorded(d: &LedgerData, out: &mut Vec<String>) {
    for r in &d.resources {
        out.push(format!(
            "  {:<15} {:<24} {:<22} {:?}  {}",
            r.kind,
            r.name,
            r.id.as_deref().unwrap_or("-"),
            r.state,
            age(r.recorded_at)
        ));
    }
}
